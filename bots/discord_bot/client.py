"""saybot's discord.py client: built with injectable options, run inside saybot's own loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import discord

from bots.discord_bot.commands import SayTree
from bots.discord_bot.replies import reply_privately
from bots.discord_bot.sharding import IdentifyPacer, check_session_starts, shard_ids_of
from bots.discord_bot.voice.reader import ChannelReader
from bots.discord_bot.voice.rooms import VoiceRooms
from bots.draining import (
    CLOSE_RESERVE_S,
    DRAIN_TIMEOUT_S,
    GAVE_UP_TIMEOUT_S,
    cancel_and_wait,
    wait_for_in_flight,
)
from bots.messages import GAVE_UP
from bots.say import SayFlow
from bots.settings import BotSettings
from tts_service.exposure import secret_value

log = logging.getLogger(__name__)


def minimal_intents(*, read_channels: bool = False) -> discord.Intents:
    """Slash commands arrive without any intent; GUILDS is kept because discord.py's state
    handling relies on it (it warns without it); GUILD_VOICE_STATES says who is in which
    voice channel (``/join``, idle leave). Privileged MESSAGE_CONTENT (with GUILD_MESSAGES)
    only for the channel reader (``DISCORD_READ_CHANNELS``); never members or presences."""
    intents = discord.Intents(guilds=True, voice_states=True)
    if read_channels:
        intents.guild_messages = intents.message_content = True
    return intents


def member_cache() -> discord.MemberCacheFlags:
    """Only members in voice channels are kept: who is listening, and whether a channel
    has anyone but bots left in it."""
    flags = discord.MemberCacheFlags.none()
    flags.voice = True
    return flags


class SayBot(discord.Client):
    """The bot: a command tree over one ``SayFlow``. Extra keyword arguments go to
    ``discord.Client`` (tests pass ``guild_ready_timeout=0``)."""

    def __init__(self, settings: BotSettings, flow: SayFlow, **client_kwargs: Any) -> None:
        options: dict[str, Any] = {
            "intents": minimal_intents(read_channels=settings.discord_read_channels),
            # The bot keeps no messages and no member lists (but who is in voice).
            "max_messages": None,
            "member_cache_flags": member_cache(),
            "chunk_guilds_at_startup": False,
            "allowed_mentions": discord.AllowedMentions.none(),
        }
        options.update(client_kwargs)
        super().__init__(**options)
        self.settings = settings
        self.flow = flow
        self.tree = SayTree(self)
        self.accepting = True  # False while stopping: new commands are turned away
        # The task handling each command, with its interaction: stopping waits for them
        # and tells the users of any it had to give up on.
        self.in_flight: dict[asyncio.Task[Any], discord.Interaction[Any]] = {}
        self.gateway_task: asyncio.Task[None] | None = None
        self.voice = VoiceRooms(settings.discord_voice_idle_s)
        self.reader = ChannelReader(self) if settings.discord_read_channels else None

    async def setup_hook(self) -> None:
        """Runs inside ``login()``: register the commands with Discord (in one process of
        several: ``DISCORD_SYNC_COMMANDS``)."""
        if self.settings.discord_sync_commands:
            await sync_commands(self.tree, self.settings.discord_guild_ids)
        else:
            log.info("discord: commands not synced here (DISCORD_SYNC_COMMANDS=false)")

    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        self.voice.member_moved(member, after)

    async def on_message(self, message: discord.Message) -> None:
        if self.reader is not None:
            await self.reader.heard(message)

    async def close(self) -> None:
        """Leave every voice channel (queues stopped) before the gateway closes."""
        await self.voice.close(list(self.guilds))
        await super().close()


class ShardedSayBot(SayBot, discord.AutoShardedClient):
    """The same bot with one gateway connection per shard: ``DISCORD_SHARD_COUNT`` in all,
    ``DISCORD_SHARD_IDS`` of them in this process. Starts only as many sessions as Discord
    still allows, paced by its ``max_concurrency`` (``bots.discord_bot.sharding``)."""

    pacer: IdentifyPacer | None = None

    async def setup_hook(self) -> None:
        limits = await self.fetch_session_start_limits()
        mine = shard_ids_of(self.shard_count or 1, self.shard_ids or [])
        check_session_starts(len(mine), limits.remaining, limits.reset_after)
        self.pacer = IdentifyPacer(limits.max_concurrency)
        log.info(
            "discord: shards %s of %s (max_concurrency %d)",
            mine,
            self.shard_count,
            limits.max_concurrency,
        )
        await super().setup_hook()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if self.pacer is not None:
            await self.pacer.wait(shard_id)


def build_client(settings: BotSettings, flow: SayFlow, **client_kwargs: Any) -> SayBot:
    """The configured client; start it with ``start_discord``."""
    if secret_value(settings.discord_bot_token) is None:
        raise ValueError("DISCORD_BOT_TOKEN is not set")
    if settings.discord_shards is not None:
        client_kwargs.setdefault("shard_count", settings.discord_shards)
        if settings.discord_shard_ids:
            client_kwargs.setdefault("shard_ids", list(settings.discord_shard_ids))
        return ShardedSayBot(settings, flow, **client_kwargs)
    return SayBot(settings, flow, **client_kwargs)


async def sync_commands(tree: SayTree, guild_ids: list[int]) -> None:
    """Global commands by default (Discord may take a while to show changes everywhere);
    with ``DISCORD_GUILD_IDS``, those guilds only, which update at once (for development)."""
    if not guild_ids:
        synced = await tree.sync()
        log.info("discord: synced %d global command(s)", len(synced))
        return
    for guild_id in guild_ids:
        guild = discord.Object(id=guild_id)
        tree.copy_global_to(guild=guild)
        synced = await tree.sync(guild=guild)
        log.info("discord: synced %d command(s) to guild %s", len(synced), guild_id)


async def start_discord(client: SayBot) -> None:
    """Log in (checks the token, syncs the commands), then connect in a background task.

    Returns once logged in; ``is_connected`` says when the gateway is ready. On failure
    the client is closed again before the error propagates.
    """
    token = secret_value(client.settings.discord_bot_token)
    if token is None:
        raise ValueError("DISCORD_BOT_TOKEN is not set")
    try:
        await client.login(token)
    except BaseException:
        await client.close()
        raise
    client.gateway_task = asyncio.create_task(
        client.connect(reconnect=True), name="saybot-discord-gateway"
    )
    client.gateway_task.add_done_callback(_report_gateway_end)


def _report_gateway_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("discord: the gateway connection ended: %r", error, exc_info=error)


async def stop_discord(client: SayBot, drain_timeout_s: float = DRAIN_TIMEOUT_S) -> None:
    """Turn new commands away, let the running ones answer (bounded), then disconnect.

    Commands still running at the deadline are cancelled and their users told, so every
    accepted command gets exactly one answer even when stopping cannot wait for it.
    """
    client.accepting = False
    unfinished = await wait_for_in_flight(client.in_flight, drain_timeout_s, "discord command(s)")
    if unfinished:
        await _give_up_on({task: client.in_flight[task] for task in unfinished})
    await client.close()
    task = client.gateway_task
    if task is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            # close() ends connect(); its own errors were reported when it ended.
            await asyncio.wait_for(task, timeout=CLOSE_RESERVE_S)


async def _give_up_on(unfinished: dict[asyncio.Task[Any], discord.Interaction[Any]]) -> None:
    """Cancel commands that outlived the drain and tell each user, privately, to retry."""
    await cancel_and_wait(set(unfinished), GAVE_UP_TIMEOUT_S)
    async with asyncio.timeout(GAVE_UP_TIMEOUT_S):
        await asyncio.gather(
            *(_tell_gave_up(interaction) for interaction in unfinished.values()),
            return_exceptions=True,
        )


async def _tell_gave_up(interaction: discord.Interaction[Any]) -> None:
    try:
        await reply_privately(interaction, GAVE_UP)
    except Exception:
        log.warning("discord: could not tell user %s the bot stopped", interaction.user.id)


def is_connected(client: SayBot) -> bool:
    """Ready on the gateway and not closed."""
    return client.is_ready() and not client.is_closed()
