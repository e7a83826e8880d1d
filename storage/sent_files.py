"""Which answers a platform already holds: send them again by the platform's id, not the bytes.

Telegram answers an upload with a ``file_id``; sending that id again is a few bytes instead
of the whole voice note, and Telegram need not store the file twice. Ids are remembered by
the audio's sha256 (the same answer is the same bytes, from the cache or a new synthesis),
per bot (a ``file_id`` works only for the bot that got it), for as long as cached audio.
They live on the cache server: a lost id only means one more upload. With Redis down,
``get`` finds nothing and ``remember`` does nothing.
"""

from __future__ import annotations

import hashlib

from storage import keys
from storage.client import RedisClient
from storage.metrics import StorageMetrics
from storage.settings import StorageSettings


def _key(platform: str, bot_id: str, audio: bytes) -> str:
    return keys.sent_file(platform, bot_id, hashlib.sha256(audio).hexdigest())


class SentFiles:
    def __init__(
        self, redis: RedisClient, settings: StorageSettings, metrics: StorageMetrics | None = None
    ) -> None:
        self._redis = redis
        self._ttl_s = settings.cache_ttl_s
        self.metrics = metrics if metrics is not None else StorageMetrics()

    async def get(self, platform: str, bot_id: str, audio: bytes) -> str | None:
        """The platform's id for ``audio`` uploaded by this bot before, if one is known."""
        key = _key(platform, bot_id, audio)
        raw = await self.metrics.guarded(
            "sent file get", lambda: self._redis.get(key), when_down=None
        )
        return None if raw is None else keys.as_text(raw)

    async def remember(self, platform: str, bot_id: str, audio: bytes, file_id: str) -> None:
        key = _key(platform, bot_id, audio)
        await self.metrics.guarded(
            "sent file set", lambda: self._redis.set(key, file_id, ex=self._ttl_s), when_down=None
        )

    async def forget(self, platform: str, bot_id: str, audio: bytes) -> None:
        """The platform refused the id (deleted, or another bot's): upload next time."""
        key = _key(platform, bot_id, audio)
        await self.metrics.guarded(
            "sent file delete", lambda: self._redis.delete(key), when_down=None
        )
