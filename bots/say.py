"""The one place the ``/say`` business flow lives; no Telegram or Discord types in here.

validate → rate limit → voice → cache key → cache get → single-flight → TTS call
→ cache put → usage. Every outcome is either a ``SayResult`` or a ``SayError``
that the platform adapter turns into one sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, TypeVar

import anyio
from pydantic import ValidationError
from redis.asyncio import Redis

from bots.errors import (
    InvalidInput,
    RateLimited,
    SayError,
    StorageProblem,
    TTSBusy,
    TTSTimeout,
    TTSUnavailable,
    VoiceClipRejected,
    VoiceCloningUnavailable,
)
from bots.tts_client import TTSClient
from storage.cache import AudioCache, CachedAudio, cache_key, error_rebuilder
from storage.engine_identity import EngineIdentityStore
from storage.errors import (
    SingleFlightFailed,
    SingleFlightTimeout,
    StorageError,
    StorageUnavailable,
    VoiceTooLarge,
)
from storage.metrics import StorageMetrics
from storage.ratelimit import RateLimiter
from storage.settings import StorageSettings
from storage.usage import UsageRecorder
from storage.voices import ForgetReport, VoiceStore
from tts_service import audio
from tts_service.errors import PayloadTooLarge, ReferenceAudioError
from tts_service.schema import (
    PARAM_RANGES,
    AudioFormat,
    EngineInfo,
    TTSParams,
    describe_validation_error,
)

log = logging.getLogger(__name__)
# A stop waits this long for syntheses whose chat requests already ended.
DRAIN_TIMEOUT_S = 30.0

# Clips are normalised once, at this rate, by the bot: the voice id (their fingerprint) is then
# the same whichever container or rate the user's phone recorded in.
REFERENCE_SAMPLE_RATE = 24_000
T = TypeVar("T")
CANCELLED = "cancelled"  # the outcome (and usage error code) of a request cancelled mid-way


class VoiceSource(StrEnum):
    BUILT_IN = "built-in voice"
    SAVED = "your saved voice"
    ATTACHED = "the voice you sent"


@dataclass(frozen=True)
class SayRequest:
    """One ``/say``, as any platform delivers it."""

    platform: str
    user_id: str
    chat_id: str
    text: str
    params: Mapping[str, float | int] = field(default_factory=dict)
    reference_clip: bytes | None = None  # a clip sent with this request: clone it this once
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
class PreparedVoice:
    voice_id: str
    clip: bytes  # FLAC of the normalised clip


class FlowObserver(Protocol):
    """Hooks the metrics layer implements (``bots.metrics``); the flow stays Prometheus-free."""

    def request_started(self, platform: str) -> None: ...

    def request_finished(self, platform: str, outcome: str, seconds: float) -> None:
        """``outcome``: "hit", "miss" or an error code."""
        ...

    def tts_called(self, seconds: float, error_code: str | None) -> None: ...


class NoObserver:
    def request_started(self, platform: str) -> None:
        pass

    def request_finished(self, platform: str, outcome: str, seconds: float) -> None:
        pass

    def tts_called(self, seconds: float, error_code: str | None) -> None:
        pass


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


async def prepare_voice(clip: bytes) -> PreparedVoice:
    """Decode, check and normalise a clip off the event loop; ``VoiceClipRejected`` if unusable."""
    try:
        reference = await anyio.to_thread.run_sync(
            audio.prepare_reference, clip, REFERENCE_SAMPLE_RATE
        )
    except (ReferenceAudioError, PayloadTooLarge) as exc:
        raise VoiceClipRejected(exc.message) from exc
    flac = await anyio.to_thread.run_sync(audio.encode_reference, reference)
    return PreparedVoice(voice_id=reference.sha256, clip=flac)


def as_say_error(error: StorageError) -> SayError:
    """Storage failures that could not degrade, in the bots' terms."""
    if isinstance(error, VoiceTooLarge):
        return VoiceClipRejected("it is too large to keep; send a shorter clip")
    if isinstance(error, SingleFlightTimeout):
        return TTSTimeout("waited too long for the same request to finish")
    if isinstance(error, SingleFlightFailed):
        return TTSUnavailable(f"the shared synthesis failed ({error.code})")
    if isinstance(error, StorageUnavailable):
        return StorageProblem("storage is unavailable right now")
    return StorageProblem(str(error))


@contextlib.contextmanager
def storage_errors_as_say_errors() -> Iterator[None]:
    try:
        yield
    except StorageError as exc:
        raise as_say_error(exc) from exc


def _key(params: TTSParams, voice: PreparedVoice | None, engine: EngineInfo) -> str:
    return cache_key(
        params,
        reference_sha256=voice.voice_id if voice else None,
        engine_name=engine.name,
        model_version=engine.model_version,
        fmt=params.format,
    )


async def _nothing() -> None:
    return None


def _unwrap(outcome: T | BaseException) -> T:
    """A result of ``gather(..., return_exceptions=True)``, or its error raised."""
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class SayFlow:
    """``say`` and the voice commands, over injected storage and TTS clients."""

    def __init__(
        self,
        tts: TTSClient,
        cache: AudioCache,
        voices: VoiceStore,
        limiter: RateLimiter,
        usage: UsageRecorder,
        observer: FlowObserver | None = None,
        engines: EngineIdentityStore | None = None,
    ) -> None:
        self.observer: FlowObserver = observer or NoObserver()
        self.engines = engines
        self._remembered_engine: EngineInfo | None = None  # what ``engines`` holds, as far as known
        self.tts = tts
        self.cache = cache
        self.voices = voices
        self.limiter = limiter
        self.usage = usage

    @classmethod
    def over_redis(
        cls,
        redis: Redis,
        settings: StorageSettings,
        tts: TTSClient,
        *,
        metrics: StorageMetrics | None = None,
        observer: FlowObserver | None = None,
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
            cache=AudioCache(redis, settings, metrics, rebuild_error=rebuild),
            voices=VoiceStore(redis, settings, metrics),
            limiter=RateLimiter(redis, settings, metrics),
            usage=UsageRecorder(redis, settings, metrics),
            observer=observer,
            engines=EngineIdentityStore(redis, metrics),
        )

    async def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """At shutdown, after the adapters stopped: background syntheses end before the
        Redis and TTS clients close under them."""
        await self.cache.drain(timeout_s)
        await self.settled()

    async def say(self, request: SayRequest) -> SayResult:
        started = time.perf_counter()
        self.observer.request_started(request.platform)
        outcome = "bug"
        try:
            with storage_errors_as_say_errors():
                result = await self._say(request)
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

    async def _say(self, request: SayRequest) -> SayResult:
        params = parse_params(request)
        # Independent lookups, run together: a cache hit is mostly waiting on Redis. The
        # likeliest answer (the built-in voice, the engine as last known) is looked up
        # alongside; it is used only if the key it was read under turns out to be the key.
        known = self.tts.known_engine_info
        likely_key = (
            _key(params, None, known)
            if known is not None and request.reference_clip is None
            else None
        )
        limit, info, saved, prefetched = await asyncio.gather(
            self.limiter.check(request.platform, request.user_id),
            self._engine_info(),
            self._saved_voice_id(request),
            self.cache.peek(likely_key) if likely_key else _nothing(),
            return_exceptions=True,
        )
        decision = _unwrap(limit)  # in this order: a rate limit is reported before the rest
        engine = _unwrap(info)
        saved_voice_id = _unwrap(saved)
        if not decision.allowed:
            raise RateLimited(decision.retry_after_s)
        voice, source, note = await self._choose_voice(
            request, engine.can_clone_voice, saved_voice_id
        )
        if voice is None and likely_key is not None and engine == known:
            key, looked_up = likely_key, True  # the key the likeliest answer was read under
        else:
            key, looked_up = _key(params, voice, engine), False
        if looked_up:
            entry_or_none = _unwrap(prefetched)
            self.cache.count_lookup(entry_or_none)
            if entry_or_none is not None:
                return self._answer(request, entry_or_none, True, 0.0, source, note)
        synthesis_s = 0.0

        async def synthesize() -> CachedAudio:
            nonlocal synthesis_s
            called = time.perf_counter()
            try:
                made = await self.tts.synthesize(params, voice.clip if voice else None)
            except SayError as exc:
                self.observer.tts_called(time.perf_counter() - called, exc.code)
                raise
            self.observer.tts_called(time.perf_counter() - called, None)
            synthesis_s = made.synthesis_s
            return CachedAudio(
                audio=made.audio,
                format=made.format,
                duration_s=made.duration_s,
                engine=made.engine,
                created_at=time.time(),
                voice_id=voice.voice_id if voice else None,
            )

        entry, from_cache = await self.cache.get_or_create(key, synthesize, known_missing=looked_up)
        return self._answer(request, entry, from_cache, synthesis_s, source, note)

    def _answer(
        self,
        request: SayRequest,
        entry: CachedAudio,
        from_cache: bool,
        synthesis_s: float,
        source: VoiceSource,
        note: str | None,
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
            voice=source,
            from_cache=from_cache,
            engine=entry.engine,
            note=note,
        )

    async def settled(self) -> None:
        """Write the usage counted so far (before reading it back, and at shutdown)."""
        await self.usage.flush()

    async def _saved_voice_id(self, request: SayRequest) -> str | None:
        """The user's saved voice, where this request would use one."""
        if request.reference_clip is not None or not request.use_saved_voice:
            return None
        return await self.voices.default_voice(request.platform, request.user_id)

    async def _choose_voice(
        self, request: SayRequest, can_clone: bool, voice_id: str | None
    ) -> tuple[PreparedVoice | None, VoiceSource, str | None]:
        if request.reference_clip is not None:
            if not can_clone:
                raise VoiceCloningUnavailable("this service's engine cannot clone voices")
            voice = await prepare_voice(request.reference_clip)
            # Not the clip: only its id, so "forget my voice" finds the audio cached with it.
            await self.voices.note_attached(request.platform, request.user_id, voice.voice_id)
            return voice, VoiceSource.ATTACHED, None
        if voice_id is None:
            return None, VoiceSource.BUILT_IN, None
        if not can_clone:
            return None, VoiceSource.BUILT_IN, "voice cloning is off right now"
        found = await self.voices.lookup_clip(voice_id, request.platform, request.user_id)
        if found.clip is not None:
            return PreparedVoice(voice_id=voice_id, clip=found.clip), VoiceSource.SAVED, None
        if found.unavailable:
            # Storage blinked after the pointer was read: the voice is fine, keep the pointer.
            return None, VoiceSource.BUILT_IN, "your saved voice could not be loaded just now"
        # If storage fails now, the next request finds the dangling pointer and tries again.
        with contextlib.suppress(StorageUnavailable):
            await self.voices.clear_default(request.platform, request.user_id)
        return None, VoiceSource.BUILT_IN, "your saved voice had expired"

    async def save_voice(self, platform: str, user_id: str, clip: bytes) -> str:
        """Make ``clip`` the user's default voice; returns its id."""
        voice = await prepare_voice(clip)
        with storage_errors_as_say_errors():
            await self.voices.save(platform, user_id, voice.voice_id, voice.clip)
        return voice.voice_id

    async def use_built_in_voice(self, platform: str, user_id: str) -> None:
        with storage_errors_as_say_errors():
            await self.voices.clear_default(platform, user_id)

    async def forget_voice(self, platform: str, user_id: str) -> ForgetReport:
        """Delete the user's clips, their default pointer and all audio made with them."""
        with storage_errors_as_say_errors():
            return await self.voices.forget(platform, user_id)

    async def can_clone(self) -> bool:
        return (await self._engine_info()).can_clone_voice

    async def _engine_info(self) -> EngineInfo:
        """The service's engine identity; one remembered in Redis serves until the service
        answers, so a bot that starts while it is down (or cold) still finds cached audio."""
        first_time = self.tts.known_engine_info is None and self._remembered_engine is None
        if first_time and self.engines is not None:
            remembered = await self.engines.last_seen()
            if remembered is not None:
                self._remembered_engine = remembered
                self.tts.assume_engine_info(remembered)
        engine = await self.tts.engine_info()
        if engine != self._remembered_engine and self.engines is not None:
            self._remembered_engine = engine
            await self.engines.remember(engine)
        return engine
