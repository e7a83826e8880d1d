"""Single-flight across processes: of all concurrent callers missing one key, one creates.

Concurrent misses of one key coalesce in-process on one task, and across processes on a
Redis lock (``SET NX PX`` with a random token, renewed while ``create`` runs, released by
compare-and-delete). Waiters poll lock → value → outcome in that order, so a released
lock always shows its result: the stored value, or an *outcome* marker under the holder's
token saying it failed (waiters raise the same error, see ``error_rebuilder``), failed
*transiently* (busy, timed out, unavailable: waiters take the work over, once each, instead
of all failing with it) or could not store (waiters create themselves). A lock whose
holder died expires within ``singleflight_lock_ttl_ms`` and a waiter takes over. With
Redis down, every caller just creates.

Apart from ``storage.cache`` because none of this is about audio: the cache hands in how
to look a key up, store a value and decode one read with the lock, and the value type is
generic. The lock and outcome keys are derived from the value key (``storage.keys``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Final, Generic, TypeVar

from storage import keys
from storage.client import RedisClient
from storage.errors import SingleFlightFailed, SingleFlightTimeout
from storage.metrics import StorageMetrics
from storage.settings import StorageSettings

log = logging.getLogger("storage")

V = TypeVar("V")

# Waiters poll quickly at first (a hit on a just-finished create) then back off.
POLL_FIRST_S = 0.005
POLL_MAX_S = 0.1
OUTCOME_MESSAGE_MAX_CHARS = 500

# (code, message) of a failed create → the exception its waiters raise.
ErrorRebuilder = Callable[[str, str], BaseException]

# Renew or release the lock only while it is still ours (the token is random per holder).
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class _Retry:
    """The holder we waited for left no result: try to take the lock ourselves."""


class _Alone:
    """Wait no longer; create without the lock (Redis down, or the value could not be stored)."""


class _TakeOver(_Retry):
    """The holder failed in a way that may pass: take the lock and try ourselves."""


_RETRY: Final = _Retry()
_TAKE_OVER: Final = _TakeOver()
_ALONE: Final = _Alone()


def _describe_failure(exc: Exception, *, transient: bool) -> dict[str, str]:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None)
    return {
        "kind": "transient" if transient else "error",
        "code": code if isinstance(code, str) else "error",
        "message": (message if isinstance(message, str) else str(exc) or type(exc).__name__)[
            :OUTCOME_MESSAGE_MAX_CHARS
        ],
    }


def error_rebuilder(*classes: type[Exception]) -> ErrorRebuilder:
    """Waiters raise ``cls(message)`` for the class whose ``code`` matches, else
    ``SingleFlightFailed``. Pass your own error classes, e.g. ``error_rebuilder(TTSBusy, …)``."""
    by_code = {getattr(cls, "code", None): cls for cls in classes}

    def rebuild(code: str, message: str) -> BaseException:
        cls = by_code.get(code)
        if cls is not None:
            try:
                return cls(message)
            except TypeError:
                pass  # a constructor that needs more than a message
        return SingleFlightFailed(code, message)

    return rebuild


class SingleFlight(Generic[V]):
    """One ``create`` per key among all concurrent callers, in this process and others."""

    def __init__(
        self,
        redis: RedisClient,
        settings: StorageSettings,
        metrics: StorageMetrics,
        *,
        peek: Callable[[str], Awaitable[V | None]],
        put: Callable[[str, V], Awaitable[bool]],
        decode: Callable[[str, bytes | str], V | None],
        rebuild_error: ErrorRebuilder | None = None,
        is_transient: Callable[[Exception], bool] = lambda exc: False,
    ) -> None:
        """``peek``: the stored value, uncounted; ``put``: store it, False if not stored;
        ``decode``: a raw value read along with the lock, None if it does not decode;
        ``is_transient``: whether a failed ``create`` is worth a waiter's own try."""
        self._redis = redis
        self._settings = settings
        self.metrics = metrics
        self._peek = peek
        self._put = put
        self._decode = decode
        self._rebuild_error = rebuild_error or error_rebuilder()
        self._is_transient = is_transient
        self._inflight: dict[str, asyncio.Task[tuple[V, bool]]] = {}
        self._renew = redis.register_script(_RENEW_LUA)
        self._release = redis.register_script(_RELEASE_LUA)

    async def run(self, key: str, create: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """``(value, from_cache)``; ``from_cache`` is False only for the caller whose
        ``create`` ran. Waiters raise the holder's error (see ``rebuild_error``) or
        ``SingleFlightTimeout`` after ``singleflight_wait_timeout_s``."""
        task = self._inflight.get(key)
        if task is not None:  # the same key is being resolved in this process: share it
            try:
                shared, _ = await asyncio.shield(task)
            except Exception as exc:
                if not self._is_transient(exc):
                    raise
                self.metrics.singleflight_takeovers += 1
                return await self._start(key, create, took_over=True)
            self.metrics.singleflight_joins += 1
            return shared, True
        return await self._start(key, create, took_over=False)

    async def _start(
        self, key: str, create: Callable[[], Awaitable[V]], *, took_over: bool
    ) -> tuple[V, bool]:
        """Resolve ``key`` on a task this process's later callers can join."""
        task = self._inflight.get(key)
        if task is not None:  # another joiner took over first: join that try
            shared, _ = await asyncio.shield(task)
            return shared, True
        task = asyncio.create_task(
            self._resolve(key, create, took_over=took_over), name=f"single-flight {key}"
        )
        self._inflight[key] = task
        task.add_done_callback(lambda done: self._task_done(key, done))
        # Shielded: a caller that gives up (a cancelled chat interaction) does not throw away
        # the value the others wait for; it is still stored.
        made, created = await asyncio.shield(task)
        if not created:
            self.metrics.singleflight_joins += 1
        return made, not created

    async def drain(self, timeout_s: float) -> None:
        """Let creates whose callers left finish (bounded), cancel the rest. Their locks
        are released, or expire on their own."""
        tasks = set(self._inflight.values())
        if not tasks:
            return
        _, unfinished = await asyncio.wait(tasks, timeout=timeout_s)
        for task in unfinished:
            task.cancel()
        if unfinished:
            log.warning("single-flight: gave up on %d create(s) at shutdown", len(unfinished))
            await asyncio.wait(unfinished)

    def _task_done(self, key: str, task: asyncio.Task[tuple[V, bool]]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" noise if every caller left

    async def _resolve(
        self, key: str, create: Callable[[], Awaitable[V]], *, took_over: bool
    ) -> tuple[V, bool]:
        """Take the lock and create, or wait for whoever holds it. True = we created.
        A caller takes over from a transiently failed holder once; after that it shares
        the next holder's failure like any other."""
        digest = keys.digest_of(key)
        lock_key = keys.lock(digest)
        token = secrets.token_hex(16)
        deadline = asyncio.get_running_loop().time() + self._settings.singleflight_wait_timeout_s
        while True:
            holder = await self.metrics.guarded(
                "single-flight lock",
                lambda: self._redis.set(
                    lock_key, token, nx=True, px=self._settings.singleflight_lock_ttl_ms, get=True
                ),
                when_down=_ALONE,
            )
            if isinstance(holder, _Alone):
                return await self._create_alone(key, create), True
            if not isinstance(holder, bytes | str):  # nil: the lock is ours
                return await self._lead(key, lock_key, token, digest, create)
            waited = await self._wait(
                key, lock_key, digest, keys.as_text(holder), deadline, may_take_over=not took_over
            )
            if isinstance(waited, _TakeOver):
                took_over = True
                self.metrics.singleflight_takeovers += 1
            if isinstance(waited, _Alone):
                return await self._create_alone(key, create), True
            if not isinstance(waited, _Retry):
                return waited, False
            # _RETRY or _TAKE_OVER: the holder vanished or failed transiently; try to lead

    async def _lead(
        self, key: str, lock_key: str, token: str, digest: str, create: Callable[[], Awaitable[V]]
    ) -> tuple[V, bool]:
        renewer = asyncio.create_task(self._keep_lock(lock_key, token))
        try:
            # A previous holder may have stored the value just before we took its lock.
            existing = await self._peek(key)
            if existing is not None:
                return existing, False
            self.metrics.singleflight_leads += 1
            try:
                made = await create()
            except Exception as exc:
                await self._post_outcome(
                    digest, token, _describe_failure(exc, transient=self._is_transient(exc))
                )
                raise
            if not await self._put(key, made):
                await self._post_outcome(digest, token, {"kind": "uncached"})
            return made, True
        finally:
            renewer.cancel()
            await self.metrics.guarded(  # on failure it expires on its own
                "single-flight release",
                lambda: self._release(keys=[lock_key], args=[token]),
                when_down=None,
                always_try=True,
            )

    async def _create_alone(self, key: str, create: Callable[[], Awaitable[V]]) -> V:
        made = await create()
        await self._put(key, made)
        return made

    async def _keep_lock(self, lock_key: str, token: str) -> None:
        ttl_ms = self._settings.singleflight_lock_ttl_ms
        while True:
            await asyncio.sleep(ttl_ms / 3000)
            renewed = await self.metrics.guarded(
                "single-flight renew",
                lambda: self._renew(keys=[lock_key], args=[token, ttl_ms]),
                when_down=None,
                always_try=True,
            )
            if renewed is None:
                continue  # Redis failed this time; the lock outlives a few misses
            if not renewed:
                log.warning(
                    "lost the single-flight lock %s; another caller may create too", lock_key
                )
                return

    async def _post_outcome(self, digest: str, token: str, outcome: dict[str, str]) -> None:
        await self.metrics.guarded(  # on failure waiters take over instead of sharing the error
            "single-flight outcome",
            lambda: self._redis.set(
                keys.outcome(digest, token), json.dumps(outcome), px=keys.OUTCOME_TTL_MS
            ),
            when_down=None,
            always_try=True,
        )

    async def _wait(
        self,
        key: str,
        lock_key: str,
        digest: str,
        holder: str,
        deadline: float,
        *,
        may_take_over: bool,
    ) -> V | _Retry | _Alone:
        loop = asyncio.get_running_loop()
        delay = POLL_FIRST_S
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.metrics.singleflight_timeouts += 1
                raise SingleFlightTimeout(
                    f"waited {self._settings.singleflight_wait_timeout_s:g} s for another "
                    "caller making the same value"
                )
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, POLL_MAX_S)
            # Lock first: if it is gone, the value or outcome written before the release
            # is visible to the two reads that follow.
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(lock_key)
            pipe.get(key)
            pipe.get(keys.outcome(digest, holder))
            read = await self.metrics.guarded(
                "single-flight wait", pipe.execute, when_down=None, always_try=True
            )
            if read is None:
                return _ALONE
            current, raw, outcome = read
            if raw is not None and (value := self._decode(key, raw)) is not None:
                return value
            if outcome is not None:
                return self._follow_outcome(outcome, may_take_over=may_take_over)
            if current is None:
                return _RETRY
            holder = keys.as_text(current)  # a new holder took over from a dead one

    def _follow_outcome(self, raw: bytes, *, may_take_over: bool) -> _Alone | _TakeOver:
        outcome = json.loads(raw)
        kind = outcome.get("kind")
        if kind == "transient" and may_take_over:
            return _TAKE_OVER
        if kind in ("error", "transient"):
            raise self._rebuild_error(
                str(outcome.get("code", "error")), str(outcome.get("message", ""))
            )
        return _ALONE
