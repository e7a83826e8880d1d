"""A cache miss made good: one synthesis among all concurrent askers, cached, observed.

Apart from ``bots.say`` because both the TTS service and the fallback's stand-in voice
(``bots.fallback``) answer misses the same way, each under its own engine's keys.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bots.chosen_voice import ChosenVoice
from bots.engine_identity import EngineIdentity
from bots.errors import SayError
from bots.flow_observer import FlowObserver
from bots.tts_client import TTSClient
from storage.cache import AudioCache, CachedAudio
from storage.cache_keys import cache_key
from tts_service.schema import EngineInfo, TTSParams


def audio_key(params: TTSParams, voice_id: str | None, engine: EngineInfo) -> str:
    """The cache key of ``params`` spoken by ``engine`` in the voice ``voice_id``."""
    return cache_key(params, voice_id, engine.name, engine.model_version, params.format)


# Told what a synthesis cost: the engine that ran it and its seconds (``bots.quotas``).
Spent = Callable[[str, float], Awaitable[None]]


@dataclass(frozen=True)
class Made:
    entry: CachedAudio
    from_cache: bool  # another asker's synthesis answered this one
    synthesis_s: float  # the engine's own time; 0 when shared


@dataclass(frozen=True)
class Synthesizer:
    cache: AudioCache
    observer: FlowObserver

    async def make(
        self,
        key: str,
        params: TTSParams,
        voice: ChosenVoice,
        tts: TTSClient,
        engine: EngineIdentity,
        spent: Spent | None = None,
    ) -> Made:
        """The answer under ``key``, made by ``tts`` unless another asker makes it first
        (the caller has just looked ``key`` up and missed). ``spent`` is told the engine and
        its synthesis seconds where the synthesis ends, even if the asker has left by then."""
        synthesis_s = 0.0

        async def synthesize() -> CachedAudio:
            nonlocal synthesis_s
            called = time.perf_counter()
            try:
                made = await tts.synthesize(params, voice.clip)
            except SayError as exc:
                self.observer.tts_called(time.perf_counter() - called, exc.code)
                raise
            self.observer.tts_called(time.perf_counter() - called, None)
            engine.observed(made.engine, made.engine_version)
            synthesis_s = made.synthesis_s
            if spent is not None:
                await spent(made.engine, made.synthesis_s)
            return CachedAudio(
                audio=made.audio,
                format=made.format,
                duration_s=made.duration_s,
                engine=made.engine,
                created_at=time.time(),
                voice_id=voice.voice_id,
            )

        entry, from_cache = await self.cache.get_or_create(key, synthesize, known_missing=True)
        return Made(entry, from_cache, synthesis_s)
