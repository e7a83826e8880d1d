"""A burst through the real ``saybot run``: N users send messages over M distinct texts, all
at once, through the Telegram stand-in, against a real local Piper service.

The bot is the real process (``python -m bots.cli run``, as ``tests/faults`` runs it) with
its own Valkey and rate limiting off; the Piper service runs in this process on a thread,
behind a counter of its syntheses. Rows:

1. cold burst: every text is new, so each is synthesised once while the other requests
   for it wait (single-flight), then answered from the cache;
2. warm burst: the same messages again from other users: all cache hits;
3. baseline: Piper alone on the M texts, one after the other (synthesis + encoding, no
   HTTP, no bot): the least time any bot needs to answer the cold burst.

Printed: replies, voice notes vs "busy" answers (and anything else), syntheses, p50/p95
latency (update queued at the stand-in → reply received), the burst's wall time against
the baseline, and the bot process's RSS before and after (and its peak).

    .venv/bin/python -m bench.bench_burst [--users 500] [--messages 500] [--texts 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.faults.faulty_tts import FaultyTTS, serving
from tests.faults.product import BUSY_PREFIX, Product, ReplyIndex, is_voice_note, redis_url
from tests.redis_fixtures import start_valkey
from tests.standins.telegram_api import Call, TelegramStandin
from tts_service import synthesis
from tts_service.engines.piper import PiperEngine
from tts_service.schema import TTSParams

ANSWER_TIMEOUT_S = 600.0


@dataclass
class Burst:
    name: str
    wall_s: float
    latencies_s: list[float]
    answers: list[list[Call]]
    syntheses: int
    bot_cpu_s: float
    harness_cpu_s: float

    @property
    def voice_notes(self) -> int:
        return sum(1 for found in self.answers if len(found) == 1 and is_voice_note(found[0]))

    @property
    def busy(self) -> int:
        return sum(
            1 for found in self.answers for call in found if _text(call).startswith(BUSY_PREFIX)
        )

    def others(self) -> list[str]:
        """Replies that are neither a voice note nor "busy", and messages with 0 or 2+ replies."""
        odd = [f"{len(found)} replies" for found in self.answers if len(found) != 1]
        odd += [
            _text(found[0]) or found[0].method
            for found in self.answers
            if len(found) == 1
            and not is_voice_note(found[0])
            and not _text(found[0]).startswith(BUSY_PREFIX)
        ]
        return odd


def _text(call: Call) -> str:
    return str(call.params.get("text") or "")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def texts(count: int) -> list[str]:
    return [f"Burst benchmark sentence number {n}, for everyone who asks." for n in range(count)]


async def burst(
    name: str,
    product: Product,
    tg: TelegramStandin,
    faulty: FaultyTTS,
    first_user: int,
    users: int,
    messages: int,
    spoken: list[str],
) -> Burst:
    """``messages`` /say commands from ``users`` users over ``spoken``, queued at once."""
    syntheses_before = faulty.syntheses()
    bot_cpu_before, harness_cpu_before = product.cpu_s(), time.process_time()
    queued: list[tuple[dict[str, object], float]] = []
    started = time.monotonic()
    for n in range(messages):
        user = first_user + n % users
        message = tg.send_command(user, user, "say", spoken[n % len(spoken)])
        queued.append((message, time.monotonic()))
    index = ReplyIndex(tg)
    pending = [message for message, _ in queued]
    deadline = started + ANSWER_TIMEOUT_S
    while pending:
        pending = [message for message in pending if not index.of(message)]
        if product.process.returncode is not None:
            raise RuntimeError(
                f"saybot exited ({product.process.returncode}):\n{product.log[-2000:]}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} messages unanswered after {ANSWER_TIMEOUT_S:g} s")
        await asyncio.sleep(0.02)
    answers = [index.of(message) for message, _ in queued]
    latencies = [found[0].at - at for found, (_, at) in zip(answers, queued, strict=True)]
    wall_s = max(found[0].at for found in answers) - started
    return Burst(
        name,
        wall_s,
        latencies,
        answers,
        faulty.syntheses() - syntheses_before,
        product.cpu_s() - bot_cpu_before,
        time.process_time() - harness_cpu_before,
    )


def piper_alone(engine: PiperEngine, spoken: list[str]) -> float:
    started = time.perf_counter()
    for text in spoken:
        synthesis.synthesize(engine, TTSParams(text=text))
    return time.perf_counter() - started


def report(rows: list[Burst], baseline_s: float, rss_kib: dict[str, int]) -> None:
    for row in rows:
        print(
            f"  {row.name:<12} replies {sum(len(found) for found in row.answers):5d}"
            f"   voice notes {row.voice_notes:5d}   busy {row.busy:3d}"
            f"   other {len(row.others()):3d}   syntheses {row.syntheses:3d}"
        )
        print(
            f"  {'':<12} p50 {statistics.median(row.latencies_s) * 1000:8.1f} ms"
            f"   p95 {percentile(row.latencies_s, 0.95) * 1000:8.1f} ms"
            f"   wall {row.wall_s:6.2f} s   ({row.wall_s / baseline_s:.2f}× the baseline)"
        )
        print(
            f"  {'':<12} CPU: bot process {row.bot_cpu_s:5.1f} s"
            f" ({row.bot_cpu_s / len(row.answers) * 1000:.1f} ms a message), this process"
            f" (stand-in, Piper service, harness) {row.harness_cpu_s:5.1f} s"
        )
        for odd in row.others()[:5]:
            print(f"  {'':<12} odd reply: {odd!r}")
    print(f"  {'baseline':<12} Piper alone on the texts, one after the other: {baseline_s:.2f} s")
    print(
        f"  bot RSS: {rss_kib['before'] / 1024:.0f} MiB before, "
        f"{rss_kib['after'] / 1024:.0f} MiB after (peak {rss_kib['peak'] / 1024:.0f} MiB)"
    )


async def main(users: int, messages: int, text_count: int, onnx_threads: int) -> None:
    engine = PiperEngine(onnx_threads=onnx_threads)
    engine.load()
    spoken = texts(text_count)
    with tempfile.TemporaryDirectory(prefix="saybot-bench-burst-") as folder:
        valkey = start_valkey(data_dir=Path(folder) / "valkey")
        try:
            with serving(engine, max_in_flight=4) as (url, faulty):
                async with TelegramStandin() as tg:
                    product = await Product.start(
                        tg,
                        Path(folder) / "bot",
                        tts_url=url,
                        redis_url=redis_url(valkey),
                        env={"RATELIMIT_ENABLED": "false"},
                    )
                    try:
                        rss = {"before": product.rss_kib()}
                        cold = await burst(
                            "cold burst", product, tg, faulty, 1, users, messages, spoken
                        )
                        warm = await burst(
                            "warm burst", product, tg, faulty, users + 1, users, messages, spoken
                        )
                        rss["after"] = product.rss_kib()
                        rss["peak"] = product.peak_rss_kib()
                    finally:
                        await product.terminate()
        finally:
            valkey.stop()
    baseline_s = await asyncio.to_thread(piper_alone, engine, spoken)
    print(
        f"Burst through saybot run: {users} users, {messages} messages per burst, "
        f"{text_count} distinct texts, rate limiting off"
    )
    report([cold, warm], baseline_s, rss)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--messages", type=int, default=500, help="per burst, over all users")
    parser.add_argument("--texts", type=int, default=20)
    parser.add_argument("--onnx-threads", type=int, default=1, help="the Piper service's")
    args = parser.parse_args()
    asyncio.run(main(args.users, args.messages, args.texts, args.onnx_threads))


if __name__ == "__main__":
    cli()
