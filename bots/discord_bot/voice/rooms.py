"""Which voice channels the bot is in, each server's queue, and leaving when left alone.

Nothing here is stored: after a restart the bot is in no voice channel and joins one only
when someone asks (``/join``) again. It leaves a channel by itself once no person (bots
don't count) has been in it for ``DISCORD_VOICE_IDLE_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any, cast

import discord

from bots.discord_bot.voice.errors import (
    BusyElsewhere,
    NotInBotsChannel,
    NotInVoice,
    VoiceUnavailable,
)
from bots.discord_bot.voice.playback import Entry, ServerQueue
from bots.draining import CLOSE_RESERVE_S

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0  # discord.py's own default is 30; a slash command waits for it

VoiceChannel = discord.VoiceChannel | discord.StageChannel


class VoiceRooms:
    """The bot's voice connections, one queue each, and their idle timers."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._queues: dict[int, ServerQueue] = {}
        self._idle: dict[int, asyncio.Task[None]] = {}

    # --- joining and leaving -------------------------------------------------------------------

    def joinable(self, member: discord.Member, *, may_move: bool = False) -> VoiceChannel:
        """``member``'s voice channel, if the bot may connect and speak there (else why not).
        The bot is not taken away from people listening in another channel unless
        ``may_move`` (members who can manage channels)."""
        state = member.voice
        if state is None or state.channel is None:
            raise NotInVoice("the member is in no voice channel")
        channel = state.channel
        me = member.guild.me
        if me is not None:
            allowed = channel.permissions_for(me)
            if not (allowed.connect and allowed.speak):
                raise VoiceUnavailable(f"no permission to connect and speak in {channel.id}")
        current = self.channel(member.guild)
        if current is not None and current != channel and _has_people(current) and not may_move:
            raise BusyElsewhere(f"in use in channel {current.id}")
        return channel

    async def join(self, member: discord.Member, *, may_move: bool = False) -> VoiceChannel:
        """Connect to ``member``'s voice channel (or move there) and return it."""
        channel = self.joinable(member, may_move=may_move)
        guild = member.guild
        client = self.voice_client(guild)
        if client is not None and client.channel != channel:
            # Leave, then connect afresh: discord.py's move_to keeps its UDP reader waiting
            # on the old socket for up to 30 s before it sees the new one.
            await self.leave(guild)
            client = None
        try:
            if client is None:
                connected: discord.VoiceProtocol = await channel.connect(
                    timeout=CONNECT_TIMEOUT_S, reconnect=True, self_deaf=True
                )
                client = cast(discord.VoiceClient, connected)
        except (TimeoutError, discord.ClientException, discord.HTTPException) as exc:
            log.warning("discord voice: could not join %s: %r", channel.id, exc)
            await self.leave(guild)
            raise VoiceUnavailable(f"could not connect to channel {channel.id}") from exc
        queue = self._queues.get(guild.id)
        if queue is None or queue.voice_client is not client:
            self._queues[guild.id] = ServerQueue(client)
        self._check_idle(guild)
        return channel

    async def leave(self, guild: discord.Guild) -> bool:
        """Stop playing and disconnect; False if the bot was in no channel there."""
        self._cancel_idle(guild.id)
        queue = self._queues.pop(guild.id, None)
        if queue is not None:
            await queue.close()
        client = self.voice_client(guild)
        if client is None:
            return False
        await client.disconnect(force=True)
        return True

    async def close(self, guilds: list[discord.Guild]) -> None:
        """At shutdown: every queue stopped, every channel left, all at once and within
        ``CLOSE_RESERVE_S`` (a leave waits for Discord to confirm it)."""
        for task in list(self._idle.values()):
            task.cancel()
        joined = [guild for guild in guilds if self.voice_client(guild) is not None]
        if not joined:
            return
        leaving = asyncio.gather(*(self.leave(g) for g in joined), return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(leaving, CLOSE_RESERVE_S)

    # --- what is playing -----------------------------------------------------------------------

    def voice_client(self, guild: discord.Guild) -> discord.VoiceClient | None:
        client = guild.voice_client
        return cast(discord.VoiceClient, client) if client is not None else None

    def listening(self, member: discord.Member) -> ServerQueue | None:
        """The queue ``member`` hears: the bot is connected in their voice channel."""
        queue = self._queues.get(member.guild.id)
        if queue is None or not queue.voice_client.is_connected():
            return None
        state = member.voice
        if state is None or state.channel != queue.voice_client.channel:
            return None
        return queue

    def queue_for(self, member: discord.Member) -> ServerQueue:
        """The queue of the channel ``member`` is in with the bot, or why there is none."""
        if member.voice is None or member.voice.channel is None:
            raise NotInVoice("the member is in no voice channel")
        queue = self.listening(member)
        if queue is None:
            raise NotInBotsChannel("the bot is not in the member's voice channel")
        return queue

    def play_for(self, member: discord.Member, audio: bytes | Awaitable[bytes]) -> Entry | None:
        """Queue ``audio`` if the bot is in ``member``'s voice channel; None otherwise."""
        queue = self.listening(member)
        return queue.add(member.id, audio) if queue is not None else None

    def channel(self, guild: discord.Guild) -> VoiceChannel | None:
        """The voice channel the bot is connected to in ``guild``."""
        queue = self._queues.get(guild.id)
        if queue is None or not queue.voice_client.is_connected():
            return None
        return queue.voice_client.channel

    # --- who is there --------------------------------------------------------------------------

    def member_moved(self, member: discord.Member, after: discord.VoiceState) -> None:
        """A VOICE_STATE_UPDATE: someone joined, left or moved (the bot itself too)."""
        guild = member.guild
        me = guild.me
        if me is not None and member.id == me.id and after.channel is None:
            # Disconnected (by /leave, a moderator, or the channel going away): forget it.
            self._cancel_idle(guild.id)
            queue = self._queues.pop(guild.id, None)
            if queue is not None:
                _in_background(queue.close())
            return
        self._check_idle(guild)

    def _check_idle(self, guild: discord.Guild) -> None:
        channel = self.channel(guild)
        if channel is None:
            self._cancel_idle(guild.id)
            return
        if _has_people(channel):
            self._cancel_idle(guild.id)
        elif guild.id not in self._idle:
            self._idle[guild.id] = asyncio.create_task(
                self._leave_when_idle(guild), name=f"saybot-voice-idle-{guild.id}"
            )

    async def _leave_when_idle(self, guild: discord.Guild) -> None:
        await asyncio.sleep(self.idle_s)
        self._idle.pop(guild.id, None)
        log.info("discord voice: alone for %.0f s in guild %s: leaving", self.idle_s, guild.id)
        await self.leave(guild)

    def _cancel_idle(self, guild_id: int) -> None:
        task = self._idle.pop(guild_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()


def _has_people(channel: VoiceChannel) -> bool:
    """Whether anyone but bots is in ``channel``; someone whose member is not cached counts
    as a person (better to stay than to leave people mid-conversation)."""
    me = channel.guild.me
    for user_id in channel.voice_states:
        if me is not None and user_id == me.id:
            continue
        member = channel.guild.get_member(user_id)
        if member is None or not member.bot:
            return True
    return False


_background: set[asyncio.Task[Any]] = set()


def _in_background(work: Awaitable[None]) -> None:
    task = asyncio.ensure_future(work)
    _background.add(task)
    task.add_done_callback(_background.discard)
