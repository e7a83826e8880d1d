"""Letting go of a user's hold on voices: the one place a clip and its cached answers go.

A module of its own because deleting a voice is the delicate part of ``storage.voices``:
it must be atomic per voice (another user may save the same clip meanwhile), span two
servers (the answers live on the cache server), and happen in an order that keeps a
synthesis finishing meanwhile from caching its answer again. ``VoiceStore`` decides *which*
voices to let go of (a forget, or a save beyond ``max_voices_per_user``); ``VoiceRelease``
does it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from storage import keys
from storage.client import RedisClient
from storage.settings import StorageSettings

# Atomic per voice (all four keys share the {voice_id} slot): drop the user's ownership,
# and when no owner is left, delete the clip and the owners, put up the tombstone, and return
# the keys of the answers made with the voice for the caller to delete (they live on the
# cache server); the caller deletes the index (KEYS[3]) after them, so a forget interrupted
# in between (the cache server down) still finds them when the user tries again, while the
# tombstone is up. ARGV[2] = "1": the user only sent this voice for requests (never saved
# it), which is reason enough to forget the answers nobody who saved the voice still vouches
# for. Returns {-1} if the user neither owned nor sent it, {0} if others still own it, else
# {1, key…}.
_RELEASE_VOICE_LUA = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 and ARGV[2] ~= '1' then
  if redis.call('EXISTS', KEYS[4]) == 0 or redis.call('SCARD', KEYS[1]) > 0 then
    return {-1}
  end
end
if redis.call('SCARD', KEYS[1]) > 0 then
  return {0}
end
local answers = redis.call('SMEMBERS', KEYS[3])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SET', KEYS[4], '1', 'EX', ARGV[3])
local result = {1}
for _, key in ipairs(answers) do
  result[#result + 1] = key
end
return result
"""
# What became of a voice: deleted (nobody owns it any more), kept for its other owners,
# or never the user's to let go of.
RELEASED, SHARED, NOT_HELD = 1, 0, -1


class VoiceRelease:
    """Releases voices held on the data server ``redis``, deleting the answers made with
    them from ``cache_redis`` (the same server when there is one)."""

    def __init__(
        self, redis: RedisClient, cache_redis: RedisClient, settings: StorageSettings
    ) -> None:
        self._redis = redis
        self._cache = cache_redis
        self._settings = settings
        self._release_voice = redis.register_script(_RELEASE_VOICE_LUA)

    async def __call__(
        self, owner: str, voice_ids: Iterable[str], *, sent_only: set[str]
    ) -> tuple[dict[str, int], int]:
        """Drop ``owner``'s hold on each voice; those nobody holds any more lose their clip,
        their cached answers (cache server) and then their index (see ``AudioCache._store``
        for why this order keeps a synthesis finishing meanwhile from caching its answer).
        ``sent_only``: the voices the owner only sent for requests, never saved.

        Returns each voice's outcome (``RELEASED``, ``SHARED`` or ``NOT_HELD``) and how
        many cached answers were deleted.
        """
        outcomes: dict[str, int] = {}
        released: list[str] = []
        answers: list[bytes] = []
        for voice_id in sorted(voice_ids):
            result = await self._release_voice(
                keys=[
                    keys.voice_owners(voice_id),
                    keys.voice_clip(voice_id),
                    keys.voice_audio(voice_id),
                    keys.voice_forgotten(voice_id),
                ],
                args=[owner, "1" if voice_id in sent_only else "0", self._forgotten_ttl_s],
            )
            outcomes[voice_id] = int(result[0])
            if outcomes[voice_id] == RELEASED:
                released.append(voice_id)
                answers.extend(result[1:])
        deleted = 0
        if answers:
            pipe = self._cache.pipeline(transaction=False)
            for answer in answers:  # one key per command: answers live in many cluster slots
                pipe.delete(answer)
                pipe.delete(keys.sent_files(keys.as_text(answer)))  # the ids Telegram gave it
            deleted = sum((await pipe.execute())[::2])
        if released:
            pipe = self._redis.pipeline(transaction=False)
            for voice_id in released:
                pipe.delete(keys.voice_audio(voice_id))
            await pipe.execute()
        return outcomes, deleted

    @property
    def _forgotten_ttl_s(self) -> int:
        """Outlives any synthesis a caller still waits for (see ``keys.VOICE_FORGOTTEN_TTL_S``)."""
        longest_wait_s = math.ceil(self._settings.singleflight_wait_timeout_s)
        return max(keys.VOICE_FORGOTTEN_TTL_S, longest_wait_s + 60)
