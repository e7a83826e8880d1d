"""Admin sessions and the admin login throttle, in Redis (keys and limits in ``storage.keys``).

Sessions: a browser's cookie holds a random id (``secrets.token_urlsafe(32)``); Redis holds,
under the id's sha256, what the session was issued with — an opaque ``binding`` the caller
derives from the id and its ``ADMIN_TOKEN``, and the expiry — for ``ADMIN_SESSION_TTL_S``.
Deleting the key ends the session for every process sharing the Redis. A dump of Redis holds
no usable cookie and nothing that would test a guess of the token (the binding is keyed by
the id, which Redis never sees).

Throttle: failed logins are counted in fixed windows of ``ADMIN_LOGIN_WINDOW_S``, per client
address and overall. ``charge`` is called before the token is checked: it refuses (with how
long until the window ends) once either count has reached its limit, else counts the attempt
as a failure; ``refund`` takes the count back when the token was right. Check and count are
one Lua script, so concurrent guesses cannot slip past the limit between the two.

With Redis down (or not opened yet) sessions can be neither made nor checked
(``StorageUnavailable``), and the throttle counts in this process instead — it never fails
open; the switch is logged once each way. Every Redis call goes through ``StorageMetrics``
(``guarded``/``required``), so failures count in ``saybot_redis_errors`` and share the breaker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storage import keys
from storage.client import RedisClient
from storage.errors import StorageUnavailable
from storage.metrics import StorageMetrics

log = logging.getLogger("storage")

ClientSource = Callable[[], RedisClient | None]
"""The Redis client, or None while it is not open yet (``saybot run`` serves the admin
endpoint before it opens Redis)."""

MAX_SESSION_ID_CHARS = 128  # token_urlsafe(32) is 43; anything longer is not one of ours

# KEYS[1] this client's failures, KEYS[2] everyone's; ARGV[1] window ms, ARGV[2] the client
# limit, ARGV[3] the overall limit. Returns {ms until the window that refused ends (0: the
# attempt was counted), the client's count, the overall count}.
_CHARGE_LUA = """
local window = tonumber(ARGV[1])
local limits = {tonumber(ARGV[2]), tonumber(ARGV[3])}
local counts = {}
local wait = 0
for i = 1, 2 do
  counts[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if counts[i] >= limits[i] then
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 0 then
      redis.call('PEXPIRE', KEYS[i], window)
      ttl = window
    end
    wait = math.max(wait, ttl)
  end
end
if wait > 0 then
  return {wait, counts[1], counts[2]}
end
for i = 1, 2 do
  counts[i] = redis.call('INCR', KEYS[i])
  if counts[i] == 1 then
    redis.call('PEXPIRE', KEYS[i], window)
  end
end
return {0, counts[1], counts[2]}
"""

# KEYS: the counters one charge counted in. Never creates a key (a DECR of a key whose
# window just ended would leave -1 without a TTL).
_REFUND_LUA = """
for i = 1, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then
    redis.call('DECR', KEYS[i])
  end
end
return 0
"""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _client(source: ClientSource, why: str) -> RedisClient:
    client = source()
    if client is None:
        raise StorageUnavailable(f"{why}: storage is not open yet")
    return client


# --- sessions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredSession:
    binding: str  # what the caller derived from the session id when it made the session
    expires_at: float  # Unix time; Redis drops the key then too


class SessionStore:
    """Admin sessions by id; the id itself is never stored, only its sha256."""

    def __init__(self, redis: ClientSource, metrics: StorageMetrics) -> None:
        self._redis = redis
        self.metrics = metrics

    async def save(self, session_id: str, binding: str, expires_at: float, ttl_s: int) -> None:
        """Keep a new session for ``ttl_s``; ``StorageUnavailable`` if Redis cannot."""
        client = _client(self._redis, "no session can be made")
        value = json.dumps({"binding": binding, "expires_at": expires_at})
        key = keys.admin_session(_sha256(session_id))
        await self.metrics.required(
            "admin session save",
            lambda: client.set(key, value, ex=ttl_s),
            unavailable="no session can be made while Redis is unavailable",
        )

    async def load(self, session_id: str) -> StoredSession | None:
        """The session, None if there is none (ended, expired, never made, garbled), or
        ``StorageUnavailable`` when Redis cannot say."""
        client = _client(self._redis, "sessions cannot be checked")
        key = keys.admin_session(_sha256(session_id))
        raw = await self.metrics.required(
            "admin session read",
            lambda: client.get(key),
            unavailable="sessions cannot be checked while Redis is unavailable",
        )
        if raw is None:
            return None
        try:
            data: Any = json.loads(raw)
            return StoredSession(str(data["binding"]), float(data["expires_at"]))
        except (ValueError, TypeError, KeyError):
            return None

    async def delete(self, session_id: str) -> bool:
        """End the session; False when Redis could not be told (the key expires by itself)."""
        client = self._redis()
        if client is None:
            return False
        key = keys.admin_session(_sha256(session_id))
        deleted = await self.metrics.guarded(
            "admin session delete", lambda: client.delete(key), when_down=None
        )
        return deleted is not None


# --- the login throttle ----------------------------------------------------------------------


@dataclass(frozen=True)
class LoginCharge:
    """One login attempt, counted as a failure until ``refund``."""

    allowed: bool  # False: a limit was reached; refuse without checking the token
    retry_after_s: float  # when not allowed: the window that refused ends in this long
    client_failures: int  # this window's failures from the client, this attempt included
    all_failures: int  # and from everyone
    in_process: bool  # counted in this process: Redis was down


class LoginThrottle:
    """Failed admin logins per client address and overall, in fixed windows."""

    def __init__(
        self,
        redis: ClientSource,
        metrics: StorageMetrics,
        *,
        window_s: int = keys.ADMIN_LOGIN_WINDOW_S,
        per_client: int = keys.ADMIN_LOGIN_FAILURES_PER_CLIENT,
        overall: int = keys.ADMIN_LOGIN_FAILURES_OVERALL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self.metrics = metrics
        self.window_s = window_s
        self.per_client = per_client
        self.overall = overall
        self._local = _LocalWindows(window_s, clock)
        self._degraded = False

    async def charge(self, client_address: str) -> LoginCharge:
        """Refuse the attempt if a limit is reached, else count it as a failure."""
        names = self._keys(client_address)
        client = self._redis()
        answer = None
        if client is not None:
            script = client.register_script(_CHARGE_LUA)
            answer = await self.metrics.guarded(
                "admin login throttle",
                lambda: script(
                    keys=names, args=[self.window_s * 1000, self.per_client, self.overall]
                ),
                when_down=None,
            )
        if answer is None:
            self._note_degraded(True)
            return self._local.charge(names, (self.per_client, self.overall))
        self._note_degraded(False)
        wait_ms, client_failures, all_failures = (int(part) for part in answer)
        return LoginCharge(
            allowed=wait_ms == 0,
            retry_after_s=wait_ms / 1000,
            client_failures=client_failures,
            all_failures=all_failures,
            in_process=False,
        )

    async def refund(self, client_address: str, charge: LoginCharge) -> None:
        """The token was right: the attempt was no failure after all."""
        if not charge.allowed:
            return
        names = self._keys(client_address)
        if charge.in_process:
            self._local.refund(names)
            return
        client = self._redis()
        if client is None:
            return
        script = client.register_script(_REFUND_LUA)
        # Best effort: an unrefunded success only brings the limit one attempt closer.
        await self.metrics.guarded(
            "admin login refund", lambda: script(keys=names), when_down=None, always_try=True
        )

    def _keys(self, client_address: str) -> list[str]:
        return [
            keys.admin_login_failures_client(_sha256(client_address)),
            keys.admin_login_failures_all(),
        ]

    def _note_degraded(self, degraded: bool) -> None:
        if degraded == self._degraded:
            return
        self._degraded = degraded
        if degraded:
            log.warning(
                "admin login throttle: Redis unavailable; counting failed logins in this "
                "process until it is back"
            )
        else:
            log.warning("admin login throttle: counting failed logins in Redis again")


class _LocalWindows:
    """The throttle's fallback: the same fixed windows, in this process's memory.

    Bounded without pruning tricks: once the overall limit is reached nothing more is
    counted, so a window holds at most ``overall`` client entries; ended windows are
    dropped whenever one is counted.
    """

    def __init__(self, window_s: int, clock: Callable[[], float]) -> None:
        self._window_s = window_s
        self._clock = clock
        self._counts: dict[str, tuple[int, float]] = {}  # key → (failures, window ends at)

    def charge(self, names: list[str], limits: tuple[int, int]) -> LoginCharge:
        now = self._clock()
        self._counts = {name: entry for name, entry in self._counts.items() if entry[1] > now}
        counts = [self._counts.get(name, (0, now + self._window_s)) for name in names]
        reached = zip(counts, limits, strict=True)
        waits = [ends - now for (count, ends), limit in reached if count >= limit]
        if waits:
            return LoginCharge(False, max(waits), counts[0][0], counts[1][0], in_process=True)
        for name, (count, ends) in zip(names, counts, strict=True):
            self._counts[name] = (count + 1, ends)
        return LoginCharge(True, 0.0, counts[0][0] + 1, counts[1][0] + 1, in_process=True)

    def refund(self, names: list[str]) -> None:
        for name in names:
            count, ends = self._counts.get(name, (0, 0.0))
            if count > 0:
                self._counts[name] = (count - 1, ends)
