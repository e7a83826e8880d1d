"""The scale benchmark, small (1,000 messages), in CI: its figures are printed, and what must
hold at any size is asserted: one reply per message, one synthesis per distinct text across
both worker processes, bot processes' memory flat (≤ 15 % growth)."""

from __future__ import annotations

import pytest

from bench.bench_scale import run_scale


@pytest.mark.timeout(600)
async def test_a_thousand_messages_over_two_workers_and_a_cluster() -> None:
    report = await run_scale(messages=1_000, users=100, texts=60, workers=2)
    print("\n".join(report.lines()))
    assert report.replies_per_message == {1: 1_000}, "exactly one reply per message"
    assert report.syntheses == report.distinct_texts, "single-flight and cache across processes"
    assert all(count > 0 for count in report.routed.values()), "both workers took updates"
    for name, (start, end) in report.rss_kib.items():
        if name.startswith("worker"):
            assert end <= start * 1.15, f"{name} grew from {start} to {end} KiB"
