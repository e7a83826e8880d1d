"""Reference clips, content-addressed, with per-user ownership and a default voice.

A clip lives at ``voice:{<id>}:clip`` with an idle TTL that every use refreshes. The
same bytes saved by two users are stored once and owned by both (``voice:{<id>}:owners``);
``forget`` removes the user's ownership, and the clip with every cached answer made
with it (``voice:{<id>}:audio``, filled by ``AudioCache.put``) once nobody owns it.
A clip sent for one request only is never stored, but its id is noted for the user
(``note_attached``) because the answers made with it are cached: ``forget`` deletes those
too, and ``list_for_user`` shows them. A forget leaves a short tombstone
(``voice:{<id>}:forgotten``) so a synthesis still running cannot re-cache its answer.
The voice id is the caller's fingerprint of the normalised audio; this store never
decodes audio.

Reads degrade (``None``/empty) when Redis is unavailable — ``lookup_clip`` also says
whether it was unavailable, so a caller can tell a dead Redis from an expired clip;
``save``, ``set_default``, ``clear_default`` and ``forget`` raise ``StorageUnavailable``
instead, because a user who was told "done" must not find their voice still used (or
still stored).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from storage import keys
from storage.errors import StorageUnavailable, VoiceTooLarge
from storage.metrics import REDIS_ERRORS, StorageMetrics
from storage.settings import StorageSettings

log = logging.getLogger("storage")

# Atomic per voice (all four keys share the {voice_id} slot): drop the user's ownership,
# and when no owner is left, delete the clip, the owners and the index of cached answers,
# put up the tombstone, and return the answers' keys for the caller to delete (they live in
# other slots). ARGV[2] = "1": the user only sent this voice for requests (never saved it),
# which is reason enough to forget the answers nobody who saved the voice still vouches for.
# Returns {-1} if the user neither owned nor sent it, {0} if others still own it, else
# {1, key…}.
_RELEASE_VOICE_LUA = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 and ARGV[2] ~= '1' then
  return {-1}
end
if redis.call('SCARD', KEYS[1]) > 0 then
  return {0}
end
local answers = redis.call('SMEMBERS', KEYS[3])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('SET', KEYS[4], '1', 'EX', ARGV[3])
local result = {1}
for _, key in ipairs(answers) do
  result[#result + 1] = key
end
return result
"""


@dataclass(frozen=True)
class ClipLookup:
    """A clip read that tells "not there" (expired, unknown) from "could not ask Redis"."""

    clip: bytes | None
    unavailable: bool = False  # Redis failed or the breaker is open: the clip may well exist

    @property
    def expired(self) -> bool:
        """Redis answered and the clip is gone: only now may a pointer to it be dropped."""
        return self.clip is None and not self.unavailable


@dataclass(frozen=True)
class VoiceInfo:
    voice_id: str
    size_bytes: int  # 0 for a voice that was only sent for requests: no clip is kept
    is_default: bool
    expires_in_s: int  # unless used again: each use restarts the idle TTL
    saved: bool = True  # False: sent for requests only; cached answers made with it may exist


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
    def __init__(
        self, redis: Redis, settings: StorageSettings, metrics: StorageMetrics | None = None
    ) -> None:
        self._redis = redis
        self._settings = settings
        self.metrics = metrics if metrics is not None else StorageMetrics()
        self._release_voice = redis.register_script(_RELEASE_VOICE_LUA)

    async def save(
        self,
        platform: str,
        user_id: str,
        voice_id: str,
        clip_bytes: bytes,
        make_default: bool = True,
    ) -> None:
        """Store ``clip_bytes`` as ``voice_id``, owned by the user (and their default)."""
        owner = _owner(platform, user_id)
        keys.check_voice_id(voice_id)
        if len(clip_bytes) > self._settings.voice_max_bytes:
            raise VoiceTooLarge(len(clip_bytes), self._settings.voice_max_bytes)
        ttl_s = self._settings.voice_idle_ttl_s
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(keys.voice_clip(voice_id), clip_bytes, ex=ttl_s)
        pipe.sadd(keys.voice_owners(voice_id), owner)
        pipe.expire(keys.voice_owners(voice_id), ttl_s)
        pipe.sadd(keys.user_voices(platform, user_id), voice_id)
        pipe.expire(keys.user_voices(platform, user_id), ttl_s)
        if make_default:
            pipe.set(keys.user_default(platform, user_id), voice_id, ex=ttl_s)
        await self._write(pipe, "voice save")

    async def get_clip(self, voice_id: str) -> bytes | None:
        """The clip, restarting its idle TTL; None if expired, unknown or Redis is down."""
        return (await self.lookup_clip(voice_id)).clip

    async def lookup_clip(
        self, voice_id: str, platform: str | None = None, user_id: str | None = None
    ) -> ClipLookup:
        """The clip, restarting its idle TTL (and that of the user's list of saved voices when
        the user is given); never raises for Redis, but says when Redis could not answer."""
        keys.check_voice_id(voice_id)
        ttl_s = self._settings.voice_idle_ttl_s
        pipe = self._redis.pipeline(transaction=False)
        pipe.getex(keys.voice_clip(voice_id), ex=ttl_s)
        pipe.expire(keys.voice_owners(voice_id), ttl_s)
        if platform is not None and user_id is not None:
            _owner(platform, user_id)
            # The list that lets the user see and forget the clip lives as long as the clip.
            pipe.expire(keys.user_voices(platform, user_id), ttl_s)
        result = await self._read(pipe, "voice get")
        if result is None:
            return ClipLookup(clip=None, unavailable=True)
        return ClipLookup(clip=result[0])

    async def note_attached(self, platform: str, user_id: str, voice_id: str) -> bool:
        """Remember, for ``forget`` and ``list_for_user``, that the user sent this voice for a
        request without saving it; the clip itself is not kept. False if Redis is down."""
        _owner(platform, user_id)
        keys.check_voice_id(voice_id)
        attached = keys.user_attached(platform, user_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd(attached, voice_id)
        pipe.expire(attached, self._settings.voice_idle_ttl_s)
        return await self._read(pipe, "voice note attached") is not None

    async def default_voice(self, platform: str, user_id: str) -> str | None:
        """The user's default voice id (its clip may have expired: see ``get_clip``)."""
        key = keys.user_default(platform, user_id)
        _owner(platform, user_id)
        if not self.metrics.redis_allowed():
            return None
        try:
            raw = await self._redis.getex(key, ex=self._settings.voice_idle_ttl_s)
        except REDIS_ERRORS as exc:
            self.metrics.redis_failed("voice default", exc)
            return None
        self.metrics.redis_succeeded()
        return None if raw is None else keys.as_text(raw)

    async def set_default(self, platform: str, user_id: str, voice_id: str) -> bool:
        """Make one of the user's own saved voices their default; False if it is not theirs."""
        owner = _owner(platform, user_id)
        keys.check_voice_id(voice_id)
        self._check_writable()
        try:
            owns = await self._redis.sismember(keys.voice_owners(voice_id), owner)
            if owns:
                await self._redis.set(
                    keys.user_default(platform, user_id),
                    voice_id,
                    ex=self._settings.voice_idle_ttl_s,
                )
        except REDIS_ERRORS as exc:
            self.metrics.redis_failed("voice set default", exc)
            raise StorageUnavailable("voices cannot be changed right now") from exc
        self.metrics.redis_succeeded()
        return bool(owns)

    async def clear_default(self, platform: str, user_id: str) -> bool:
        """Back to the built-in voice; True if there was a default. Keeps the saved clips."""
        _owner(platform, user_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(keys.user_default(platform, user_id))
        (deleted,) = await self._write(pipe, "voice clear default")
        return bool(deleted)

    async def list_for_user(self, platform: str, user_id: str) -> list[VoiceInfo]:
        """Every clip stored for the user, still alive, then the voices they only sent for
        requests (``saved=False``: no clip, but answers made with them may be cached);
        empty if Redis is down."""
        _owner(platform, user_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.smembers(keys.user_voices(platform, user_id))
        pipe.get(keys.user_default(platform, user_id))
        pipe.smembers(keys.user_attached(platform, user_id))
        pipe.ttl(keys.user_attached(platform, user_id))
        first = await self._read(pipe, "voice list")
        if first is None:
            return []
        members, default, attached_members, attached_ttl = first
        voice_ids = sorted(keys.as_text(member) for member in members)
        default_id = None if default is None else keys.as_text(default)
        if default_id is not None and default_id not in voice_ids:
            voice_ids.append(default_id)
        pipe = self._redis.pipeline(transaction=False)
        for voice_id in voice_ids:
            pipe.strlen(keys.voice_clip(voice_id))
            pipe.ttl(keys.voice_clip(voice_id))
        sizes = await self._read(pipe, "voice list")
        if sizes is None:
            return []
        saved = [
            VoiceInfo(voice_id, size, voice_id == default_id, ttl)
            for voice_id, size, ttl in zip(voice_ids, sizes[::2], sizes[1::2], strict=True)
            if size > 0
        ]
        shown = {info.voice_id for info in saved}
        attached = [
            VoiceInfo(voice_id, 0, False, attached_ttl, saved=False)
            for voice_id in sorted(keys.as_text(member) for member in attached_members)
            if voice_id not in shown
        ]
        return saved + attached

    async def forget(self, platform: str, user_id: str) -> ForgetReport:
        """Remove the user's clips (those nobody else owns), their default, the record of
        voices they sent for one request, and the cached answers made with those voices."""
        owner = _owner(platform, user_id)
        voices_key = keys.user_voices(platform, user_id)
        default_key = keys.user_default(platform, user_id)
        attached_key = keys.user_attached(platform, user_id)
        report = ForgetReport()
        self._check_writable()
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.smembers(voices_key)
            pipe.get(default_key)
            pipe.smembers(attached_key)
            members, default, attached_members = await pipe.execute()
            voice_ids = {keys.as_text(member) for member in members}
            if default is not None:
                voice_ids.add(keys.as_text(default))
            attached_only = {keys.as_text(member) for member in attached_members} - voice_ids
            answers: list[bytes] = []
            for voice_id in sorted(voice_ids | attached_only):
                was_attached = voice_id in attached_only
                result = await self._release_voice(
                    keys=[
                        keys.voice_owners(voice_id),
                        keys.voice_clip(voice_id),
                        keys.voice_audio(voice_id),
                        keys.voice_forgotten(voice_id),
                    ],
                    args=[owner, "1" if was_attached else "0", self._forgotten_ttl_s],
                )
                if was_attached:
                    report.attached_voices_forgotten.append(voice_id)
                    answers.extend(result[1:])
                elif result[0] == 1:
                    report.voices_deleted.append(voice_id)
                    answers.extend(result[1:])
                elif result[0] == 0:
                    report.voices_still_owned_by_others.append(voice_id)
            pipe = self._redis.pipeline(transaction=False)
            pipe.delete(default_key)
            pipe.delete(voices_key)
            pipe.delete(attached_key)
            for answer in answers:  # one key per command: answers live in many cluster slots
                pipe.delete(answer)
            deleted_default, _, _, *deleted_answers = await pipe.execute()
        except REDIS_ERRORS as exc:
            self.metrics.redis_failed("voice forget", exc)
            raise StorageUnavailable("voices cannot be forgotten right now; try again") from exc
        self.metrics.redis_succeeded()
        report.default_cleared = bool(deleted_default)
        report.cache_entries_deleted = sum(deleted_answers)
        log.info(
            "forgot voices of %s: deleted=%d shared=%d attached=%d answers=%d",
            owner,
            len(report.voices_deleted),
            len(report.voices_still_owned_by_others),
            len(report.attached_voices_forgotten),
            report.cache_entries_deleted,
        )
        return report

    @property
    def _forgotten_ttl_s(self) -> int:
        """Outlives any synthesis a caller still waits for (see ``keys.VOICE_FORGOTTEN_TTL_S``)."""
        longest_wait_s = math.ceil(self._settings.singleflight_wait_timeout_s)
        return max(keys.VOICE_FORGOTTEN_TTL_S, longest_wait_s + 60)

    def _check_writable(self) -> None:
        if not self.metrics.redis_allowed():
            raise StorageUnavailable("voices cannot be changed right now; try again")

    async def _read(self, pipe: Any, operation: str) -> list[Any] | None:
        if not self.metrics.redis_allowed():
            return None
        try:
            result: list[Any] = await pipe.execute()
        except REDIS_ERRORS as exc:
            self.metrics.redis_failed(operation, exc)
            return None
        self.metrics.redis_succeeded()
        return result

    async def _write(self, pipe: Any, operation: str) -> list[Any]:
        self._check_writable()
        try:
            result: list[Any] = await pipe.execute()
        except REDIS_ERRORS as exc:
            self.metrics.redis_failed(operation, exc)
            raise StorageUnavailable("voices cannot be changed right now; try again") from exc
        self.metrics.redis_succeeded()
        return result
