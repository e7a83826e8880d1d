"""The usage counters as JSON: totals, per-day series, per platform, errors, top users.

Ids only: per-user rows carry the platform and the platform's user id, never a name or a
message. Seconds are floats (stored as exact milliseconds); the cost is GPU seconds × the
configured price.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from storage.usage import MAX_SUMMARY_DAYS, UsageCounts, UsageSummary, UserUsage, utc_today

CURRENCY = "USD"  # of StorageSettings.price_per_gpu_second
DEFAULT_DAYS = 14
COST_DECIMALS = 8  # prices are fractions of a cent per second


class InvalidRange(ValueError):
    """The requested days are not a usable range; the message says why."""


def day_range(
    from_day: dt.date | None, to_day: dt.date | None, default_days: int = DEFAULT_DAYS
) -> tuple[dt.date, dt.date]:
    """Fill in missing ends (``to`` = today UTC; ``from`` = ``default_days`` back) and check."""
    to_day = to_day or utc_today()
    from_day = from_day or to_day - dt.timedelta(days=default_days - 1)
    if to_day < from_day:
        raise InvalidRange(f"'to' ({to_day}) is before 'from' ({from_day})")
    if (to_day - from_day).days >= MAX_SUMMARY_DAYS:
        raise InvalidRange(f"a range covers at most {MAX_SUMMARY_DAYS} days")
    return from_day, to_day


def estimated_cost(counts: UsageCounts, price_per_gpu_second: float) -> float:
    return round(counts.synthesis_seconds * price_per_gpu_second, COST_DECIMALS)


def counts_json(counts: UsageCounts, price_per_gpu_second: float) -> dict[str, Any]:
    return {
        "requests": counts.requests,
        "hits": counts.hits,
        "misses": counts.misses,
        "errors": counts.errors,
        "hit_ratio": counts.hit_ratio,
        "audio_seconds": counts.audio_seconds,
        "synthesis_seconds": counts.synthesis_seconds,
        "estimated_cost": estimated_cost(counts, price_per_gpu_second),
    }


def per_day_json(
    series: list[tuple[dt.date, UsageCounts]], price_per_gpu_second: float
) -> list[dict[str, Any]]:
    return [
        {"day": day.isoformat(), **counts_json(counts, price_per_gpu_second)}
        for day, counts in series
    ]


def usage_json(summary: UsageSummary, top_users: list[UserUsage]) -> dict[str, Any]:
    """The body of ``GET /usage``."""
    price = summary.price_per_gpu_second
    return {
        "from": summary.from_day.isoformat(),
        "to": summary.to_day.isoformat(),
        "currency": CURRENCY,
        "price_per_gpu_second": price,
        "totals": counts_json(summary.totals, price),
        "errors_by_code": summary.errors_by_code,
        "per_day": per_day_json(summary.per_day, price),
        "by_platform": {
            platform: {
                **counts_json(counts, price),
                "errors_by_code": summary.errors_by_platform.get(platform, {}),
                "per_day": per_day_json(summary.per_day_by_platform.get(platform, []), price),
            }
            for platform, counts in summary.by_platform.items()
        },
        "top_users": [
            {"platform": user.platform, "user_id": user.user_id, **counts_json(user.counts, price)}
            for user in top_users
        ],
    }
