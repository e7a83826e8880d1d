"""Usage counters: per-day, per-platform, per-user; exact sums; retention; one round trip."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool, Connection, Redis

from storage import keys
from storage.settings import StorageSettings
from storage.usage import UsageReader, UsageRecorder, UsageSummary, utc_today

# Recent days: a bucket older than the retention expires the moment it is written.
DAY1 = utc_today() - dt.timedelta(days=2)
DAY2 = utc_today() - dt.timedelta(days=1)


@pytest.fixture
def settings(storage_settings: StorageSettings) -> StorageSettings:
    return storage_settings.model_copy(update={"price_per_gpu_second": 0.001})


async def fill(recorder: UsageRecorder) -> None:
    recorder.record_soon(
        "telegram", "1", "miss", audio_seconds=2.5, synthesis_seconds=1.25, day=DAY1
    )
    recorder.record_soon("telegram", "1", "hit", audio_seconds=2.5, day=DAY1)
    recorder.record_soon("discord", "7", "hit", audio_seconds=1.0, day=DAY1)
    recorder.record_soon("discord", "7", "error", error_code="tts_busy", day=DAY2)
    recorder.record_soon("discord", "8", "error", error_code="tts_busy", day=DAY2)
    recorder.record_soon("discord", "8", "error", error_code="invalid_input", day=DAY2)
    recorder.record_soon(
        "telegram", "2", "miss", audio_seconds=0.1, synthesis_seconds=3.0, day=DAY2
    )
    await recorder.flush()


async def test_summary_totals_days_platforms_errors_and_cost(
    redis_client: Redis, settings: StorageSettings
) -> None:
    await fill(UsageRecorder(redis_client, settings))
    summary = await UsageReader(redis_client, settings).summary(DAY1, DAY2)

    totals = summary.totals
    assert (totals.requests, totals.hits, totals.misses, totals.errors) == (7, 2, 2, 3)
    assert totals.audio_seconds == pytest.approx(6.1)
    assert totals.synthesis_seconds == pytest.approx(4.25)
    assert summary.hit_ratio == pytest.approx(0.5)
    assert summary.estimated_cost == pytest.approx(4.25 * 0.001)
    assert [(day, c.requests, c.errors) for day, c in summary.per_day] == [
        (DAY1, 3, 0),
        (DAY2, 4, 3),
    ]
    assert list(summary.by_platform) == ["discord", "telegram"]
    assert summary.by_platform["discord"].requests == 4 and summary.by_platform["discord"].hits == 1
    assert summary.by_platform["telegram"].synthesis_ms == 4250
    assert summary.errors_by_code == {"tts_busy": 2, "invalid_input": 1}

    only_day1 = await UsageReader(redis_client, settings).summary(DAY1, DAY1)
    assert only_day1.totals.requests == 3 and only_day1.errors_by_code == {}


async def test_errors_by_code_per_platform_and_days_per_platform(
    redis_client: Redis, settings: StorageSettings
) -> None:
    recorder = UsageRecorder(redis_client, settings)
    await fill(recorder)
    recorder.record_soon("telegram", "3", "error", error_code="tts_busy", day=DAY1)
    await recorder.flush()
    summary = await UsageReader(redis_client, settings).summary(DAY1, DAY2)

    assert summary.errors_by_platform == {
        "discord": {"tts_busy": 2, "invalid_input": 1},
        "telegram": {"tts_busy": 1},
    }
    assert list(summary.errors_by_platform["discord"]) == ["tts_busy", "invalid_input"]
    assert summary.errors_by_code == {"tts_busy": 3, "invalid_input": 1}
    assert list(summary.by_platform) == ["discord", "telegram"], "no platform made of a scope"
    series = {
        platform: [(day, c.requests, c.hits, c.misses, c.errors, c.audio_ms) for day, c in days]
        for platform, days in summary.per_day_by_platform.items()
    }
    assert series == {
        "discord": [(DAY1, 1, 1, 0, 0, 1000), (DAY2, 3, 0, 0, 3, 0)],
        "telegram": [(DAY1, 3, 1, 1, 1, 5000), (DAY2, 1, 0, 1, 0, 100)],
    }
    for platform, days in summary.per_day_by_platform.items():
        assert sum(c.requests for _, c in days) == summary.by_platform[platform].requests

    only_day2 = await UsageReader(redis_client, settings).summary(DAY2, DAY2)
    assert only_day2.errors_by_platform == {"discord": {"tts_busy": 2, "invalid_input": 1}}


async def test_days_written_before_per_platform_errors_still_read(
    redis_client: Redis, settings: StorageSettings
) -> None:
    """A bucket of the older layout (no per-platform error fields) reads as it always did."""
    await redis_client.hset(
        keys.usage_day(DAY1.isoformat()),
        mapping={"requests": 2, "errors": 1, "error|tts_busy": 1, "platform|discord|requests": 2},
    )
    summary = await UsageReader(redis_client, settings).summary(DAY1, DAY2)
    assert summary.errors_by_code == {"tts_busy": 1} and summary.errors_by_platform == {}
    assert summary.by_platform["discord"].requests == 2
    assert [(d, c.requests) for d, c in summary.per_day_by_platform["discord"]] == [
        (DAY1, 2),
        (DAY2, 0),
    ]


async def test_top_users(redis_client: Redis, settings: StorageSettings) -> None:
    await fill(UsageRecorder(redis_client, settings))
    reader = UsageReader(redis_client, settings)
    top = await reader.top_users(DAY1, DAY2, n=2)
    # Both made 2 requests; telegram:1 spent 1.25 GPU s, discord:7 none: GPU time breaks the tie.
    assert [(u.platform, u.user_id) for u in top] == [("telegram", "1"), ("discord", "7")]
    assert top[0].counts.synthesis_seconds == pytest.approx(1.25)
    assert [u.user_id for u in await reader.top_users(DAY2, DAY2, n=10)] == ["8", "2", "7"]


async def test_empty_range_and_bad_ranges(redis_client: Redis, settings: StorageSettings) -> None:
    reader = UsageReader(redis_client, settings)
    summary = await reader.summary(DAY1, DAY2)
    assert (
        summary.totals.requests == 0 and summary.hit_ratio is None and summary.estimated_cost == 0
    )
    with pytest.raises(ValueError):
        await reader.summary(DAY2, DAY1)
    with pytest.raises(ValueError):
        await reader.summary(DAY1, DAY1 + dt.timedelta(days=1000))


async def test_buckets_expire_after_the_retention(
    redis_client: Redis, settings: StorageSettings
) -> None:
    recorder = UsageRecorder(redis_client, settings.model_copy(update={"usage_retention_days": 90}))
    today = utc_today()
    recorder.record_soon("telegram", "1", "hit")
    await recorder.flush()
    end_of_retention = dt.datetime.combine(today + dt.timedelta(days=91), dt.time(), tzinfo=dt.UTC)
    expected_s = end_of_retention.timestamp() - time.time()
    for key in (keys.usage_day(today.isoformat()), keys.usage_users(today.isoformat())):
        assert abs(await redis_client.ttl(key) - expected_s) < 5


async def test_concurrent_increments_are_not_lost(
    redis_client: Redis, settings: StorageSettings
) -> None:
    recorders = [UsageRecorder(redis_client, settings, flush_interval_s=60) for _ in range(200)]
    for i, recorder in enumerate(recorders):  # 200 processes, one request each
        recorder.record_soon("discord", str(i % 5), "miss", synthesis_seconds=0.001, day=DAY1)
    await asyncio.gather(*(recorder.flush() for recorder in recorders))
    summary = await UsageReader(redis_client, settings).summary(DAY1, DAY1)
    assert summary.totals.requests == 200 and summary.totals.synthesis_ms == 200


class CountingConnection(Connection):
    """Counts writes to the socket: a round trip is one write followed by reading replies."""

    writes = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.writes += 1
        await super().send_packed_command(command, check_health)


async def test_one_round_trip_per_request(
    single_storage_settings: StorageSettings, valkey_url: str
) -> None:
    """Round trips are counted on one server's connections (a cluster's are its nodes')."""
    settings = single_storage_settings
    pool = BlockingConnectionPool.from_url(valkey_url, connection_class=CountingConnection)
    client = Redis.from_pool(pool)
    try:
        recorder = UsageRecorder(client, settings, flush_interval_s=60)
        await client.ping()  # connects (HELLO…) first
        before = CountingConnection.writes
        recorder.record_soon(
            "discord", "1", "error", error_code="x", audio_seconds=1, synthesis_seconds=1, day=DAY1
        )
        await recorder.flush()
        assert CountingConnection.writes - before == 1
    finally:
        await client.aclose()


async def test_buffered_counts_are_written_in_one_round_trip_per_flush(
    single_storage_settings: StorageSettings, valkey_url: str
) -> None:
    settings = single_storage_settings
    pool = BlockingConnectionPool.from_url(valkey_url, connection_class=CountingConnection)
    client = Redis.from_pool(pool)
    try:
        recorder = UsageRecorder(client, settings, flush_interval_s=60)
        await client.flushall()  # connects (HELLO…) first; this test asks for no redis_client
        before = CountingConnection.writes
        for i in range(50):
            recorder.record_soon("telegram", str(i % 3), "hit", audio_seconds=0.5)
        recorder.record_soon("discord", "9", "error", error_code="tts_busy")
        assert CountingConnection.writes == before  # nothing written while buffered
        await recorder.flush()
        assert CountingConnection.writes - before == 1
        today = utc_today()
        summary = await UsageReader(client, settings).summary(today, today)
        assert (summary.totals.requests, summary.totals.hits, summary.totals.errors) == (51, 50, 1)
        assert summary.totals.audio_ms == 25_000
        assert summary.errors_by_platform == {"discord": {"tts_busy": 1}}
        assert summary.by_platform["telegram"].requests == 50
        assert await client.ttl(keys.usage_users(today.isoformat())) > 0  # expiry set too
        before = CountingConnection.writes
        await recorder.flush()
        assert CountingConnection.writes == before  # an empty flush writes nothing
    finally:
        await client.aclose()


async def test_buffered_counts_are_written_within_the_interval(
    redis_client: Redis, settings: StorageSettings
) -> None:
    recorder = UsageRecorder(redis_client, settings, flush_interval_s=0.05)
    reader = UsageReader(redis_client, settings)
    today = utc_today()

    async def requests_written(count: int) -> UsageSummary:
        async with asyncio.timeout(5):
            while True:
                summary = await reader.summary(today, today)
                if summary.totals.requests >= count:
                    return summary
                await asyncio.sleep(0.01)

    recorder.record_soon("telegram", "1", "miss", audio_seconds=1.0, synthesis_seconds=0.5)
    await requests_written(1)
    recorder.record_soon("telegram", "1", "hit", audio_seconds=1.0)  # schedules a new flush
    summary = await requests_written(2)
    assert (summary.totals.hits, summary.totals.misses, summary.totals.synthesis_ms) == (1, 1, 500)


async def test_forget_user_drops_only_their_per_user_counts(
    redis_client: Redis, settings: StorageSettings
) -> None:
    recorder = UsageRecorder(redis_client, settings)
    today = utc_today()
    recorder.record_soon("telegram", "1", "miss", synthesis_seconds=2, day=today)
    recorder.record_soon("telegram", "2", "hit", day=today - dt.timedelta(days=3))
    recorder.record_soon("telegram", "1", "hit", day=today - dt.timedelta(days=3))
    await recorder.flush()
    assert await recorder.forget_user("telegram", "1") > 0
    reader = UsageReader(redis_client, settings)
    users = await reader.top_users(today - dt.timedelta(days=5), today, n=10)
    assert [(u.platform, u.user_id) for u in users] == [("telegram", "2")]
    assert (await reader.summary(today - dt.timedelta(days=5), today)).totals.requests == 3


async def test_days_past_the_retention_are_not_kept(
    redis_client: Redis, settings: StorageSettings
) -> None:
    old = utc_today() - dt.timedelta(days=settings.usage_retention_days + 2)
    recorder = UsageRecorder(redis_client, settings)
    recorder.record_soon("telegram", "1", "hit", day=old)
    await recorder.flush()
    assert await redis_client.exists(keys.usage_day(old.isoformat())) == 0


async def test_cloned_requests_consents_and_forgets_are_counted_apart(
    redis_client: Redis, settings: StorageSettings
) -> None:
    recorder = UsageRecorder(redis_client, settings)
    recorder.record_soon("telegram", "1", "miss", synthesis_seconds=1.0, cloned=True, day=DAY2)
    recorder.record_soon("telegram", "1", "hit", day=DAY2)
    recorder.event_soon("telegram", "consents", day=DAY2)
    recorder.event_soon("discord", "forgets", day=DAY2)
    await recorder.flush()
    summary = await UsageReader(redis_client, settings).summary(DAY2, DAY2)
    totals = summary.totals
    assert (totals.requests, totals.cloned, totals.consents, totals.forgets) == (2, 1, 1, 1)
    assert summary.by_platform["telegram"].consents == 1
    assert summary.by_platform["discord"].forgets == 1
    assert summary.by_platform["discord"].requests == 0  # an event is not a request
    users = await redis_client.hgetall(keys.usage_users(DAY2.isoformat()))
    assert {keys.as_text(name) for name in users} == {
        "telegram:1|requests",
        "telegram:1|hits",
        "telegram:1|misses",
        "telegram:1|synthesis_ms",
        "telegram:1|cloned",
    }, "consents and forgets are never counted per user"
