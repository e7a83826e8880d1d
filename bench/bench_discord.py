"""Discord end to end through the gateway/REST stand-in, against a baseline from the same run.

Cached ``/say`` (the whole saybot path: gateway → discord.py → SayFlow → Valkey hit →
edit of the deferred response with the audio) vs. a bare discord.py bot on the same
stand-in that defers and follows up with a fixed file. Latency = interaction
dispatched by the stand-in → the request carrying the audio received by it.

A third, diagnostic row runs saybot's adapter over a flow that answers with a
prepared result without touching Redis: the adapter's own cost, apart from the
shared flow's cache hit (which every platform pays alike).

    .venv/bin/python -m bench.bench_discord [--requests 800] [--rounds 16]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import time
from typing import Any

import discord
from discord import app_commands
from pydantic import SecretStr

from bench.answered_flow import AnsweredFlow
from bots.discord_bot.client import build_client, start_discord, stop_discord
from bots.heap import freeze_startup_objects
from bots.say import SayFlow, SayRequest
from storage.redis import make_client
from tests.bots.harness import bot_settings, running_service, say_flow
from tests.redis_fixtures import make_settings, start_valkey
from tests.standins.discord_api import Call, DiscordStandin, discord_pointed_at
from tts_service.engines.piper import PiperEngine

USER = 80351110224678912
CACHED_TEXT = "A cached sentence for the benchmark."


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def time_answers(standin: DiscordStandin, n: int) -> tuple[list[float], bytes]:
    """``/say`` ``n`` times, one at a time; seconds from dispatch to the audio arriving."""
    latencies = []
    audio = b""
    for _ in range(n):
        dispatched = time.monotonic()
        payload = await standin.send_slash_command(
            "say", [{"name": "text", "value": CACHED_TEXT}], user_id=USER
        )
        answer = await audio_call(standin, payload)
        latencies.append(answer.at - dispatched)
        audio = answer.files[0].data
    return latencies, audio


async def audio_call(standin: DiscordStandin, payload: dict[str, Any]) -> Call:
    """The request that brought the interaction's audio.

    Polls the interaction's own messages (a few) rather than ``standin.wait_for``,
    which searches the whole call log on every request and would weigh on the
    loop that both the stand-in and the bot run in.
    """
    async with asyncio.timeout(60):
        while True:
            messages = standin.interaction_messages(payload)
            if any(m["attachments"] for m in messages):
                for call in standin.calls(payload["token"]):
                    if call.files and call.status == 200:
                        return call
            await asyncio.sleep(0.0002)


class BareBot(discord.Client):
    """The baseline: one command that defers, then follows up with fixed bytes."""

    def __init__(self, audio: bytes) -> None:
        super().__init__(intents=discord.Intents(guilds=True), guild_ready_timeout=0)
        self.tree = app_commands.CommandTree(self)

        @self.tree.command(name="say", description="Answer with a fixed file")
        async def say(interaction: discord.Interaction, text: str) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.followup.send(file=discord.File(io.BytesIO(audio), "say.ogg"))

    async def setup_hook(self) -> None:
        await self.tree.sync()


async def saybot_round(flow: SayFlow, n: int) -> tuple[list[float], bytes]:
    """saybot on a fresh stand-in: 5 warm-up interactions (the first fills the cache), then n."""
    async with DiscordStandin() as standin, discord_pointed_at(standin):
        settings = bot_settings(discord_bot_token=SecretStr(standin.token))
        client = build_client(settings, flow, guild_ready_timeout=0)
        await start_discord(client)
        try:
            await asyncio.wait_for(client.wait_until_ready(), 10)
            await time_answers(standin, 5)
            return await time_answers(standin, n)
        finally:
            await stop_discord(client)


async def bare_round(audio: bytes, n: int) -> list[float]:
    """The bare bot on a fresh stand-in: 5 warm-up interactions, then n."""
    async with DiscordStandin() as standin, discord_pointed_at(standin):
        client = BareBot(audio)
        await client.login(standin.token)
        task = asyncio.create_task(client.connect())
        try:
            await asyncio.wait_for(client.wait_until_ready(), 10)
            await time_answers(standin, 5)
            latencies, _ = await time_answers(standin, n)
            return latencies
        finally:
            await client.close()
            await task


def row(label: str, values: list[float], base: list[float] | None = None) -> None:
    line = (
        f"  {label:<34} p50 {statistics.median(values) * 1000:6.2f} ms"
        f"   p99 {percentile(values, 0.99) * 1000:6.2f} ms"
    )
    if base is not None:
        line += (
            f"   ratio p50 {statistics.median(values) / statistics.median(base):.2f}×"
            f"  p99 {percentile(values, 0.99) / percentile(base, 0.99):.2f}×"
        )
    print(line)


async def main(requests: int, rounds: int, freeze: bool = True) -> None:
    engine = PiperEngine(onnx_threads=1)
    engine.load()
    server = start_valkey()
    url = f"redis://127.0.0.1:{server.port}"
    storage = make_settings(url, ratelimit_enabled=False)
    redis = make_client(url, storage)
    cached: list[float] = []
    adapter: list[float] = []
    bare: list[float] = []
    try:
        with running_service(engine) as service:
            async with say_flow(redis, storage, service.url) as flow:
                request = SayRequest("discord", str(USER), "0", CACHED_TEXT)
                answered = AnsweredFlow(flow, await flow.say(request))
                if freeze:  # as `saybot run` does once it has started (bots.heap)
                    freeze_startup_objects()
                # Alternating rounds, each on a fresh stand-in (its call log grows with use),
                # so drift in the machine's load weighs on every row alike.
                per_round = max(1, requests // rounds)
                before = service.counter.tts_requests
                for _ in range(rounds):
                    ours, audio = await saybot_round(flow, per_round)
                    cached += ours
                    adapter += (await saybot_round(answered, per_round))[0]
                    bare += await bare_round(audio, per_round)
                syntheses = service.counter.tts_requests - before
    finally:
        await redis.aclose()
        server.stop()

    print(
        f"Discord through the gateway/REST stand-in: {len(cached)} sequential interactions "
        f"per row, in {rounds} alternating rounds (target: cached /say ≤ 1.5× the bare bot)"
    )
    row("bare discord.py, fixed file", bare)
    row("saybot cached /say", cached, bare)
    row("saybot adapter, flow pre-answered", adapter, bare)
    print(f"  TTS service calls during the rounds: {syntheses}")


def cli(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--no-freeze", action="store_true", help="skip gc.freeze() after setup")
    args = parser.parse_args(argv)
    asyncio.run(main(args.requests, args.rounds, not args.no_freeze))


if __name__ == "__main__":
    cli()
