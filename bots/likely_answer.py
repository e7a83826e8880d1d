"""The cache lookup a request most likely needs, started before admission has answered.

Most requests are cache hits, and each Redis round trip on a hit's path is one more turn
of the event loop, where other work (the next getUpdates, other chats) slips in ahead of
the answer. The key of a request without a clip, in the built-in voice under the
operator's defaults, is known before admission has read the community's settings and the
user's saved voice; looking it up beside those reads makes the common hit one round trip
(``bench/bench_telegram.py``). The flow takes the prefetched lookup only for exactly that
key (no saved voice, no community default that changes it), and counts it then; any other
request drops it, uncounted: one small wasted read, never a wrong answer.
"""

from __future__ import annotations

import asyncio

from bots.community import Community
from bots.errors import SayError
from bots.requests import SayRequest
from bots.synthesis import audio_key
from storage.cache import AudioCache, Lookup
from storage.chat_settings import NO_SETTINGS
from tts_service.schema import EngineInfo, TTSParams


class LikelyAnswer:
    """One request's prefetched lookup: ``start`` it, ``take`` it for its key, ``drop`` it."""

    def __init__(
        self,
        key: str | None = None,
        task: asyncio.Task[Lookup] | None = None,
        made_of: tuple[TTSParams, EngineInfo] | None = None,
    ) -> None:
        self.key = key
        self._task = task
        self._made_of = made_of  # the params and engine ``key`` was derived from

    @classmethod
    def start(
        cls,
        request: SayRequest,
        engine: EngineInfo | None,
        community: Community,
        cache: AudioCache,
    ) -> LikelyAnswer:
        """The lookup under way, or nothing to take when the key cannot be guessed yet: a
        clip (its voice is not known before it is read), an engine not yet asked, or a
        request the operator's rules refuse (admission says why)."""
        if request.clip is not None or engine is None:
            return cls()
        try:
            params = community.check(request, NO_SETTINGS)
        except SayError:
            return cls()
        key = audio_key(params, None, engine)
        return cls(key, asyncio.create_task(cache.peek(key, request.sender)), (params, engine))

    def key_for(self, params: TTSParams, voice_id: str | None, engine: EngineInfo) -> str:
        """``audio_key`` of these, without deriving it again when it is the likely one."""
        if voice_id is None and self.key is not None and self._made_of == (params, engine):
            return self.key
        return audio_key(params, voice_id, engine)

    async def take(self, key: str) -> Lookup | None:
        """The prefetched lookup when it was for ``key`` (once); None otherwise."""
        task = self._task
        if task is None or key != self.key:
            return None
        self._task = None
        return await task

    def drop(self) -> None:
        """Not taken (another key, a refusal, an error): stopped if still under way."""
        if self._task is not None:
            self._task.cancel()
            self._task = None


NOTHING_LIKELY = LikelyAnswer()  # no lookup started: ``take`` is always None
