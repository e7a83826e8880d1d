"""Reference clips, content-addressed, with per-user ownership and a default voice.

A clip lives at ``voice:{<id>}:clip`` with an idle TTL that every use refreshes. The
same bytes saved by two users are stored once and owned by both (``voice:{<id>}:owners``);
``forget`` removes the user's ownership, and the clip with every cached answer made
with it (``voice:{<id>}:audio``, filled by ``AudioCache.put``) once nobody owns it.
A clip sent for one request only is never stored, but its id is noted for the user
(``note_attached``) because the answers made with it are cached: ``forget`` deletes those
too. A forget leaves a short tombstone
(``voice:{<id>}:forgotten``) so a synthesis still running cannot re-cache its answer.
The voice id is the caller's fingerprint of the normalised audio; this store never
decodes audio.

Reads degrade (``None``/``False``) when Redis is unavailable — ``lookup_clip`` also says
whether it was unavailable, so a caller can tell a dead Redis from an expired clip;
``save``, ``clear_default`` and ``forget`` raise ``StorageUnavailable`` instead, because
a user who was told "done" must not find their voice still used (or still stored).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from storage import keys
from storage.errors import VoiceTooLarge
from storage.metrics import StorageMetrics
from storage.settings import StorageSettings

log = logging.getLogger("storage")

_CANNOT_CHANGE = "voices cannot be changed right now; try again"

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
        await self.metrics.required("voice save", pipe.execute, unavailable=_CANNOT_CHANGE)

    async def lookup_clip(
        self, voice_id: str, platform: str | None = None, user_id: str | None = None
    ) -> ClipLookup:
        """The clip, restarting its idle TTL (and that of the user's list of saved voices when
        the user is given); never raises for Redis, but says when Redis could not answer."""
        pipe = self._used(voice_id, platform, user_id, read_clip=True)
        result = await self.metrics.guarded("voice get", pipe.execute, when_down=None)
        if result is None:
            return ClipLookup(clip=None, unavailable=True)
        return ClipLookup(clip=result[0])

    async def touch(self, voice_id: str, platform: str, user_id: str) -> None:
        """A use of the voice that needs no clip (a cache hit): its idle TTL restarts all the
        same, without moving its megabytes. Degrades to nothing when Redis is down."""
        pipe = self._used(voice_id, platform, user_id, read_clip=False)
        await self.metrics.guarded("voice touch", pipe.execute, when_down=None)

    def _used(
        self, voice_id: str, platform: str | None, user_id: str | None, *, read_clip: bool
    ) -> Pipeline:
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
        report.default_cleared = bool(deleted_default)
        report.cache_entries_deleted = sum(deleted_answers)
        return report

    @property
    def _forgotten_ttl_s(self) -> int:
        """Outlives any synthesis a caller still waits for (see ``keys.VOICE_FORGOTTEN_TTL_S``)."""
        longest_wait_s = math.ceil(self._settings.singleflight_wait_timeout_s)
        return max(keys.VOICE_FORGOTTEN_TTL_S, longest_wait_s + 60)
