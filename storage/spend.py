"""GPU seconds spent, for the daily quotas and the monthly budget (``bots.quotas``).

Each synthesis a GPU engine really ran adds its seconds (what the service reports,
``X-Synthesis-Seconds``) to three counters with ``INCRBYFLOAT``: the user's day, the
community's day (when the request came from one) and everyone's month, all in UTC. A day's
counters live ``SPEND_DAY_TTL_S``, a month's ``SPEND_MONTH_TTL_S`` (``storage.keys``).
Cache hits, syntheses shared with another asker and the CPU engine add nothing.

Counting and the quota's reads never raise: a lost count is better than a lost reply, and
with Redis down nothing can be counted, so nothing is limited either (quotas fail open, like
the rate limiter's default). The admin endpoint's read of the month does raise, so that the
endpoint can say storage is unreadable instead of showing zero.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from storage import keys
from storage.client import RedisClient
from storage.metrics import StorageMetrics


@dataclass(frozen=True)
class Spent:
    """GPU seconds spent so far: the user's today, their community's today, everyone's this
    month."""

    user_s: float = 0.0
    server_s: float = 0.0
    month_s: float = 0.0


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def day_of(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).date().isoformat()


def month_of(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m")


class SpendLedger:
    def __init__(self, redis: RedisClient, metrics: StorageMetrics | None = None) -> None:
        self._redis = redis
        self.metrics = metrics if metrics is not None else StorageMetrics()

    def _keys(
        self, platform: str, user_id: str, server_id: str | None, now: dt.datetime
    ) -> list[str]:
        """The user's day, everyone's month and (from a community) the community's day."""
        keys.check_field("platform", platform)
        day = day_of(now)
        found = [
            keys.spend_user_day(platform, keys.check_field("user_id", user_id), day),
            keys.spend_month(month_of(now)),
        ]
        if server_id is not None:
            found.append(
                keys.spend_server_day(platform, keys.check_field("server_id", server_id), day)
            )
        return found

    async def spent(
        self, platform: str, user_id: str, server_id: str | None, now: dt.datetime | None = None
    ) -> Spent:
        """What the user, their community and everyone have spent (zeros if Redis is down)."""
        names = self._keys(platform, user_id, server_id, now or utc_now())
        # Pipelined GETs, not MGET: the keys live in different cluster slots.
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.get(name)
        values = await self.metrics.guarded(
            "spend read", pipe.execute, when_down=[None] * len(names)
        )
        user, month, *server = (float(value or 0) for value in values)
        return Spent(user_s=user, server_s=server[0] if server else 0.0, month_s=month)

    async def add(
        self,
        platform: str,
        user_id: str,
        server_id: str | None,
        seconds: float,
        now: dt.datetime | None = None,
    ) -> None:
        """Count ``seconds`` of GPU time: one pipelined round trip, never raises."""
        if seconds <= 0:
            return
        user_day, month, *server_day = self._keys(platform, user_id, server_id, now or utc_now())
        pipe = self._redis.pipeline(transaction=False)
        for name, ttl_s in (
            (user_day, keys.SPEND_DAY_TTL_S),
            (month, keys.SPEND_MONTH_TTL_S),
            *((name, keys.SPEND_DAY_TTL_S) for name in server_day),
        ):
            pipe.incrbyfloat(name, seconds)
            pipe.expire(name, ttl_s)
        await self.metrics.guarded("spend count", pipe.execute, when_down=None)

    async def month_seconds(self, month: str) -> float:
        """Everyone's GPU seconds in ``month`` (``YYYY-MM``); raises on a Redis failure."""
        value = await self._redis.get(keys.spend_month(month))
        return float(value or 0)
