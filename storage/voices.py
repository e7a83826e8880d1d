"""Reference clips, content-addressed, with per-user ownership and a default voice.

A clip lives at ``voice:{<id>}:clip`` with an idle TTL that every use refreshes. The
same bytes saved by two users are stored once and owned by both (``voice:{<id>}:owners``);
``forget`` removes the user's ownership, and the clip with every cached answer made
with it (``voice:{<id>}:audio``, filled by ``AudioCache.put``) once nobody owns it
(how, atomically and across the two servers: ``storage.voice_release``).
A user keeps at most ``max_voices_per_user`` saved voices: saving one more lets go of the
oldest the same way (``user:…:saved_at`` orders them).
A clip sent for one request only is never stored, but its id is noted for the user
(``note_attached``) because the answers made with it are cached: ``forget`` deletes those
too. A forget leaves a short tombstone
(``voice:{<id>}:forgotten``) so a synthesis still running cannot re-cache its answer.
The voice id is the caller's fingerprint of the normalised audio; this store never
decodes audio.

Clips are sealed at rest when a ``ClipCipher`` is given (``storage.clip_cipher``); one
stored in the clear or under an older key is sealed again under the current key when used.
One that no configured key opens reads as unavailable (logged), never as expired: a wrong
``SAYBOT_DATA_KEY`` must not make callers drop the pointers to it.

Everything here is durable data on the data server (``redis``), except the cached answers
that ``forget`` deletes, which live on the cache server (``cache_redis``, default: the same).

Reads degrade (``None``/``False``) when Redis is unavailable — ``lookup_clip`` also says
whether it was unavailable, so a caller can tell a dead Redis from an expired clip;
``save``, ``clear_default`` and ``forget`` raise ``StorageUnavailable`` instead, because
a user who was told "done" must not find their voice still used (or still stored).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from storage import keys
from storage.client import RedisClient
from storage.clip_cipher import ClipCipher, ClipUnreadable, is_sealed
from storage.errors import VoiceTooLarge
from storage.metrics import StorageMetrics
from storage.settings import StorageSettings
from storage.voice_release import RELEASED, SHARED, VoiceRelease

log = logging.getLogger("storage")

_CANNOT_CHANGE = "voices cannot be changed right now; try again"


@dataclass(frozen=True)
class ClipLookup:
    """A clip read that tells "not there" (expired, unknown) from "could not ask Redis"."""

    clip: bytes | None
    unavailable: bool = False  # Redis failed or the breaker is open: the clip may well exist

    @property
    def expired(self) -> bool:
        """Redis answered and the clip is gone: only now may a pointer to it be dropped."""
        return self.clip is None and not self.unavailable


@dataclass
class ForgetReport:
    """What ``forget`` removed, for the reply to the user and the logs."""

    voices_deleted: list[str] = field(default_factory=list)
    voices_still_owned_by_others: list[str] = field(default_factory=list)
    cache_entries_deleted: int = 0
    default_cleared: bool = False
    # Voices the user only sent for requests (no clip was kept): their record is gone, and
    # the answers made with them unless someone who saved the same voice still owns it.
    attached_voices_forgotten: list[str] = field(default_factory=list)

    @property
    def anything_removed(self) -> bool:
        return bool(
            self.voices_deleted
            or self.voices_still_owned_by_others
            or self.default_cleared
            or self.attached_voices_forgotten
            or self.cache_entries_deleted
        )


def _owner(platform: str, user_id: str) -> str:
    keys.check_field("platform", platform)
    keys.check_field("user_id", user_id)
    return f"{platform}:{user_id}"


class VoiceStore:
    """Voices on the data server ``redis``; ``cache_redis`` is where the answers made with
    them are cached (default: ``redis``); ``cipher`` seals clips at rest (None: stored as
    they are)."""

    def __init__(
        self,
        redis: RedisClient,
        settings: StorageSettings,
        metrics: StorageMetrics | None = None,
        *,
        cache_redis: RedisClient | None = None,
        cipher: ClipCipher | None = None,
    ) -> None:
        self._redis = redis
        self._cache = cache_redis if cache_redis is not None else redis
        self._settings = settings
        self._cipher = cipher
        self.metrics = metrics if metrics is not None else StorageMetrics()
        self._release = VoiceRelease(redis, self._cache, settings)

    async def save(
        self,
        platform: str,
        user_id: str,
        voice_id: str,
        clip_bytes: bytes,
        make_default: bool = True,
    ) -> list[str]:
        """Store ``clip_bytes`` as ``voice_id``, owned by the user (and their default).

        Returns the voices let go of to stay within ``max_voices_per_user``: the user's
        oldest saves (never this one); each clip is deleted, with its cached answers, unless
        someone else saved it too.
        """
        owner = _owner(platform, user_id)
        keys.check_voice_id(voice_id)
        if len(clip_bytes) > self._settings.voice_max_bytes:
            raise VoiceTooLarge(len(clip_bytes), self._settings.voice_max_bytes)
        stored = clip_bytes if self._cipher is None else self._cipher.seal(voice_id, clip_bytes)
        ttl_s = self._settings.voice_idle_ttl_s
        saved_at = keys.user_voice_saved_at(platform, user_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(keys.voice_clip(voice_id), stored, ex=ttl_s)
        pipe.sadd(keys.voice_owners(voice_id), owner)
        pipe.expire(keys.voice_owners(voice_id), ttl_s)
        pipe.sadd(keys.user_voices(platform, user_id), voice_id)
        pipe.expire(keys.user_voices(platform, user_id), ttl_s)
        pipe.zadd(saved_at, {voice_id: time.time()})
        pipe.expire(saved_at, ttl_s)
        if make_default:
            pipe.set(keys.user_default(platform, user_id), voice_id, ex=ttl_s)
        await self.metrics.required("voice save", pipe.execute, unavailable=_CANNOT_CHANGE)
        # The save is done and was promised; trimming is housekeeping that the next save
        # finishes if Redis blinks now.
        dropped: list[str] = await self.metrics.guarded(
            "voice trim", lambda: self._drop_oldest(platform, user_id, keep=voice_id), when_down=[]
        )
        if dropped:
            log.info("%s saved a voice over the limit; let go of %d older", owner, len(dropped))
        return dropped

    async def _drop_oldest(self, platform: str, user_id: str, keep: str) -> list[str]:
        """Let go of the user's oldest saved voices beyond ``max_voices_per_user``."""
        voices_key = keys.user_voices(platform, user_id)
        saved_at_key = keys.user_voice_saved_at(platform, user_id)
        default_key = keys.user_default(platform, user_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.smembers(voices_key)
        pipe.zrange(saved_at_key, 0, -1, withscores=True)
        pipe.get(default_key)
        members, ages, default = await pipe.execute()
        saved = {keys.as_text(member) for member in members}
        excess = len(saved) - self._settings.max_voices_per_user
        if excess <= 0:
            return []
        saved_at = {keys.as_text(member): score for member, score in ages}
        # A voice saved before save times were kept counts as the oldest.
        by_age = sorted(saved - {keep}, key=lambda v: (saved_at.get(v, 0.0), v))
        dropped = by_age[:excess]
        # Ownership (and the clip) first: a pointer must not vanish while the clip stays.
        await self._release(_owner(platform, user_id), dropped, sent_only=set())
        pipe = self._redis.pipeline(transaction=False)
        pipe.srem(voices_key, *dropped)
        pipe.zrem(saved_at_key, *dropped)
        if default is not None and keys.as_text(default) in dropped:
            pipe.delete(default_key)
        await pipe.execute()
        return dropped

    async def lookup_clip(
        self, voice_id: str, platform: str | None = None, user_id: str | None = None
    ) -> ClipLookup:
        """The clip, restarting its idle TTL (and that of the user's list of saved voices when
        the user is given); never raises for Redis, but says when Redis could not answer
        (or the clip cannot be opened with the configured keys)."""
        pipe = self._used(voice_id, platform, user_id, read_clip=True)
        result = await self.metrics.guarded("voice get", pipe.execute, when_down=None)
        if result is None:
            return ClipLookup(clip=None, unavailable=True)
        stored: bytes | None = result[0]
        if stored is None:
            return ClipLookup(clip=None)
        return await self._opened(voice_id, stored)

    async def _opened(self, voice_id: str, stored: bytes) -> ClipLookup:
        """The stored clip opened; sealed again under the current key when it was not."""
        if self._cipher is None:
            if not is_sealed(stored):
                return ClipLookup(clip=stored)
            log.warning(
                "the clip of voice %s is encrypted and SAYBOT_DATA_KEY is not set; "
                "treating it as unavailable",
                voice_id,
            )
            return ClipLookup(clip=None, unavailable=True)
        if not is_sealed(stored):
            clip, current = stored, False  # stored before encryption was turned on
        else:
            try:
                clip, current = self._cipher.open(voice_id, stored)
            except ClipUnreadable as exc:
                log.warning("the clip of voice %s cannot be decrypted (%s)", voice_id, exc)
                return ClipLookup(clip=None, unavailable=True)
        if not current:
            resealed = self._cipher.seal(voice_id, clip)
            key = keys.voice_clip(voice_id)
            # XX: a clip forgotten meanwhile stays forgotten; KEEPTTL: the TTL just restarted.
            await self.metrics.guarded(
                "voice reseal",
                lambda: self._redis.set(key, resealed, xx=True, keepttl=True),
                when_down=None,
            )
        return ClipLookup(clip=clip)

    async def touch(self, voice_id: str, platform: str, user_id: str) -> None:
        """A use of the voice that needs no clip (a cache hit): its idle TTL restarts all the
        same, without moving its megabytes. Degrades to nothing when Redis is down."""
        pipe = self._used(voice_id, platform, user_id, read_clip=False)
        await self.metrics.guarded("voice touch", pipe.execute, when_down=None)

    def _used(
        self, voice_id: str, platform: str | None, user_id: str | None, *, read_clip: bool
    ) -> Pipeline | ClusterPipeline:
        """A pipeline restarting the idle TTLs of a voice in use (reading its clip first)."""
        keys.check_voice_id(voice_id)
        ttl_s = self._settings.voice_idle_ttl_s
        pipe = self._redis.pipeline(transaction=False)
        if read_clip:
            pipe.getex(keys.voice_clip(voice_id), ex=ttl_s)
        else:
            pipe.expire(keys.voice_clip(voice_id), ttl_s)
        pipe.expire(keys.voice_owners(voice_id), ttl_s)
        if platform is not None and user_id is not None:
            _owner(platform, user_id)
            # The list that lets the user forget the clip lives as long as the clip.
            pipe.expire(keys.user_voices(platform, user_id), ttl_s)
            pipe.expire(keys.user_voice_saved_at(platform, user_id), ttl_s)
        return pipe

    async def note_attached(self, platform: str, user_id: str, voice_id: str) -> bool:
        """Remember, for ``forget``, that the user sent this voice for a request without
        saving it; the clip itself is not kept. False if Redis is down."""
        _owner(platform, user_id)
        keys.check_voice_id(voice_id)
        attached = keys.user_attached(platform, user_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd(attached, voice_id)
        pipe.expire(attached, self._settings.voice_idle_ttl_s)
        noted = await self.metrics.guarded("voice note attached", pipe.execute, when_down=None)
        return noted is not None

    async def default_voice(self, platform: str, user_id: str) -> str | None:
        """The user's default voice id (its clip may have expired: see ``lookup_clip``)."""
        key = keys.user_default(platform, user_id)
        _owner(platform, user_id)
        raw = await self.metrics.guarded(
            "voice default",
            lambda: self._redis.getex(key, ex=self._settings.voice_idle_ttl_s),
            when_down=None,
        )
        return None if raw is None else keys.as_text(raw)

    async def clear_default(self, platform: str, user_id: str) -> bool:
        """Back to the built-in voice; True if there was a default. Keeps the saved clips."""
        _owner(platform, user_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(keys.user_default(platform, user_id))
        (deleted,) = await self.metrics.required(
            "voice clear default", pipe.execute, unavailable=_CANNOT_CHANGE
        )
        return bool(deleted)

    async def forget(self, platform: str, user_id: str) -> ForgetReport:
        """Remove the user's clips (those nobody else owns), their default, the record of
        voices they sent for one request, and the cached answers made with those voices."""
        owner = _owner(platform, user_id)
        report = await self.metrics.required(
            "voice forget",
            lambda: self._forget(platform, user_id, owner),
            unavailable="voices cannot be forgotten right now; try again",
        )
        log.info(
            "forgot voices of %s: deleted=%d shared=%d attached=%d answers=%d",
            owner,
            len(report.voices_deleted),
            len(report.voices_still_owned_by_others),
            len(report.attached_voices_forgotten),
            report.cache_entries_deleted,
        )
        return report

    async def _forget(self, platform: str, user_id: str, owner: str) -> ForgetReport:
        voices_key = keys.user_voices(platform, user_id)
        default_key = keys.user_default(platform, user_id)
        attached_key = keys.user_attached(platform, user_id)
        report = ForgetReport()
        pipe = self._redis.pipeline(transaction=False)
        pipe.smembers(voices_key)
        pipe.get(default_key)
        pipe.smembers(attached_key)
        members, default, attached_members = await pipe.execute()
        voice_ids = {keys.as_text(member) for member in members}
        if default is not None:
            voice_ids.add(keys.as_text(default))
        attached_only = {keys.as_text(member) for member in attached_members} - voice_ids
        outcomes, report.cache_entries_deleted = await self._release(
            owner, voice_ids | attached_only, sent_only=attached_only
        )
        for voice_id, outcome in outcomes.items():
            if voice_id in attached_only:
                report.attached_voices_forgotten.append(voice_id)
            elif outcome == RELEASED:
                report.voices_deleted.append(voice_id)
            elif outcome == SHARED:
                report.voices_still_owned_by_others.append(voice_id)
        # The user's own keys last: a forget interrupted before this point finds every voice
        # again when the user tries again.
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(default_key)
        pipe.delete(voices_key)
        pipe.delete(attached_key)
        pipe.delete(keys.user_voice_saved_at(platform, user_id))
        deleted_default, *_ = await pipe.execute()
        report.default_cleared = bool(deleted_default)
        return report
