"""Usage counters: per-day buckets by platform and by user, read back by the admin endpoint.

Requests are buffered and written together: one pipelined round trip of ``HINCRBY``
(atomic, no read-modify-write) per flush, on two hashes per day — totals, per-platform
counts and errors by code (overall and per platform) in ``usage:day:<day>``, per-user
counts in ``usage:users:<day>`` — each expiring ``usage_retention_days`` after its day ends.

Fields of ``usage:day:<day>`` (``|`` separates; the counter or code is always last):
``<counter>``, ``platform|<platform>|<counter>``, ``error|<code>`` and
``platform_error|<platform>|<code>``.
Seconds are stored as integer milliseconds so sums are exact. Days are UTC dates.
``cloned`` counts requests spoken in a clip's voice (sent with the request or saved);
``consents`` and ``forgets`` count events, not requests, and only in the day's totals and per
platform, never per user (a forget must not leave a trace of who asked for it).
Recording never raises: a lost count is better than a lost reply.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from storage import keys
from storage.client import RedisClient
from storage.metrics import StorageMetrics
from storage.settings import StorageSettings

Outcome = Literal["hit", "miss", "error"]
Event = Literal["consents", "forgets"]  # counted apart from requests (``event_soon``)
_OUTCOME_FIELD: dict[str, str] = {"hit": "hits", "miss": "misses", "error": "errors"}
_SEP = "|"  # between the scope and the counter in a field name; ':' is inside user keys
# Not "platform|…": readers that predate it must not take "<platform>|error" for a platform.
_PLATFORM_ERROR = "platform_error"
MAX_SUMMARY_DAYS = 400


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _days(from_day: dt.date, to_day: dt.date) -> Iterator[dt.date]:
    if to_day < from_day:
        raise ValueError(f"to_day {to_day} is before from_day {from_day}")
    if (to_day - from_day).days >= MAX_SUMMARY_DAYS:
        raise ValueError(f"a summary covers at most {MAX_SUMMARY_DAYS} days")
    for offset in range((to_day - from_day).days + 1):
        yield from_day + dt.timedelta(days=offset)


@dataclass
class UsageCounts:
    requests: int = 0
    hits: int = 0
    misses: int = 0
    errors: int = 0
    audio_ms: int = 0
    synthesis_ms: int = 0
    cloned: int = 0  # requests spoken in a clip's voice (sent with them, or saved)
    consents: int = 0  # recordings confirmed as the sender's own voice
    forgets: int = 0  # "forget everything of mine" done

    @property
    def audio_seconds(self) -> float:
        return self.audio_ms / 1000

    @property
    def synthesis_seconds(self) -> float:
        return self.synthesis_ms / 1000

    @property
    def hit_ratio(self) -> float | None:
        """Hits over cache lookups (hits + misses); None before the first lookup."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else None

    def add(self, counter: str, value: int) -> None:
        if counter in _COUNTERS:
            setattr(self, counter, getattr(self, counter) + value)

    def merge(self, other: UsageCounts) -> None:
        for counter in _COUNTERS:
            self.add(counter, getattr(other, counter))


_COUNTERS = (
    "requests",
    "hits",
    "misses",
    "errors",
    "audio_ms",
    "synthesis_ms",
    "cloned",
    "consents",
    "forgets",
)


@dataclass
class UsageSummary:
    from_day: dt.date
    to_day: dt.date
    totals: UsageCounts
    per_day: list[tuple[dt.date, UsageCounts]]
    by_platform: dict[str, UsageCounts]
    errors_by_code: dict[str, int]
    price_per_gpu_second: float
    # platform → error code → count, most frequent first (counted since this field existed)
    errors_by_platform: dict[str, dict[str, int]] = field(default_factory=dict)
    # platform → one UsageCounts per day of the range, in order (zeros where it was idle)
    per_day_by_platform: dict[str, list[tuple[dt.date, UsageCounts]]] = field(default_factory=dict)

    @property
    def hit_ratio(self) -> float | None:
        return self.totals.hit_ratio

    @property
    def estimated_cost(self) -> float:
        """GPU seconds spent × the configured price; cache hits cost nothing."""
        return self.totals.synthesis_seconds * self.price_per_gpu_second


@dataclass
class UserUsage:
    platform: str
    user_id: str
    counts: UsageCounts = field(default_factory=UsageCounts)


# A buffered count waits at most this long before it is written.
FLUSH_INTERVAL_S = 0.5


class UsageRecorder:
    """Writes the counters. ``record_soon`` adds to a buffer that one pipeline writes every
    ``flush_interval_s`` (and on ``flush``): the chat answer never waits on counting, and a
    busy bot writes each hot field once per flush."""

    def __init__(
        self,
        redis: RedisClient,
        settings: StorageSettings,
        metrics: StorageMetrics | None = None,
        *,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self.metrics = metrics if metrics is not None else StorageMetrics()
        self._flush_interval_s = flush_interval_s
        self._buffer: Counter[tuple[str, str]] = Counter()  # (key, field) → increment
        self._expiries: dict[str, dt.datetime] = {}  # key → when it expires
        self._flusher: asyncio.Task[None] | None = None

    def record_soon(
        self,
        platform: str,
        user_id: str,
        outcome: Outcome,
        error_code: str | None = None,
        audio_seconds: float = 0.0,
        synthesis_seconds: float = 0.0,
        day: dt.date | None = None,
        *,
        cloned: bool = False,
    ) -> None:
        """Count one request (on ``day``, by default today in UTC); written within
        ``flush_interval_s``, never raises for Redis. Needs a running loop."""
        increments, expiries = self._increments(
            platform, user_id, outcome, error_code, audio_seconds, synthesis_seconds, day, cloned
        )
        self._buffer_soon(increments, expiries)

    def event_soon(self, platform: str, event: Event, day: dt.date | None = None) -> None:
        """Count one consent or forget in the day's totals and the platform's, not per user."""
        keys.check_field("platform", platform)
        day = day or utc_today()
        day_key = keys.usage_day(day.isoformat())
        increments: Counter[tuple[str, str]] = Counter(
            {(day_key, event): 1, (day_key, f"platform{_SEP}{platform}{_SEP}{event}"): 1}
        )
        self._buffer_soon(increments, {day_key: self._expire_at(day)})

    def _buffer_soon(
        self, increments: Counter[tuple[str, str]], expiries: dict[str, dt.datetime]
    ) -> None:
        self._buffer.update(increments)  # Counter.update adds
        self._expiries.update(expiries)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_later(), name="usage flush")

    def _expire_at(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(
            day + dt.timedelta(days=1 + self._settings.usage_retention_days),
            dt.time(),
            tzinfo=dt.UTC,
        )

    async def flush(self) -> None:
        """Write what is buffered now (at shutdown, or before reading the counts); the flush
        that was scheduled has nothing left to do and is called off."""
        if self._flusher is not None and self._flusher is not asyncio.current_task():
            self._flusher.cancel()
            self._flusher = None
        increments, expiries = self._buffer, self._expiries
        self._buffer, self._expiries = Counter(), {}
        if increments:
            await self._write(increments, expiries)

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self._flush_interval_s)
        finally:
            self._flusher = None  # counts added from here on schedule the next flush
        await self.flush()

    def _increments(
        self,
        platform: str,
        user_id: str,
        outcome: Outcome,
        error_code: str | None,
        audio_seconds: float,
        synthesis_seconds: float,
        day: dt.date | None,
        cloned: bool,
    ) -> tuple[Counter[tuple[str, str]], dict[str, dt.datetime]]:
        """One request's increments by (key, field), and when each key expires."""
        keys.check_field("platform", platform)
        keys.check_field("user_id", user_id)
        outcome_field = _OUTCOME_FIELD[outcome]
        day = day or utc_today()
        expire_at = self._expire_at(day)
        counters = {
            "requests": 1,
            outcome_field: 1,
            "audio_ms": round(max(audio_seconds, 0.0) * 1000),
            "synthesis_ms": round(max(synthesis_seconds, 0.0) * 1000),
            "cloned": int(cloned),
        }
        day_key = keys.usage_day(day.isoformat())
        users_key = keys.usage_users(day.isoformat())
        user = f"{platform}:{user_id}"
        increments: Counter[tuple[str, str]] = Counter()
        for counter, value in counters.items():
            if value:
                increments[day_key, counter] += value
                increments[day_key, f"platform{_SEP}{platform}{_SEP}{counter}"] += value
                increments[users_key, f"{user}{_SEP}{counter}"] += value
        if outcome == "error":
            code = (error_code or "unknown").replace(_SEP, "_")
            increments[day_key, f"error{_SEP}{code}"] += 1
            increments[day_key, f"{_PLATFORM_ERROR}{_SEP}{platform}{_SEP}{code}"] += 1
        return increments, {day_key: expire_at, users_key: expire_at}

    async def _write(
        self, increments: Counter[tuple[str, str]], expiries: dict[str, dt.datetime]
    ) -> None:
        """One pipelined round trip of ``HINCRBY``s and ``EXPIREAT``s; never raises for Redis."""
        pipe = self._redis.pipeline(transaction=False)
        for (key, name), value in increments.items():
            pipe.hincrby(key, name, value)
        for key, expire_at in expiries.items():
            pipe.expireat(key, expire_at)
        await self.metrics.guarded("usage record", pipe.execute, when_down=None)

    async def forget_user(self, platform: str, user_id: str) -> int:
        """Drop the user's per-user counts from every retained day; returns fields removed.

        The per-day totals keep their (anonymous) share.
        """
        keys.check_field("platform", platform)
        keys.check_field("user_id", user_id)
        user = f"{platform}:{user_id}"
        fields = [f"{user}{_SEP}{counter}" for counter in _COUNTERS]
        today = utc_today()
        pipe = self._redis.pipeline(transaction=False)
        for back in range(self._settings.usage_retention_days + 2):
            pipe.hdel(keys.usage_users((today - dt.timedelta(days=back)).isoformat()), *fields)
        removed = await self.metrics.required(
            "usage forget",
            pipe.execute,
            unavailable="usage counts cannot be forgotten right now",
            always_try=True,  # a forget the user asked for is tried even with the breaker open
        )
        return int(sum(removed))


class UsageReader:
    """Reads for the admin endpoint; these raise on a Redis failure (the endpoint says so)."""

    def __init__(self, redis: RedisClient, settings: StorageSettings) -> None:
        self._redis = redis
        self._settings = settings

    async def summary(self, from_day: dt.date, to_day: dt.date) -> UsageSummary:
        days = list(_days(from_day, to_day))
        pipe = self._redis.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(keys.usage_day(day.isoformat()))
        hashes = await pipe.execute()
        totals = UsageCounts()
        per_day: list[tuple[dt.date, UsageCounts]] = []
        by_platform: dict[str, UsageCounts] = {}
        platform_days: dict[str, dict[dt.date, UsageCounts]] = {}
        errors: Counter[str] = Counter()
        platform_errors: dict[str, Counter[str]] = {}
        for day, raw in zip(days, hashes, strict=True):
            counts = UsageCounts()
            for name, value in raw.items():
                scope, _, counter = keys.as_text(name).rpartition(_SEP)
                amount = int(value)
                if not scope:
                    counts.add(counter, amount)
                elif scope.startswith(f"platform{_SEP}"):
                    platform = scope.removeprefix(f"platform{_SEP}")
                    by_platform.setdefault(platform, UsageCounts()).add(counter, amount)
                    on_day = platform_days.setdefault(platform, {})
                    on_day.setdefault(day, UsageCounts()).add(counter, amount)
                elif scope.startswith(f"{_PLATFORM_ERROR}{_SEP}"):
                    platform = scope.removeprefix(f"{_PLATFORM_ERROR}{_SEP}")
                    platform_errors.setdefault(platform, Counter())[counter] += amount
                elif scope == "error":
                    errors[counter] += amount
            totals.merge(counts)
            per_day.append((day, counts))
        return UsageSummary(
            from_day=from_day,
            to_day=to_day,
            totals=totals,
            per_day=per_day,
            by_platform=dict(sorted(by_platform.items())),
            errors_by_code=dict(errors.most_common()),
            price_per_gpu_second=self._settings.price_per_gpu_second,
            errors_by_platform={
                platform: dict(codes.most_common())
                for platform, codes in sorted(platform_errors.items())
            },
            per_day_by_platform={
                platform: [(day, on_day.get(day, UsageCounts())) for day in days]
                for platform, on_day in sorted(platform_days.items())
            },
        )

    async def top_users(self, from_day: dt.date, to_day: dt.date, n: int = 10) -> list[UserUsage]:
        """The ``n`` users with the most requests over the days (ties: more GPU time first)."""
        days = list(_days(from_day, to_day))
        pipe = self._redis.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(keys.usage_users(day.isoformat()))
        users: dict[str, UsageCounts] = {}
        for raw in await pipe.execute():
            for name, value in raw.items():
                user, _, counter = keys.as_text(name).rpartition(_SEP)
                users.setdefault(user, UsageCounts()).add(counter, int(value))
        ranked = sorted(
            users.items(), key=lambda item: (-item[1].requests, -item[1].synthesis_ms, item[0])
        )
        result = []
        for user, counts in ranked[: max(n, 0)]:
            platform, _, user_id = user.partition(":")
            result.append(UserUsage(platform, user_id, counts))
        return result
