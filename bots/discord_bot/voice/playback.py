"""One server's playback queue: answers heard in the bot's voice channel, one after another.

An entry joins the queue when it is asked for, its audio possibly still being made (the
channel reader queues a message at once and synthesises it meanwhile), so the queue keeps
the order in which things were asked, not the order in which syntheses finished. discord.py's
player thread sends the packets; its ``after`` callback hands the turn back to the loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import discord

from bots.discord_bot.voice.opus_source import OpusPackets

log = logging.getLogger(__name__)

MAX_ENTRIES = 25  # a busy channel read aloud must not queue an hour of speech


@dataclass(eq=False)
class Entry:
    """One answer to play, and who asked for it (they may skip or stop it)."""

    requester_id: int
    audio: asyncio.Future[bytes]
    skipped: asyncio.Event = field(default_factory=asyncio.Event)


class ServerQueue:
    """Plays entries into one connected ``VoiceClient``, in the order they were added."""

    def __init__(self, voice_client: discord.VoiceClient) -> None:
        self.voice_client = voice_client
        self.current: Entry | None = None
        self._waiting: collections.deque[Entry] = collections.deque()
        self._runner: asyncio.Task[None] | None = None

    @property
    def entries(self) -> list[Entry]:
        """The one playing (or being made) first, then the waiting ones."""
        return ([self.current] if self.current else []) + list(self._waiting)

    def add(self, requester_id: int, audio: bytes | Awaitable[bytes]) -> Entry | None:
        """Queue ``audio`` (an answer, or a synthesis still running) behind the others; None
        (and ``audio`` not awaited) when the queue is full."""
        if len(self._waiting) >= MAX_ENTRIES:
            if inspect.iscoroutine(audio):
                audio.close()  # never started: nothing synthesised for nobody
            elif isinstance(audio, asyncio.Future):
                audio.cancel()
            log.info("discord voice: the queue in guild %s is full", self._guild)
            return None
        if isinstance(audio, bytes):
            ready: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            ready.set_result(audio)
            audio = ready
        entry = Entry(requester_id, asyncio.ensure_future(audio))
        entry.audio.add_done_callback(_retrieve)
        self._waiting.append(entry)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._play_all(), name="saybot-voice-queue")
        return entry

    def skip(self) -> Entry | None:
        """End the current entry now; the next one starts."""
        entry = self.current
        if entry is not None:
            self._end(entry)
        return entry

    def stop(self, requester_id: int | None = None) -> list[Entry]:
        """End the entries of ``requester_id`` (None: everyone's), the current one included."""
        ended = [e for e in self.entries if requester_id is None or e.requester_id == requester_id]
        for entry in ended:
            with contextlib.suppress(ValueError):
                self._waiting.remove(entry)
            self._end(entry)
        return ended

    async def close(self) -> None:
        """Stop everything and wait for the queue's task to end."""
        self.stop()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    def _end(self, entry: Entry) -> None:
        entry.skipped.set()
        entry.audio.cancel()  # a synthesis nobody will hear (the cache still gets it)
        if entry is self.current:
            self.voice_client.stop()  # the player's ``after`` runs: the next entry starts

    async def _play_all(self) -> None:
        while self._waiting:
            self.current = self._waiting.popleft()
            try:
                await self._play(self.current)
            except Exception:
                log.exception("discord voice: could not play an entry in guild %s", self._guild)
            finally:
                self.current = None

    async def _play(self, entry: Entry) -> None:
        skipped = asyncio.ensure_future(entry.skipped.wait())
        try:
            either: set[asyncio.Future[Any]] = {entry.audio, skipped}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            skipped.cancel()
        if entry.skipped.is_set() or entry.audio.cancelled():
            return
        if entry.audio.exception() is not None:
            return  # the producer told its requester (or logged it) already
        source = await asyncio.to_thread(OpusPackets.of_ogg, entry.audio.result())
        if entry.skipped.is_set() or not self.voice_client.is_connected():
            return
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[Exception | None] = loop.create_future()

        def after(error: Exception | None) -> None:  # on discord.py's player thread
            loop.call_soon_threadsafe(_settle, finished, error)

        self.voice_client.play(source, after=after)
        error = await finished
        if error is not None:
            log.warning("discord voice: playback in guild %s ended with %r", self._guild, error)

    @property
    def _guild(self) -> int:
        return self.voice_client.guild.id


def _settle(future: asyncio.Future[Exception | None], error: Exception | None) -> None:
    if not future.done():
        future.set_result(error)


def _retrieve(future: asyncio.Future[bytes]) -> None:
    """Failures are the producer's to report: no "exception was never retrieved" here."""
    if not future.cancelled():
        future.exception()
