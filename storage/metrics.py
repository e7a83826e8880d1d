"""In-process counters of the storage layer, read by the admin/metrics endpoint.

Plain ints on purpose: storage stays free of prometheus; the admin layer exports a snapshot.
``redis_failed``/``redis_succeeded`` also log the up→down and down→up transitions once each,
so a dead Redis produces two log lines, not one per chat message.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from redis.exceptions import RedisError

log = logging.getLogger("storage")

# What a dead, slow or full Redis raises through redis-py (socket errors arrive wrapped as
# ConnectionError, but a raw OSError/TimeoutError can escape while a connection is set up).
# TimeoutError (also asyncio's, since 3.11) is an OSError.
REDIS_ERRORS = (RedisError, OSError)


@dataclass
class StorageMetrics:
    redis_errors: int = 0  # commands that failed; the caller degraded
    cache_hits: int = 0
    cache_misses: int = 0
    cache_stores: int = 0
    cache_too_large: int = 0  # answers not cached: over cache_max_entry_bytes
    cache_corrupt: int = 0  # values that did not decode (treated as misses)
    singleflight_leads: int = 0  # syntheses this process ran while holding a key's lock
    singleflight_joins: int = 0  # callers answered by a synthesis someone else ran
    singleflight_timeouts: int = 0
    ratelimit_denied: int = 0
    redis_up: bool = True  # as last observed by any command

    def redis_failed(self, operation: str, exc: BaseException) -> None:
        """Count a failed command; log only when Redis was believed up until now."""
        self.redis_errors += 1
        if self.redis_up:
            self.redis_up = False
            log.warning(
                "Redis unavailable during %s (%s: %s); cache, voices, usage and rate limits "
                "degrade until it is back",
                operation,
                type(exc).__name__,
                exc,
            )

    def redis_succeeded(self) -> None:
        if not self.redis_up:
            self.redis_up = True
            log.warning("Redis is back")

    def snapshot(self) -> dict[str, int | bool]:
        """A copy for exporters; taking it never blocks the counters."""
        return asdict(self)
