"""Telegram end to end through the Bot API stand-in, against baselines from the same run.

1. Cached ``/say`` (the whole saybot path: PTB → SayFlow → Valkey hit → sendVoice)
   vs. a bare PTB bot that answers every command with a fixed voice note.
   Latency = update queued at the stand-in → sendVoice received.
2. Cache-miss ``/say`` (adds the HTTP call to the Piper service) vs. Piper
   called directly on the same texts (synthesis + encoding, no HTTP, no bot).

Two diagnostic rows: saybot's adapter over a flow that answers with a prepared
result without touching Redis (the adapter's own cost, apart from the shared flow's
cache hit, which every platform pays alike); and the bare bot awaiting one Redis GET
before it replies (what any round trip costs here: while it is out, PTB's next
getUpdates and the stand-in's reading of it run ahead of the answer).

All rows run in alternating rounds, each bot on a fresh stand-in (its call
log grows with use), so drift in the machine's load weighs on both sides alike.

    .venv/bin/python -m bench.bench_telegram [--requests 800] [--misses 16] [--rounds 16]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import time
from collections.abc import Awaitable, Callable

from telegram import Update
from telegram.ext import Application, CommandHandler, ContextTypes

from bench.answered_flow import AnsweredFlow
from bots.heap import freeze_startup_objects
from bots.say import SayFlow, SayRequest
from bots.telegram_bot.app import stop_telegram
from storage.redis import make_client
from tests.bots.harness import running_service, say_flow, telegram_app
from tests.redis_fixtures import make_settings, start_valkey
from tests.standins.telegram_api import TOKEN, TelegramStandin
from tts_service import synthesis
from tts_service.engines.piper import PiperEngine
from tts_service.schema import TTSParams

USER = 4242
CACHED_TEXT = "A cached sentence for the benchmark."
WARM_UP = 5


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def time_replies(tg: TelegramStandin, texts: list[str]) -> list[float]:
    """Send ``/say text`` one at a time; seconds from queueing to the sendVoice arriving."""
    latencies = []
    for text in texts:
        mark = tg.mark()
        queued = time.monotonic()
        tg.send_command(USER, USER, "say", text)
        # The voice note that went through: not a file_id Telegram refused on the way.
        call = await tg.wait_for("sendVoice", lambda c: c.ok, timeout=60, after_seq=mark)
        latencies.append(call.at - queued)
    return latencies


def uploaded_bytes(tg: TelegramStandin, after_seq: int) -> int:
    """Bytes of voice notes uploaded since ``after_seq`` (a file_id sent again uploads none)."""
    calls = tg.calls("sendVoice", after_seq=after_seq)
    return sum(len(upload.data) for call in calls for upload in call.uploads.values())


async def saybot_round(flow: SayFlow, texts: list[str]) -> tuple[list[float], bytes, int]:
    """saybot on a fresh stand-in: warm-up requests (the first fills the cache), then texts;
    the latencies, the audio, and the bytes uploaded for the texts."""
    async with TelegramStandin() as tg, telegram_app(tg, flow):
        await time_replies(tg, [CACHED_TEXT] * WARM_UP)
        mark = tg.mark()
        latencies = await time_replies(tg, texts)
        audio = next(call for call in tg.calls("sendVoice") if call.ok).files["voice"]
        return latencies, audio, uploaded_bytes(tg, mark)


async def bare_round(
    voice: bytes, n: int, first: Callable[[], Awaitable[object]] | None = None
) -> tuple[list[float], int]:
    """The baseline on a fresh stand-in: PTB with one handler that replies a fixed voice note
    (after awaiting ``first``, when given: the diagnostic of one Redis round trip)."""

    async def reply(update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        if first is not None:
            await first()
        await update.effective_message.reply_voice(voice, duration=2, do_quote=True)

    async with TelegramStandin() as tg:
        builder = Application.builder().token(TOKEN).base_url(tg.base_url)
        application = builder.base_file_url(tg.base_file_url).concurrent_updates(64).build()
        application.add_handler(CommandHandler("say", reply))
        await application.initialize()
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(timeout=1)
        try:
            await time_replies(tg, [CACHED_TEXT] * WARM_UP)
            mark = tg.mark()
            latencies = await time_replies(tg, [CACHED_TEXT] * n)
            return latencies, uploaded_bytes(tg, mark)
        finally:
            await stop_telegram(application)


def report(name: str, ours: list[float], base: list[float], base_name: str, target: str) -> None:
    for label, values in ((name, ours), (base_name, base)):
        print(
            f"  {label:<22} p50 {statistics.median(values) * 1000:8.1f} ms"
            f"   p99 {percentile(values, 0.99) * 1000:8.1f} ms"
        )
    print(
        f"  ratio: p50 {statistics.median(ours) / statistics.median(base):.2f}×"
        f"   p99 {percentile(ours, 0.99) / percentile(base, 0.99):.2f}×   ({target})"
    )


async def main(requests: int, misses: int, rounds: int, freeze: bool = True) -> None:
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    engine = PiperEngine(onnx_threads=1)
    engine.load()
    server = start_valkey()
    url = f"redis://127.0.0.1:{server.port}"
    storage = make_settings(url, ratelimit_enabled=False)
    redis = make_client(url, storage)
    cached: list[float] = []
    adapter: list[float] = []
    bare: list[float] = []
    bare_get: list[float] = []  # the bare bot awaiting one Redis GET first: a round trip's cost
    missed: list[float] = []
    direct: list[float] = []
    uploads = {"saybot": 0, "bare": 0}
    per_round = max(1, requests // rounds)
    misses_per_round = max(1, misses // rounds)
    try:
        with running_service(engine) as service:
            async with say_flow(redis, storage, service.url) as flow:
                request = SayRequest("telegram", str(USER), str(USER), CACHED_TEXT)
                answered = AnsweredFlow(flow, await flow.say(request))
                if freeze:  # as `saybot run` does once it has started (bots.heap)
                    freeze_startup_objects()
                for number in range(rounds):
                    ours, voice, sent = await saybot_round(flow, [CACHED_TEXT] * per_round)
                    cached += ours
                    uploads["saybot"] += sent
                    adapter += (await saybot_round(answered, [CACHED_TEXT] * per_round))[0]
                    base, sent = await bare_round(voice, per_round)
                    bare += base
                    uploads["bare"] += sent
                    bare_get += (
                        await bare_round(voice, per_round, functools.partial(redis.get, "k"))
                    )[0]
                    texts = [
                        f"Benchmark sentence number {number * misses_per_round + n}, never cached."
                        for n in range(misses_per_round)
                    ]
                    missed += (await saybot_round(flow, texts))[0]
                    direct += await asyncio.to_thread(piper_direct, engine, texts)
    finally:
        await redis.aclose()
        server.stop()

    print(
        f"Telegram through the Bot API stand-in: {len(cached)} sequential requests per row, "
        f"in {rounds} alternating rounds"
    )
    report("saybot cached /say", cached, bare, "bare PTB fixed voice", "target ≤ 1.5×")
    report("adapter, flow answered", adapter, bare, "bare PTB fixed voice", "diagnostic")
    report("bare PTB + 1 Redis GET", bare_get, bare, "bare PTB fixed voice", "diagnostic")
    print(
        f"  bytes uploaded per hit: saybot {uploads['saybot'] / len(cached):.0f}"
        f"   bare PTB {uploads['bare'] / len(bare):.0f} (it uploads its voice note every time)"
    )
    print(f"Cache misses, {len(missed)} distinct texts")
    report("saybot miss /say", missed, direct, "Piper direct", "the bot + HTTP overhead")


def piper_direct(engine: PiperEngine, texts: list[str]) -> list[float]:
    return [
        timed(functools.partial(synthesis.synthesize, engine, TTSParams(text=t))) for t in texts
    ]


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--misses", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--no-freeze", action="store_true", help="skip gc.freeze() after setup")
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.misses, args.rounds, not args.no_freeze))


if __name__ == "__main__":
    cli()
