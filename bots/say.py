"""The one place the ``/say`` business flow lives; no Telegram or Discord types in here.

A request runs as a pipeline, one concern per step:

    admission (``bots.admission``: blocked user, the community's settings, text and options,
    may a clip be cloned here, the clip's declared metadata, rate limit; nothing fetched yet)
    → engine identity → voice (can it clone? then download and prepare the clip)
    → cache key → cache get → on a miss: quotas (``bots.quotas``) → the saved clip
    → single-flight → TTS (its GPU seconds counted) → cache put
    → usage (counted off the answer's path)

Every outcome is either a ``SayResult`` or a ``SayError`` that the platform adapter turns
into one sentence.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bots import clips
from bots.admission import Admitted, Gate
from bots.chosen_voice import (
    ChosenVoice,
    PreparedVoice,
    VoiceSource,
    prepare_voice,
)
from bots.clips import ClipLimits, ClipSource
from bots.community import Community, OperatorRules
from bots.consent import CONSENT_WORDING_VERSION, PendingConsents, check_own_clip
from bots.draining import DRAIN_TIMEOUT_S
from bots.engine_identity import EngineIdentity
from bots.errors import (
    ConsentNeeded,
    RateLimited,
    SayError,
    VoiceCloningUnavailable,
    storage_errors_as_say_errors,
)
from bots.fallback import Fallback, StandIn
from bots.flow_observer import FlowObserver, NoObserver
from bots.flow_storage import flow_storage
from bots.likely_answer import NOTHING_LIKELY, LikelyAnswer
from bots.quotas import Quotas
from bots.requests import (
    Erased,
    SavedVoice,
    SayRequest,
    SayResult,
    VoiceStatus,
    options_note,
)
from bots.synthesis import Synthesizer
from bots.tts_client import TTSClient
from bots.voice_choice import VoiceChooser
from storage.cache import AudioCache, CachedAudio, Lookup
from storage.client import RedisClient
from storage.clip_cipher import ClipCipher
from storage.consents import ConsentStore
from storage.metrics import StorageMetrics
from storage.ratelimit import RateLimiter
from storage.sent_files import SentFiles
from storage.settings import StorageSettings
from storage.usage import UsageRecorder
from storage.voices import VoiceStore
from tts_service.schema import (
    EngineInfo,
)

__all__ = [
    "Erased",
    "SavedVoice",
    "SayFlow",
    "SayRequest",
    "SayResult",
    "VoiceStatus",
]

log = logging.getLogger(__name__)
CANCELLED = "cancelled"  # the outcome (and usage error code) of a request cancelled mid-way


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
    community: Community  # the operator's and each community's rules
    quotas: Quotas  # GPU-time limits, and the GPU seconds spent
    sent_files: SentFiles  # answers a platform holds already (Telegram's file_id)
    observer: FlowObserver = field(default_factory=NoObserver)
    clip_limits: ClipLimits = field(default_factory=ClipLimits)
    fallback: Fallback | None = None  # a stand-in voice when the GPU is away (opt-in)
    pending: PendingConsents = field(default_factory=PendingConsents)  # clips awaiting consent

    def __post_init__(self) -> None:
        self._synthesizer = Synthesizer(self.cache, self.observer)
        self._chooser = VoiceChooser(self.voices, self.consents, self.pending, self.clip_limits)
        self._gate = Gate(self.community, self.limiter, self.voices, self.clip_limits)

    @classmethod
    def over_redis(
        cls,
        redis: RedisClient,
        settings: StorageSettings,
        tts: TTSClient,
        *,
        metrics: StorageMetrics | None = None,
        observer: FlowObserver | None = None,
        clip_limits: ClipLimits | None = None,
        engine_info_max_age_s: float = 300.0,
        fallback: Fallback | None = None,
        cache_redis: RedisClient | None = None,
        clip_cipher: ClipCipher | None = None,
        operator: OperatorRules | None = None,
    ) -> SayFlow:
        """The flow over Redis, its storage sharing one metrics object: ``redis`` holds the
        durable data, ``cache_redis`` the audio cache (default: ``redis``); ``clip_cipher``
        seals saved clips (None: stored as they are); ``operator``: the operator's rules
        and GPU-time limits (default: none)."""
        parts = flow_storage(
            redis,
            settings,
            tts,
            metrics=metrics or StorageMetrics(),
            operator=operator or OperatorRules(),
            engine_info_max_age_s=engine_info_max_age_s,
            cache_redis=cache_redis,
            clip_cipher=clip_cipher,
        )
        return cls(
            **parts,
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
        without real work has passed (the operator's and the community's rules, text,
        options, clip metadata, rate limit, cloning available, quota) and real work begins
        (a clip to download, a synthesis): an adapter may then show progress (Discord's
        "thinking…"). A cache hit never calls it: its answer is as quick as a progress note."""
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
            # A question about consent is not a failure: the answer, when it comes, counts.
            if outcome not in ("hit", "miss", ConsentNeeded.code):
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

    def check_clip(self, clip: ClipSource) -> None:
        """A clip refused by its declared size, type and duration, before any download."""
        clips.check_metadata(clip, self.clip_limits)

    async def _say(self, request: SayRequest, admitted: Callable[[], None]) -> SayResult:
        likely = LikelyAnswer.start(request, self.engine.known, self.community, self.cache)
        try:
            passed = await self._gate.admit(request)  # beside the likely answer's lookup
            spoken = self._spoken(request, passed, admitted, likely)
            # A clip is never faked, nor a language: the stand-in speaks its own voice in
            # English.
            if self.fallback is None or request.clip is not None or passed.params.language:
                return await spoken
            answer = await self.fallback.within_budget(spoken)
            if not isinstance(answer, StandIn):
                return answer
        finally:
            likely.drop()
        admitted()
        had_saved = passed.saved_voice_id is not None
        voice, made = await self.fallback.stand_in(
            passed.params, request, had_saved, self._synthesizer, answer
        )
        return self._answer(request, made.entry, made.from_cache, made.synthesis_s, voice)

    async def _spoken(
        self,
        request: SayRequest,
        passed: Admitted,
        admitted: Callable[[], None],
        likely: LikelyAnswer,
    ) -> SayResult:
        """The answer of the TTS service (or its cache)."""
        engine = await self.engine.current()
        if request.clip is not None and not engine.can_clone_voice:
            raise VoiceCloningUnavailable("this service's engine cannot clone voices")
        note = options_note(request, passed.params, engine)
        if request.clip is not None:
            admitted()  # the clip's download and preparation come next
        voice = await self._chooser.choose(
            request, engine, passed.saved_voice_id, passed.voice_note
        )
        return await self._cached_or_synthesized(
            request, passed, engine, voice, admitted, note, likely
        )

    async def _say_consented(self, request: SayRequest, voice: PreparedVoice) -> SayResult:
        """A request whose clip waited for consent: its limit was spent when it first came."""
        passed = await self._gate.readmit(request)
        engine = await self.engine.current()
        if not engine.can_clone_voice:
            raise VoiceCloningUnavailable("this service's engine cannot clone voices")
        note = options_note(request, passed.params, engine)
        chosen = await self._chooser.attached(request, voice)
        return await self._cached_or_synthesized(
            request, passed, engine, chosen, _nothing_to_do, note
        )

    async def _cached_or_synthesized(
        self,
        request: SayRequest,
        passed: Admitted,
        engine: EngineInfo,
        voice: ChosenVoice,
        admitted: Callable[[], None],
        engine_note: str | None = None,
        likely: LikelyAnswer = NOTHING_LIKELY,
    ) -> SayResult:
        """``engine_note``: what to say of options that make no difference on this engine;
        ``likely``: a lookup started before admission, taken when it was for this key."""
        key = likely.key_for(passed.params, voice.voice_id, engine)
        entry, held_as = await self._cached(key, request, voice, likely)
        if entry is not None:
            return self._answer(
                request, entry, True, 0.0, voice, engine_note, audio_key=key, held_as=held_as
            )
        await self.quotas.check(request, passed.chat, engine.name)  # past a limit: cache only
        admitted()  # a synthesis comes next
        if voice.source is VoiceSource.SAVED and voice.clip is None:
            voice = await self._chooser.with_saved_clip(request, voice)
            if voice.voice_id is None:  # fell back to the built-in voice: another key
                return await self._cached_or_synthesized(
                    request, passed, engine, voice, admitted, engine_note, likely
                )
        spent = functools.partial(self.quotas.count, request)
        made = await self._synthesizer.make(key, passed.params, voice, self.tts, self.engine, spent)
        return self._answer(
            request,
            made.entry,
            made.from_cache,
            made.synthesis_s,
            voice,
            engine_note,
            audio_key=key,
        )

    async def _cached(
        self, key: str, request: SayRequest, voice: ChosenVoice, likely: LikelyAnswer
    ) -> Lookup:
        """The cached answer and the sender's id for it; a saved voice's use restarts its
        idle TTL (without its clip)."""
        if voice.source is not VoiceSource.SAVED or voice.voice_id is None:
            prefetched = await likely.take(key)
            if prefetched is None:
                return await self.cache.lookup(key, request.sender)
            self.cache.count(prefetched)
            return prefetched
        found, _ = await asyncio.gather(
            self.cache.lookup(key, request.sender),
            self.voices.touch(voice.voice_id, request.platform, request.user_id),
        )
        return found

    def _answer(
        self,
        request: SayRequest,
        entry: CachedAudio,
        from_cache: bool,
        synthesis_s: float,
        voice: ChosenVoice,
        engine_note: str | None = None,
        *,
        audio_key: str | None = None,
        held_as: str | None = None,
    ) -> SayResult:
        """The result; its usage is counted in the background (off the answer's path)."""
        self.usage.record_soon(
            request.platform,
            request.user_id,
            "hit" if from_cache else "miss",
            audio_seconds=entry.duration_s,
            synthesis_seconds=synthesis_s,
            cloned=voice.source in (VoiceSource.ATTACHED, VoiceSource.SAVED),
        )
        return SayResult(
            audio=entry.audio,
            format=entry.format,
            duration_s=entry.duration_s,
            voice=voice.source,
            from_cache=from_cache,
            engine=entry.engine,
            note="; ".join(note for note in (voice.note, engine_note) if note) or None,
            audio_key=audio_key,
            held_as=held_as,
        )

    # --- voice commands ----------------------------------------------------------------------

    async def save_voice(
        self, platform: str, user_id: str, clip: ClipSource, server_id: str | None = None
    ) -> SavedVoice:
        """Make the clip the user's default voice: may voices be kept (bot, the community of
        ``server_id``), whose clip it is, its metadata and the user's rate limit checked
        before anything is downloaded (uploads are the costly part), and their consent to
        the recording before anything is stored."""
        await self._gate.may_save_voice(platform, user_id, server_id)
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

    def check_consent_answer(self, platform: str, user_id: str, pending_id: str) -> None:
        """Raise what ``answer_consent`` would refuse (lapsed, someone else's) without
        answering: an adapter can then acknowledge the press at once."""
        self.pending.check(pending_id, platform, user_id)

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
        self.usage.event_soon(platform, "consents")
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
        self.usage.event_soon(platform, "forgets")  # in the day's totals only: never per user
        return Erased(voices, consents, usage, waiting)

    async def voice_status(self, platform: str, user_id: str) -> VoiceStatus:
        default, consents = await asyncio.gather(
            self.voices.default_voice(platform, user_id), self.consents.of_user(platform, user_id)
        )
        return VoiceStatus(default, consents)

    async def can_clone(self) -> bool:
        return (await self.engine.current()).can_clone_voice
