"""In-process counters of the storage layer, read by the admin/metrics endpoint, the
circuit breaker every storage component consults before talking to Redis, and the one
guard every storage call to Redis goes through.

Plain ints on purpose: storage stays free of prometheus; the admin layer exports a snapshot.
``redis_failed``/``redis_succeeded`` also log the up→down and down→up transitions once each,
so a dead Redis produces two log lines, not one per chat message.

Breaker: after a failure, ``redis_allowed()`` says no for ``cooldown_s``, then lets one
call through as a probe. A hung server (each command waits out the socket timeout) then
costs one timeout per cooldown, not one per command. Share one ``StorageMetrics`` among
the cache, voices, usage and rate limiter so they share the breaker too.

Guard: every storage component talks to Redis through ``guarded`` (reads and best-effort
writes: answer ``when_down`` when Redis is down) or ``required`` (writes a user was
promised: raise ``StorageUnavailable`` instead), so each outcome — skipped by the open
breaker, failed, succeeded — is classified in one place, not in an ``except`` per call
(only the health ping in ``storage.redis`` reports instead of counting). Both take a
factory, not an awaitable: a skipped call must leave no coroutine that is never awaited.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import TypeVar

from redis.exceptions import RedisClusterException, RedisError

from storage.errors import StorageUnavailable

log = logging.getLogger("storage")

# What a dead, slow or full Redis raises through redis-py (socket errors arrive wrapped as
# ConnectionError, but a raw OSError/TimeoutError can escape while a connection is set up).
# TimeoutError (also asyncio's, since 3.11) is an OSError.
REDIS_ERRORS = (RedisError, RedisClusterException, OSError)

T = TypeVar("T")
D = TypeVar("D")


@dataclass(frozen=True, slots=True)
class _Down:
    """A guarded call that gave no answer; ``cause`` is None when the breaker skipped it."""

    cause: BaseException | None


@dataclass
class StorageMetrics:
    redis_errors: int = 0  # commands that failed; the caller degraded
    cache_hits: int = 0
    cache_misses: int = 0
    cache_stores: int = 0
    cache_too_large: int = 0  # answers not cached: over cache_max_entry_bytes
    cache_not_audio: int = 0  # answers not cached: not audio of their format
    cache_corrupt: int = 0  # values that did not decode (treated as misses)
    cache_voice_forgotten: int = 0  # answers not cached: their voice was forgotten meanwhile
    singleflight_leads: int = 0  # syntheses this process ran while holding a key's lock
    singleflight_joins: int = 0  # callers answered by a synthesis someone else ran
    singleflight_timeouts: int = 0
    singleflight_takeovers: int = 0  # callers that tried again after a holder failed transiently
    ratelimit_denied: int = 0
    redis_skipped: int = 0  # calls that degraded without trying: the breaker was open
    redis_up: bool = True  # as last observed by any command
    cooldown_s: float = 1.0
    _skip_until: float = field(default=0.0, repr=False)

    def redis_allowed(self) -> bool:
        """False while the breaker is open (the caller degrades at once); a probe gets True."""
        if self.redis_up:
            return True
        now = time.monotonic()
        if now < self._skip_until:
            self.redis_skipped += 1
            return False
        self._skip_until = now + self.cooldown_s  # one probe per cooldown; the rest skip
        return True

    def redis_failed(self, operation: str, exc: BaseException) -> None:
        """Count a failed command and open the breaker; log only on the up→down transition."""
        self.redis_errors += 1
        self._skip_until = time.monotonic() + self.cooldown_s
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

    async def guarded(
        self,
        operation: str,
        call: Callable[[], Awaitable[T]],
        *,
        when_down: D,
        always_try: bool = False,
    ) -> T | D:
        """``await call()``, or ``when_down`` if Redis failed (counted, logged once as
        ``operation``) or the breaker is open (counted as skipped; ``call`` is not made).

        ``always_try``: ignore the breaker, for clean-up owed in the middle of something
        (releasing a lock, posting an outcome) that would rather fail than be skipped.
        """
        result = await self._attempt(operation, call, always_try)
        return when_down if isinstance(result, _Down) else result

    async def required(
        self,
        operation: str,
        call: Callable[[], Awaitable[T]],
        *,
        unavailable: str,
        always_try: bool = False,
    ) -> T:
        """``guarded`` for a write the user was promised: ``StorageUnavailable(unavailable)``
        where ``guarded`` would answer ``when_down``, because "done" must mean done."""
        result = await self._attempt(operation, call, always_try)
        if isinstance(result, _Down):
            raise StorageUnavailable(unavailable) from result.cause
        return result

    async def _attempt(
        self, operation: str, call: Callable[[], Awaitable[T]], always_try: bool
    ) -> T | _Down:
        if not always_try and not self.redis_allowed():
            return _Down(None)
        try:
            result = await call()
        except REDIS_ERRORS as exc:
            self.redis_failed(operation, exc)
            return _Down(exc)
        self.redis_succeeded()
        return result

    def snapshot(self) -> dict[str, int | bool]:
        """The counters and state, for exporters."""
        return {k: v for k, v in asdict(self).items() if isinstance(v, int | bool)}
