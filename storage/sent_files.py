"""Which answers a platform already holds: send them again by the platform's id, not the bytes.

Telegram answers an upload with a ``file_id``; sending that id again is a few bytes instead
of the whole voice note, and Telegram need not store the file twice. The ids of one cached
answer live in a hash beside it (``keys.sent_files``), a field per sender (a ``file_id``
works only for the bot that got it), for as long as the answer. Each id is stored with the
sha256 of the bytes it was uploaded as, so an answer cached again under the same key with
other bytes is never sent by an id for the old ones. The cache reads the hash in the
answer's own round trip (``AudioCache.peek``); ``VoiceRelease`` deletes it with the answer.
They live on the cache server: a lost id only means one more upload. With Redis down,
``remember`` and ``forget`` do nothing.
"""

from __future__ import annotations

import hashlib

from storage import keys
from storage.client import RedisClient
from storage.metrics import StorageMetrics
from storage.settings import StorageSettings


def held_id(stored: bytes | str | None, audio: bytes) -> str | None:
    """The file id in a stored field, if it was given for exactly ``audio``."""
    if stored is None:
        return None
    digest, _, file_id = keys.as_text(stored).partition(":")
    if not file_id or digest != hashlib.sha256(audio).hexdigest():
        return None
    return file_id


class SentFiles:
    def __init__(
        self, redis: RedisClient, settings: StorageSettings, metrics: StorageMetrics | None = None
    ) -> None:
        self._redis = redis
        self._ttl_s = settings.cache_ttl_s
        self.metrics = metrics if metrics is not None else StorageMetrics()

    async def remember(self, audio_key: str, sender: str, audio: bytes, file_id: str) -> None:
        """``sender`` (e.g. ``telegram:<bot id>``) holds ``audio``, the answer at
        ``audio_key``, as ``file_id``."""
        key = keys.sent_files(audio_key)
        value = f"{hashlib.sha256(audio).hexdigest()}:{file_id}"

        async def store() -> None:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hset(key, sender, value)
            pipe.expire(key, self._ttl_s)
            await pipe.execute()

        await self.metrics.guarded("sent file set", store, when_down=None)

    async def forget(self, audio_key: str, sender: str) -> None:
        """The platform refused the id (deleted, or another bot's): upload next time."""
        key = keys.sent_files(audio_key)
        await self.metrics.guarded(
            "sent file delete", lambda: self._redis.hdel(key, sender), when_down=None
        )
