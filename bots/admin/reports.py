"""The usage counters as JSON: totals, per-day series, per platform, errors, top users, and
this month's GPU spending against the operator's budget.

Ids only: per-user rows carry the platform and the platform's user id, never a name or a
message. Seconds are floats (stored as exact milliseconds); the cost is GPU seconds × the
configured price. Counts of cloned requests, consents and forgets are numbers only: never a
clip, a text or who forgot.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from storage.spend import SpendLedger, month_of
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


def cost_of(gpu_seconds: float, price_per_gpu_second: float) -> float:
    return round(gpu_seconds * price_per_gpu_second, COST_DECIMALS)


def estimated_cost(counts: UsageCounts, price_per_gpu_second: float) -> float:
    return cost_of(counts.synthesis_seconds, price_per_gpu_second)


@dataclass(frozen=True)
class MonthSpend:
    """Where this month's GPU seconds are read (``storage.spend``), and the operator's cap."""

    ledger: SpendLedger
    budget_usd: float = 0.0  # GPU_BUDGET_USD_PER_MONTH; 0: none

    async def read(self, now: dt.datetime | None = None) -> MonthSpent:
        month = month_of(now or dt.datetime.now(dt.UTC))
        return MonthSpent(month, await self.ledger.month_seconds(month), self.budget_usd)


@dataclass(frozen=True)
class MonthSpent:
    month: str  # YYYY-MM, UTC
    gpu_seconds: float  # paid GPU engines only (bots.quotas.costs_gpu)
    budget_usd: float  # 0: none

    def cost(self, price_per_gpu_second: float) -> float:
        return cost_of(self.gpu_seconds, price_per_gpu_second)

    def budget_used(self, price_per_gpu_second: float) -> float | None:
        """The share of the budget spent (None without a budget)."""
        if not self.budget_usd:
            return None
        return self.cost(price_per_gpu_second) / self.budget_usd


def spend_json(spent: MonthSpent, price_per_gpu_second: float) -> dict[str, Any]:
    return {
        "month": spent.month,
        "gpu_seconds": spent.gpu_seconds,
        "estimated_cost": spent.cost(price_per_gpu_second),
        "budget": spent.budget_usd or None,
        "budget_used": spent.budget_used(price_per_gpu_second),
    }


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
        "cloned": counts.cloned,
        "consents": counts.consents,
        "forgets": counts.forgets,
    }


def per_day_json(
    series: list[tuple[dt.date, UsageCounts]], price_per_gpu_second: float
) -> list[dict[str, Any]]:
    return [
        {"day": day.isoformat(), **counts_json(counts, price_per_gpu_second)}
        for day, counts in series
    ]


def usage_json(
    summary: UsageSummary, top_users: list[UserUsage], spent: MonthSpent | None = None
) -> dict[str, Any]:
    """The body of ``GET /usage``; ``spend_this_month`` is null where nothing counts it."""
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
        "spend_this_month": spend_json(spent, price) if spent is not None else None,
    }
