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
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from bots import clips
from bots.chosen_voice import (
    ChosenVoice,
    PreparedVoice,
    VoiceSource,
    prepare_voice,
)
from bots.clips import ClipLimits, ClipSource
from bots.consent import CONSENT_WORDING_VERSION, PendingConsents, check_own_clip
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
from bots.requests import (
    Erased,
    SavedVoice,
    SayRequest,
    SayResult,
    VoiceStatus,
    parse_params,
)
from bots.synthesis import Synthesizer
from bots.tts_client import TTSClient
from bots.voice_choice import VoiceChooser
from storage.cache import AudioCache, CachedAudio
from storage.cache_keys import cache_key
from storage.clip_cipher import ClipCipher
from storage.consents import ConsentStore
from storage.engine_identity import EngineIdentityStore
from storage.metrics import StorageMetrics
from storage.ratelimit import RateLimiter
from storage.settings import StorageSettings
from storage.singleflight import error_rebuilder
from storage.usage import UsageRecorder
from storage.voices import VoiceStore
from tts_service.schema import (
    EngineInfo,
    TTSParams,
)

__all__ = [
    "Erased",
    "SavedVoice",
    "SayFlow",
    "SayRequest",
    "SayResult",
    "VoiceStatus",
    "parse_params",
]

log = logging.getLogger(__name__)
CANCELLED = "cancelled"  # the outcome (and usage error code) of a request cancelled mid-way


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
    consents: ConsentStore
    observer: FlowObserver = field(default_factory=NoObserver)
    clip_limits: ClipLimits = field(default_factory=ClipLimits)
    fallback: Fallback | None = None  # a stand-in voice when the GPU is away (opt-in)
    pending: PendingConsents = field(default_factory=PendingConsents)  # clips awaiting consent

    def __post_init__(self) -> None:
        self._synthesizer = Synthesizer(self.cache, self.observer)
        self._chooser = VoiceChooser(self.voices, self.consents, self.pending, self.clip_limits)

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
        cache_redis: Redis | None = None,
        clip_cipher: ClipCipher | None = None,
    ) -> SayFlow:
        """The flow over Redis, its storage sharing one metrics object: ``redis`` holds the
        durable data, ``cache_redis`` the audio cache (default: ``redis``); ``clip_cipher``
        seals saved clips (None: stored as they are)."""
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
                cache_redis or redis,
                settings,
                metrics,
                data_redis=redis,
                rebuild_error=rebuild,
                is_transient=is_transient,
            ),
            voices=VoiceStore(
                redis, settings, metrics, cache_redis=cache_redis, cipher=clip_cipher
            ),
            limiter=RateLimiter(redis, settings, metrics),
            usage=UsageRecorder(redis, settings, metrics),
            engine=EngineIdentity(
                tts.fetch_engine_info,
                EngineIdentityStore(redis, metrics),
                max_age_s=engine_info_max_age_s,
            ),
            consents=ConsentStore(redis, settings, metrics),
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
        return await self._observed(request, self._say(request, admitted or _nothing_to_do))

    async def _observed(self, request: SayRequest, work: Awaitable[SayResult]) -> SayResult:
        """``work``'s answer to ``request``, timed, counted and logged whatever ends it."""
        started = time.perf_counter()
        self.observer.request_started(request.platform)
        outcome = "bug"
        try:
            with storage_errors_as_say_errors():
                result = await work
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
            check_own_clip(request.clip, request.user_id)
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
        voice = await self._chooser.choose(request, engine, saved_voice_id)
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

    async def _say_consented(self, request: SayRequest, voice: PreparedVoice) -> SayResult:
        """A request whose clip waited for consent: its limit was spent when it first came."""
        params = parse_params(request)
        engine = await self.engine.current()
        if not engine.can_clone_voice:
            raise VoiceCloningUnavailable("this service's engine cannot clone voices")
        chosen = await self._chooser.attached(request, voice)
        return await self._cached_or_synthesized(request, params, engine, chosen)

    async def _cached_or_synthesized(
        self, request: SayRequest, params: TTSParams, engine: EngineInfo, voice: ChosenVoice
    ) -> SayResult:
        key = _key(params, voice, engine)
        entry = await self._cached(key, request, voice)
        if entry is not None:
            return self._answer(request, entry, True, 0.0, voice)
        if voice.source is VoiceSource.SAVED and voice.clip is None:
            voice = await self._chooser.with_saved_clip(request, voice)
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
        """Make the clip the user's default voice: whose it is, its metadata and the user's
        rate limit checked before anything is downloaded (uploads are the costly part), and
        their consent to the recording before anything is stored."""
        check_own_clip(clip, user_id)
        self.check_clip(clip)
        limit = await self.limiter.check(platform, user_id)
        if not limit.allowed:
            raise RateLimited(limit.retry_after_s)
        voice = await prepare_voice(await clips.download(clip, self.clip_limits))
        await self._chooser.consented(platform, user_id, voice, "save")
        return await self._store_voice(platform, user_id, voice)

    async def _store_voice(self, platform: str, user_id: str, voice: PreparedVoice) -> SavedVoice:
        with storage_errors_as_say_errors():
            await self.voices.save(platform, user_id, voice.voice_id, voice.clip)
        return SavedVoice(voice.voice_id, usable_now=await self.can_clone())

    async def answer_consent(
        self, platform: str, user_id: str, pending_id: str, accepted: bool
    ) -> SayResult | SavedVoice | None:
        """The sender's answer about a waiting clip: yes records the consent and does what the
        clip was sent for (the answer, or the saved voice); no drops the clip (None)."""
        pending = self.pending.take(pending_id, platform, user_id)
        if not accepted:
            return None
        with storage_errors_as_say_errors():
            await self.consents.record(
                platform, user_id, pending.voice.voice_id, CONSENT_WORDING_VERSION
            )
        if pending.request is None:
            return await self._store_voice(platform, user_id, pending.voice)
        request = pending.request
        return await self._observed(request, self._say_consented(request, pending.voice))

    async def use_built_in_voice(self, platform: str, user_id: str) -> None:
        with storage_errors_as_say_errors():
            await self.voices.clear_default(platform, user_id)

    async def forget_voice(self, platform: str, user_id: str) -> Erased:
        """Everything of the user's: their clips, default and all audio made with them, their
        consent records, clips waiting for consent, and their per-user usage counts."""
        await self.usage.flush()  # counts still buffered must not come back after the erase
        with storage_errors_as_say_errors():
            voices = await self.voices.forget(platform, user_id)
            consents = await self.consents.forget(platform, user_id)
            usage = await self.usage.forget_user(platform, user_id)
        waiting = self.pending.drop_user(platform, user_id)
        return Erased(voices, consents, usage, waiting)

    async def voice_status(self, platform: str, user_id: str) -> VoiceStatus:
        default, consents = await asyncio.gather(
            self.voices.default_voice(platform, user_id), self.consents.of_user(platform, user_id)
        )
        return VoiceStatus(default, consents)

    async def can_clone(self) -> bool:
        return (await self.engine.current()).can_clone_voice
