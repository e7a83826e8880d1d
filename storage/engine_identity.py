"""The TTS engine's identity as last seen by any bot process.

Every cache key names the engine and its version, so a bot cannot answer even a cache
hit before it knows them. A bot that starts while the TTS service is down (or asleep on
a cold GPU) reads them here instead, and serves what is cached. Never raises for Redis.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from storage import keys
from storage.client import RedisClient
from storage.metrics import StorageMetrics
from tts_service.schema import EngineInfo

log = logging.getLogger("storage")


class EngineIdentityStore:
    def __init__(self, redis: RedisClient, metrics: StorageMetrics | None = None) -> None:
        self._redis = redis
        self.metrics = metrics if metrics is not None else StorageMetrics()

    async def last_seen(self) -> EngineInfo | None:
        """What was remembered; None if nothing was, it does not parse, or Redis is down."""
        raw = await self.metrics.guarded(
            "engine identity read", lambda: self._redis.get(keys.ENGINE_IDENTITY), when_down=None
        )
        if raw is None:
            return None
        try:
            return EngineInfo.model_validate_json(raw)
        except ValidationError:
            log.warning("ignoring an engine identity that does not parse (another version?)")
            return None

    async def remember(self, engine: EngineInfo) -> None:
        """Note ``engine`` for the next bot that starts; never raises for Redis."""
        await self.metrics.guarded(
            "engine identity write",
            lambda: self._redis.set(
                keys.ENGINE_IDENTITY, engine.model_dump_json(), ex=keys.ENGINE_IDENTITY_TTL_S
            ),
            when_down=None,
        )
