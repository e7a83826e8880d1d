"""Community and operator controls through saybot's real discord.py client: ``/settings``
(registered for members who can manage the server, checked again when it runs), blocked
words and a GPU-time quota.

Full path: Discord stand-in → discord.py → SayFlow → Valkey → a real TTS service. Nothing in
discord.py is mocked; assertions are on what the stand-in received.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from bots.community import OperatorRules
from bots.discord_bot.community import FOR_SERVERS
from storage.settings import StorageSettings
from tests.bots.harness import RentedGPU, Service, running_service, say_flow
from tests.bots.test_discord_bot import USER, Bot, Outcome, discord_bot
from tests.standins.discord_api import DiscordStandin, discord_pointed_at
from tts_service.engines.piper import PiperEngine

MANAGE_GUILD, ADMINISTRATOR, USE_COMMANDS = 1 << 5, 1 << 3, 1 << 31
MANAGER = str(MANAGE_GUILD | USE_COMMANDS)
SERVER_ADMIN = str(ADMINISTRATOR | USE_COMMANDS)
MEMBER = str(USE_COMMANDS)
NOT_A_MANAGER = "Only members who can manage this server can change its settings."


@pytest.fixture(scope="module")
def gpu(piper_engine: PiperEngine) -> Iterator[Service]:
    with running_service(RentedGPU(piper_engine)) as running:
        yield running


@contextlib.asynccontextmanager
async def server_bot(
    redis: Redis, storage: StorageSettings, service: Service, operator: OperatorRules | None = None
) -> AsyncIterator[Bot]:
    async with (
        DiscordStandin() as standin,
        discord_pointed_at(standin),
        say_flow(redis, storage, service.url, operator=operator) as flow,
        discord_bot(standin, flow) as client,
    ):
        yield Bot(standin, client, flow, service, client.settings)


async def settings(bot: Bot, sub: str, permissions: str = MANAGER, **options: Any) -> Outcome:
    opts = [{"name": name, "value": value} for name, value in options.items()]
    return await bot.command(
        "settings", opts, subcommand=sub, member_permissions=permissions, user_id=USER
    )


async def test_settings_are_registered_for_members_who_can_manage_the_server(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with server_bot(redis_client, open_storage, service) as bot:
        commands = {c["name"]: c for c in bot.standin.synced_commands[None]}
    registered = commands["settings"]
    assert int(registered["default_member_permissions"]) == MANAGE_GUILD
    assert registered["dm_permission"] is False
    subs = {o["name"]: o for o in registered["options"]}
    assert list(subs) == [
        "show",
        "cloning",
        "saved_voices",
        "max_text",
        "rate",
        "quota",
        "block",
        "unblock",
        "defaults",
        "read_names",
    ]
    ranges = {
        name: (option["min_value"], option["max_value"])
        for name in ("max_text", "rate", "quota")
        for option in subs[name]["options"]
    }
    assert ranges == {"max_text": (0, 1000), "rate": (0, 60), "quota": (0, 86_400)}
    exaggeration = next(o for o in subs["defaults"]["options"] if o["name"] == "exaggeration")
    assert (exaggeration["min_value"], exaggeration["max_value"]) == (0.25, 2.0)


async def test_anyone_shown_the_settings_sees_them_and_only_managers_change_them(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with server_bot(redis_client, open_storage, service) as bot:
        # A server owner may let everyone see /settings; changing still needs Manage Server.
        shown = (await settings(bot, "show", MEMBER)).private_text()
        assert shown.startswith("Settings here:\n• voice cloning: on\n")
        refused = await settings(bot, "cloning", MEMBER, allowed=False)
        assert refused.private_text() == NOT_A_MANAGER
        assert "• voice cloning: on" in (await settings(bot, "show", MEMBER)).private_text()

        changed = (await settings(bot, "cloning", allowed=False)).private_text()
        assert "• voice cloning: off" in changed
        rate = (await settings(bot, "rate", SERVER_ADMIN, per_minute=3)).private_text()
        assert "• requests per person: 3 a minute" in rate
        defaults = (await settings(bot, "defaults", exaggeration=0.7)).private_text()
        assert "• default options: exaggeration 0.7" in defaults
        nothing = await settings(bot, "defaults")
        assert nothing.private_text() == (
            "I can't change that: give exaggeration, temperature or cfg_weight, or reset."
        )
        reset = (await settings(bot, "defaults", reset=True)).private_text()
        assert "• default options: the engine's own" in reset

        in_dm = await bot.command("settings", subcommand="show", user_id=USER, guild_id=None)
        assert in_dm.private_text() == FOR_SERVERS


async def test_a_blocked_word_is_refused_privately_on_its_server(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with server_bot(redis_client, open_storage, service) as bot:
        blocked = (await settings(bot, "block", words='darn "oh heck"')).private_text()
        assert "• blocked words: darn, oh heck" in blocked
        refused = await bot.say("Oh HECK, not again.")
        assert refused.private_text() == "I won't say that: it has a word that is blocked here."
        assert not [c for c in refused.calls if c.files]
        assert (await bot.say("Heckling is allowed.")).upload().data
        in_dm = await bot.command(
            "say", [{"name": "text", "value": "Oh heck."}], user_id=USER, guild_id=None
        )
        assert in_dm.upload().data


async def test_past_the_servers_quota_only_cached_audio_answers(
    redis_client: Redis, open_storage: StorageSettings, gpu: Service
) -> None:
    async with server_bot(redis_client, open_storage, gpu) as bot:
        assert "GPU time for everyone here: 1 s a day" in (
            (await settings(bot, "quota", seconds=1)).private_text()
        )
        first = await bot.say("Spend some of the server's GPU time.")
        assert first.upload().data
        server = str(bot.standin.guild_id)
        ledger = bot.flow.quotas.ledger
        assert (await ledger.spent("discord", str(USER), server)).server_s > 0
        await ledger.add("discord", "someone-else", server, 1.0)  # the rest of today's second
        again = await bot.say("Spend some of the server's GPU time.")
        assert again.upload().data == first.upload().data
        refused = await bot.say("Something new.")
        assert refused.private_text().startswith(
            "Everyone here together has used today's voice-engine time — I can still answer"
        )
