"""Per-user token buckets in Redis, shared by every bot process.

One Lua script reads, refills and spends the bucket atomically, timed by the server's
``TIME`` so processes with drifting clocks still agree. A bucket holds at most ``burst``
tokens and refills at ``per_minute``; each request spends one. A community may set a
lower rate for requests from it (``bots.community``): the same bucket then refills and caps
at that rule there. Users on the admin allow-list are never limited. With Redis unavailable
the limiter fails open (default: a dead Redis must not silence the bot) or closed
(``ratelimit_fail_open=false``).
"""

from __future__ import annotations

from dataclasses import dataclass

from storage import keys
from storage.client import RedisClient
from storage.metrics import StorageMetrics
from storage.settings import RateRule, StorageSettings

FAIL_CLOSED_RETRY_AFTER_S = 5.0  # what a fail-closed limiter tells users while Redis is down

# KEYS[1] the bucket; ARGV[1] tokens per second, ARGV[2] burst.
# Returns {allowed (0/1), seconds until one token is available (string: Lua→Redis truncates
# numbers to integers)}.
_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1],
  'tokens', string.format('%.6f', tokens), 'at', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, string.format('%.3f', wait)}
"""


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_s: float = 0.0  # when not allowed: wait this long, then one request passes
    degraded: bool = False  # Redis was unavailable; decided by ``ratelimit_fail_open``


class RateLimiter:
    def __init__(
        self, redis: RedisClient, settings: StorageSettings, metrics: StorageMetrics | None = None
    ) -> None:
        self._redis = redis
        self._settings = settings
        self.metrics = metrics if metrics is not None else StorageMetrics()
        self._bucket = redis.register_script(_BUCKET_LUA)

    async def check(
        self, platform: str, user_id: str, override: RateRule | None = None
    ) -> RateDecision:
        """Spend one token of the user's bucket, or say how long until one is available.

        ``override``: the rule of the place the request comes from (a community's own rate),
        applied to the user's one bucket instead of the platform's rule, even with
        ``ratelimit_enabled`` off; the allow-list still passes."""
        key = keys.rate_bucket(
            keys.check_field("platform", platform), keys.check_field("user_id", user_id)
        )
        if not self._settings.ratelimit_enabled and override is None:
            return RateDecision(allowed=True)
        if f"{platform}:{user_id}" in self._settings.ratelimit_admins:
            return RateDecision(allowed=True)
        rule = override or self._settings.rate_rule(platform)
        spent = await self.metrics.guarded(
            "rate limit",
            lambda: self._bucket(keys=[key], args=[rule.per_minute / 60, rule.burst]),
            when_down=None,
        )
        if spent is None:
            return self._degraded()
        allowed, wait = spent
        if allowed:
            return RateDecision(allowed=True)
        self.metrics.ratelimit_denied += 1
        return RateDecision(allowed=False, retry_after_s=float(wait))

    def _degraded(self) -> RateDecision:
        if self._settings.ratelimit_fail_open:
            return RateDecision(allowed=True, degraded=True)
        return RateDecision(False, FAIL_CLOSED_RETRY_AFTER_S, degraded=True)
