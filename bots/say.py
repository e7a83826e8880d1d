"""The one place the ``/say`` business flow lives; no Telegram or Discord types in here.

A request runs as a pipeline, one concern per step:

    check (text, options, the clip's declared metadata: nothing fetched yet)
    → rate limit (the user's saved voice is looked up alongside)
    → engine identity → voice (can it clone? then download and prepare the clip)
    → cache key → cache get → on a miss: the saved clip → single-flight → TTS → cache put
    → usage (counted off the answer's path)

Every outcome is either a ``SayResult`` or a ``SayError`` that the platform adapter turns
into one sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from pydantic import ValidationError
from redis.asyncio import Redis

from bots import clips
from bots.chosen_voice import (
    CLONING_OFF,
    SAVED_VOICE_EXPIRED,
    SAVED_VOICE_UNREACHABLE,
    ChosenVoice,
    VoiceSource,
    prepare_voice,
)
from bots.clips import ClipLimits, ClipSource
from bots.draining import DRAIN_TIMEOUT_S
from bots.engine_identity import EngineIdentity
from bots.errors import (
    InvalidInput,
    RateLimited,
    SayError,
    TTSBusy,
    TTSTimeout,
    TTSUnavailable,
    VoiceClipRejected,
    VoiceCloningUnavailable,
    is_transient,
    storage_errors_as_say_errors,
)
from bots.fallback import Fallback
from bots.flow_observer import FlowObserver, NoObserver
from bots.synthesis import Synthesizer
from bots.tts_client import TTSClient
from storage.cache import AudioCache, CachedAudio
from storage.cache_keys import cache_key
from storage.engine_identity import EngineIdentityStore
from storage.errors import StorageUnavailable
from storage.metrics import StorageMetrics
from storage.ratelimit import RateLimiter
from storage.settings import StorageSettings
from storage.singleflight import error_rebuilder
from storage.usage import UsageRecorder
from storage.voices import ForgetReport, VoiceStore
from tts_service.schema import (
    PARAM_RANGES,
    AudioFormat,
    EngineInfo,
    TTSParams,
    describe_validation_error,
)

log = logging.getLogger(__name__)
CANCELLED = "cancelled"  # the outcome (and usage error code) of a request cancelled mid-way


@dataclass(frozen=True)
class SayRequest:
    """One ``/say``, as any platform delivers it."""

    platform: str
    user_id: str
    chat_id: str
    text: str
    params: Mapping[str, float | int] = field(default_factory=dict)
    clip: ClipSource | None = None  # a clip sent with this request: clone it this once
    use_saved_voice: bool = True
    format: AudioFormat = AudioFormat.OGG_OPUS


@dataclass(frozen=True)
class SayResult:
    audio: bytes
    format: AudioFormat
    duration_s: float
    voice: VoiceSource
    from_cache: bool
    engine: str
    note: str | None = None  # e.g. why a saved voice was not used


@dataclass(frozen=True)
class SavedVoice:
    voice_id: str
    usable_now: bool  # False: the engine cannot clone right now; it is used once it can


def parse_params(request: SayRequest) -> TTSParams:
    """The request's text and options as the service's contract, or ``InvalidInput``."""
    unknown = sorted(set(request.params) - set(PARAM_RANGES))
    if unknown:
        allowed = ", ".join(f"{name} ({r.describe()})" for name, r in PARAM_RANGES.items())
        raise InvalidInput(f"unknown option {', '.join(unknown)}; the options are {allowed}")
    try:
        return TTSParams.model_validate(
            {**request.params, "text": request.text, "format": request.format}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(describe_validation_error(tuple(first["loc"]), first["msg"])) from exc


def _key(params: TTSParams, voice: ChosenVoice, engine: EngineInfo) -> str:
    return cache_key(
        params,
        reference_sha256=voice.voice_id,
        engine_name=engine.name,
        model_version=engine.model_version,
        fmt=params.format,
    )


async def _none() -> None:
    return None


def _nothing_to_do() -> None:
    pass


@dataclass
class SayFlow:
    """``say`` and the voice commands, over injected storage, TTS client and engine identity."""

    tts: TTSClient
    cache: AudioCache
    voices: VoiceStore
    limiter: RateLimiter
    usage: UsageRecorder
    engine: EngineIdentity
    observer: FlowObserver = field(default_factory=NoObserver)
    clip_limits: ClipLimits = field(default_factory=ClipLimits)
    fallback: Fallback | None = None  # a stand-in voice when the GPU is away (opt-in)

    def __post_init__(self) -> None:
        self._synthesizer = Synthesizer(self.cache, self.observer)

    @classmethod
    def over_redis(
        cls,
        redis: Redis,
        settings: StorageSettings,
        tts: TTSClient,
        *,
        metrics: StorageMetrics | None = None,
        observer: FlowObserver | None = None,
        clip_limits: ClipLimits | None = None,
        engine_info_max_age_s: float = 300.0,
        fallback: Fallback | None = None,
    ) -> SayFlow:
        """The flow over one Redis client, its storage sharing one metrics object."""
        metrics = metrics or StorageMetrics()
        # Waiters of a failed single-flight synthesis raise the same error the leader got.
        rebuild = error_rebuilder(
            TTSUnavailable,
            TTSTimeout,
            TTSBusy,
            InvalidInput,
            VoiceClipRejected,
            VoiceCloningUnavailable,
        )
        return cls(
            tts=tts,
            cache=AudioCache(
                redis, settings, metrics, rebuild_error=rebuild, is_transient=is_transient
            ),
            voices=VoiceStore(redis, settings, metrics),
            limiter=RateLimiter(redis, settings, metrics),
            usage=UsageRecorder(redis, settings, metrics),
            engine=EngineIdentity(
                tts.fetch_engine_info,
                EngineIdentityStore(redis, metrics),
                max_age_s=engine_info_max_age_s,
            ),
            observer=observer or NoObserver(),
            clip_limits=clip_limits or ClipLimits(),
            fallback=fallback,
        )

    async def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """At shutdown, after the adapters stopped: background syntheses end before the
        Redis and TTS clients close under them."""
        await self.cache.drain(timeout_s)
        await self.engine.aclose()
        if self.fallback is not None:
            await self.fallback.engine.aclose()
        await self.settled()

    async def settled(self) -> None:
        """Write the usage counted so far (before reading it back, and at shutdown)."""
        await self.usage.flush()

    # --- /say --------------------------------------------------------------------------------

    async def say(
        self, request: SayRequest, *, admitted: Callable[[], None] | None = None
    ) -> SayResult:
        """Speak ``request``. ``admitted`` is called once everything that can refuse it
        without real work has passed (text, options, clip metadata, rate limit, cloning
        available): an adapter may then show progress (Discord's "thinking…")."""
        started = time.perf_counter()
        self.observer.request_started(request.platform)
        outcome = "bug"
        try:
            with storage_errors_as_say_errors():
                result = await self._say(request, admitted or _nothing_to_do)
            outcome = "hit" if result.from_cache else "miss"
        except asyncio.CancelledError:
            # The chat interaction gave up or the bot is stopping; the shielded synthesis
            # still lands in the cache, but this request ends here and is counted as such.
            outcome = CANCELLED
            raise
        except SayError as exc:
            outcome = exc.code
            raise
        finally:
            # Whatever ended the request (cancellation included), the in-flight gauge drops.
            self.observer.request_finished(request.platform, outcome, time.perf_counter() - started)
            if outcome not in ("hit", "miss"):
                self.usage.record_soon(
                    request.platform, request.user_id, "error", error_code=outcome
                )
        log.info(
            "say platform=%s user=%s cached=%s audio=%.1fs took=%.2fs",
            request.platform,
            request.user_id,
            result.from_cache,
            result.duration_s,
            time.perf_counter() - started,
        )
        return result

    def check(self, request: SayRequest) -> TTSParams:
        """What can be refused without asking anyone: text, options, the clip's metadata.
        Adapters may call it early (Discord: before a public "thinking…")."""
        params = parse_params(request)
        if request.clip is not None:
            self.check_clip(request.clip)
        return params

    def check_clip(self, clip: ClipSource) -> None:
        """A clip refused by its declared size, type and duration, before any download."""
        clips.check_metadata(clip, self.clip_limits)

    async def _say(self, request: SayRequest, admitted: Callable[[], None]) -> SayResult:
        params = self.check(request)
        saved_voice_id = await self._admit(request)
        spoken = self._spoken(request, params, saved_voice_id, admitted)
        if self.fallback is None or request.clip is not None:  # a clip is never faked
            return await spoken
        answer = await self.fallback.within_budget(spoken)
        if answer is not None:
            return answer
        admitted()
        voice, made = await self.fallback.stand_in(
            params, request.platform, request.user_id, saved_voice_id is not None, self._synthesizer
        )
        return self._answer(request, made.entry, made.from_cache, made.synthesis_s, voice)

    async def _spoken(
        self,
        request: SayRequest,
        params: TTSParams,
        saved_voice_id: str | None,
        admitted: Callable[[], None],
    ) -> SayResult:
        """The answer of the TTS service (or its cache)."""
        engine = await self.engine.current()
        if request.clip is not None and not engine.can_clone_voice:
            raise VoiceCloningUnavailable("this service's engine cannot clone voices")
        admitted()
        voice = await self._voice(request, engine, saved_voice_id)
        return await self._cached_or_synthesized(request, params, engine, voice)

    async def _admit(self, request: SayRequest) -> str | None:
        """The rate limit; the user's saved voice id is looked up alongside (one round trip)."""
        wants_saved = request.clip is None and request.use_saved_voice
        limit, saved = await asyncio.gather(
            self.limiter.check(request.platform, request.user_id),
            self.voices.default_voice(request.platform, request.user_id)
            if wants_saved
            else _none(),
        )
        if not limit.allowed:
            raise RateLimited(limit.retry_after_s)
        return saved

    async def _voice(
        self, request: SayRequest, engine: EngineInfo, saved_voice_id: str | None
    ) -> ChosenVoice:
        """The voice to speak in. A clip sent now is downloaded only once the engine is
        known to clone; a saved voice is named by its id (its clip is loaded on a miss)."""
        if request.clip is not None:
            voice = await prepare_voice(await clips.download(request.clip, self.clip_limits))
            # Not the clip: only its id, so "forget my voice" finds the audio cached with it.
            await self.voices.note_attached(request.platform, request.user_id, voice.voice_id)
            return ChosenVoice(VoiceSource.ATTACHED, voice.voice_id, voice.clip)
        if saved_voice_id is None:
            return ChosenVoice.built_in()
        if not engine.can_clone_voice:
            return ChosenVoice.built_in(CLONING_OFF)
        return ChosenVoice(VoiceSource.SAVED, saved_voice_id)

    async def _cached_or_synthesized(
        self, request: SayRequest, params: TTSParams, engine: EngineInfo, voice: ChosenVoice
    ) -> SayResult:
        key = _key(params, voice, engine)
        entry = await self._cached(key, request, voice)
        if entry is not None:
            return self._answer(request, entry, True, 0.0, voice)
        if voice.source is VoiceSource.SAVED and voice.clip is None:
            voice = await self._load_saved_clip(request, voice)
            if voice.voice_id is None:  # fell back to the built-in voice: another key
                return await self._cached_or_synthesized(request, params, engine, voice)
        made = await self._synthesizer.make(key, params, voice, self.tts, self.engine)
        return self._answer(request, made.entry, made.from_cache, made.synthesis_s, voice)

    async def _cached(
        self, key: str, request: SayRequest, voice: ChosenVoice
    ) -> CachedAudio | None:
        """The cached answer; a saved voice's use restarts its idle TTL (without its clip)."""
        if voice.source is not VoiceSource.SAVED or voice.voice_id is None:
            return await self.cache.get(key)
        entry, _ = await asyncio.gather(
            self.cache.get(key),
            self.voices.touch(voice.voice_id, request.platform, request.user_id),
        )
        return entry

    async def _load_saved_clip(self, request: SayRequest, voice: ChosenVoice) -> ChosenVoice:
        """The saved voice with its clip, or the built-in voice saying why not."""
        assert voice.voice_id is not None
        found = await self.voices.lookup_clip(voice.voice_id, request.platform, request.user_id)
        if found.clip is not None:
            return replace(voice, clip=found.clip)
        if found.unavailable:
            # Storage blinked after the pointer was read: the voice is fine, keep the pointer.
            return ChosenVoice.built_in(SAVED_VOICE_UNREACHABLE)
        # If storage fails now, the next request finds the dangling pointer and tries again.
        with contextlib.suppress(StorageUnavailable):
            await self.voices.clear_default(request.platform, request.user_id)
        return ChosenVoice.built_in(SAVED_VOICE_EXPIRED)

    def _answer(
        self,
        request: SayRequest,
        entry: CachedAudio,
        from_cache: bool,
        synthesis_s: float,
        voice: ChosenVoice,
    ) -> SayResult:
        """The result; its usage is counted in the background (off the answer's path)."""
        self.usage.record_soon(
            request.platform,
            request.user_id,
            "hit" if from_cache else "miss",
            audio_seconds=entry.duration_s,
            synthesis_seconds=synthesis_s,
        )
        return SayResult(
            audio=entry.audio,
            format=entry.format,
            duration_s=entry.duration_s,
            voice=voice.source,
            from_cache=from_cache,
            engine=entry.engine,
            note=voice.note,
        )

    # --- voice commands ----------------------------------------------------------------------

    async def save_voice(self, platform: str, user_id: str, clip: ClipSource) -> SavedVoice:
        """Make the clip the user's default voice: its metadata checked and the user's rate
        limit asked before anything is downloaded (uploads are the costly part)."""
        self.check_clip(clip)
        limit = await self.limiter.check(platform, user_id)
        if not limit.allowed:
            raise RateLimited(limit.retry_after_s)
        voice = await prepare_voice(await clips.download(clip, self.clip_limits))
        with storage_errors_as_say_errors():
            await self.voices.save(platform, user_id, voice.voice_id, voice.clip)
        return SavedVoice(voice.voice_id, usable_now=await self.can_clone())

    async def use_built_in_voice(self, platform: str, user_id: str) -> None:
        with storage_errors_as_say_errors():
            await self.voices.clear_default(platform, user_id)

    async def forget_voice(self, platform: str, user_id: str) -> ForgetReport:
        """Delete the user's clips, their default pointer and all audio made with them."""
        with storage_errors_as_say_errors():
            return await self.voices.forget(platform, user_id)

    async def can_clone(self) -> bool:
        return (await self.engine.current()).can_clone_voice
