"""Shards split across bot processes: two saybot clients of two shards each (of four), each
with its own gateway sessions, HTTP client and ``SayFlow``, over one Redis and one TTS
service, against the Discord stand-in routing guilds to shards as Discord does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from pydantic import SecretStr, ValidationError
from redis.asyncio import Redis

from bots.discord_bot.client import ShardedSayBot, build_client, start_discord, stop_discord
from bots.discord_bot.sharding import IdentifyPacer, SessionStartsExhausted
from storage.settings import StorageSettings
from tests.bots.harness import Service, bot_settings, say_flow
from tests.standins.discord_api import DiscordStandin, discord_pointed_at

USER = 80351110224678912


@contextlib.asynccontextmanager
async def bot_process(
    standin: DiscordStandin,
    redis: Redis,
    storage: StorageSettings,
    service: Service,
    **overrides: Any,
) -> AsyncIterator[ShardedSayBot]:
    """One bot process as ``saybot run`` starts it, with the interactions it received."""
    async with say_flow(redis, storage, service.url) as flow:
        settings = bot_settings(discord_bot_token=SecretStr(standin.token), **overrides)
        client = build_client(settings, flow, guild_ready_timeout=0)
        assert isinstance(client, ShardedSayBot)
        received: list[int] = []

        async def on_interaction(interaction: discord.Interaction[Any]) -> None:
            received.append(interaction.id)

        client.on_interaction = on_interaction  # type: ignore[method-assign]
        client.received = received  # type: ignore[attr-defined]
        await start_discord(client)
        try:
            await asyncio.wait_for(client.wait_until_ready(), 10)
            yield client
        finally:
            await stop_discord(client, drain_timeout_s=10)


async def test_two_processes_of_two_shards_each_answer_their_own_guilds(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with (
        DiscordStandin(shards=4, max_concurrency=2) as standin,
        discord_pointed_at(standin),
        bot_process(
            standin, redis_client, open_storage, service,
            discord_shards=4, discord_shard_ids=[0, 1],
        ) as first,
        bot_process(
            standin, redis_client, open_storage, service,
            discord_shards=4, discord_shard_ids="2,3", discord_sync_commands=False,
        ) as second,
    ):  # fmt: skip
        assert sorted(i["shard"] for i in standin.identifies) == [[0, 4], [1, 4], [2, 4], [3, 4]]
        assert len(standin.calls("/commands", method="PUT")) == 1, "one process synced"
        payloads = []
        for shard in range(4):
            guild = standin.guild_on_shard(shard)
            payloads.append(
                await standin.send_slash_command(
                    "say",
                    [{"name": "text", "value": f"Shard {shard} speaking."}],
                    user_id=USER + shard,
                    guild_id=guild,
                )
            )
        for payload in payloads:
            token = payload["token"]
            await standin.wait_for(lambda c, t=token: c.path.endswith(f"/{t}/callback"), timeout=30)
        for client in (first, second):
            if client.in_flight:
                await asyncio.wait(set(client.in_flight))
        for payload in payloads:
            assert len(standin.calls(f"/{payload['token']}/callback")) == 1
            (answer,) = standin.interaction_messages(payload)
            assert answer["attachments"], answer
        ids = [int(p["id"]) for p in payloads]
        assert first.received == ids[:2]  # type: ignore[attr-defined]
        assert second.received == ids[2:]  # type: ignore[attr-defined]


async def test_a_process_never_starts_more_sessions_than_discord_allows(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with (
        DiscordStandin(shards=4, session_starts_remaining=1) as standin,
        discord_pointed_at(standin),
        say_flow(redis_client, open_storage, service.url) as flow,
    ):
        settings = bot_settings(
            discord_bot_token=SecretStr(standin.token), discord_shards=4, discord_shard_ids=[0, 1]
        )
        client = build_client(settings, flow, guild_ready_timeout=0)
        with pytest.raises(SessionStartsExhausted, match=r"1 more session start.*needs 2"):
            await start_discord(client)
        assert client.is_closed() and standin.identifies == []


async def test_identifies_are_paced_per_rate_limit_key() -> None:
    """max_concurrency 2: shards 0 and 1 start together, 2 waits for 0's window, 3 for 1's."""
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = IdentifyPacer(2, 5.0, clock=lambda: now[0], sleep=sleep)
    await pacer.wait(0)
    await pacer.wait(1)
    assert slept == []
    now[0] += 1.0
    await pacer.wait(2)
    await pacer.wait(3)
    assert slept == [4.0]  # 3's key last identified at 0 s too, and it is now 5 s


def test_shard_settings_are_checked() -> None:
    assert bot_settings(discord_shard_count=4, discord_shard_ids="1 3").discord_shard_ids == [1, 3]
    for bad in ({"discord_shard_ids": "0"}, {"discord_shards": 2, "discord_shard_ids": "2"}):
        with pytest.raises(ValidationError, match="DISCORD_SHARD"):
            bot_settings(**bad)
