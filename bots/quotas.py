"""Spending limits: a public bot on a GPU can run up a bill.

Three limits, each off at 0: GPU seconds a day per user (``QUOTA_USER_GPU_S_PER_DAY``), per
community (``QUOTA_SERVER_GPU_S_PER_DAY``, which a community's admins may lower with
``/settings quota``, never raise), and the operator's budget in dollars a month
(``GPU_BUDGET_USD_PER_MONTH``), turned into GPU seconds with the price the admin dashboard's
cost estimate uses (``PRICE_PER_GPU_SECOND``; at a price of 0 the budget cannot be reached).

What counts is the engine's own synthesis time as the service reports it
(``X-Synthesis-Seconds``), for each synthesis a GPU engine really ran: it is added where the
synthesis ends, so one that goes on after its asker left (the stand-in voice answered) still
counts. Cache hits cost nothing. Which engines cost is decided here, by name: ``CPU_ENGINES``
run on the bot's own CPU (Piper); any other engine is taken to run on a paid GPU, so an engine
the bots do not know is never free by mistake.

Limits are checked on a cache miss, before the synthesis (cached audio is always answered),
so concurrent misses may overshoot a limit by one synthesis each. Daily limits reset at
midnight UTC, the budget on the first of the month (UTC).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bots.errors import QuotaExceeded
from bots.requests import SayRequest
from storage.chat_settings import ChatSettings
from storage.spend import SpendLedger, Spent, utc_now

CPU_ENGINES = frozenset({"piper"})


def costs_gpu(engine_name: str) -> bool:
    """Whether a synthesis by this engine is paid GPU time."""
    return engine_name not in CPU_ENGINES


def next_midnight(now: dt.datetime) -> dt.datetime:
    return dt.datetime.combine(now.astimezone(dt.UTC).date(), dt.time(), dt.UTC) + dt.timedelta(
        days=1
    )


def first_of_next_month(now: dt.datetime) -> dt.datetime:
    today = now.astimezone(dt.UTC).date()
    year, month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
    return dt.datetime(year, month, 1, tzinfo=dt.UTC)


def capped(own: float | None, operator: float) -> float:
    """A community's own limit under the operator's (0 = no limit)."""
    if not own:
        return operator
    return min(own, operator) if operator else own


@dataclass(frozen=True)
class QuotaLimits:
    """The operator's limits; 0 means none."""

    user_s_per_day: float = 0.0
    server_s_per_day: float = 0.0
    budget_usd_per_month: float = 0.0
    price_per_gpu_second: float = 0.0

    @property
    def month_s(self) -> float:
        """The budget in GPU seconds (0: no budget, or no price to reach it with)."""
        if not self.budget_usd_per_month or not self.price_per_gpu_second:
            return 0.0
        return self.budget_usd_per_month / self.price_per_gpu_second

    def server_s(self, chat: ChatSettings) -> float:
        return capped(chat.quota_s, self.server_s_per_day)

    def exceeded(
        self, spent: Spent, chat: ChatSettings, in_community: bool, now: dt.datetime
    ) -> QuotaExceeded | None:
        """The limit that is spent, the one that lasts longest first; None if none is."""
        if self.month_s and spent.month_s >= self.month_s:
            return QuotaExceeded("budget", first_of_next_month(now))
        server_s = self.server_s(chat)
        if in_community and server_s and spent.server_s >= server_s:
            return QuotaExceeded("server", next_midnight(now))
        if self.user_s_per_day and spent.user_s >= self.user_s_per_day:
            return QuotaExceeded("user", next_midnight(now))
        return None


@dataclass(frozen=True)
class Quotas:
    limits: QuotaLimits
    ledger: SpendLedger

    async def check(self, request: SayRequest, chat: ChatSettings, engine_name: str) -> None:
        """``QuotaExceeded`` if a limit that applies to ``request`` is spent; nothing to read
        when no limit is set or the engine costs nothing."""
        limits = self.limits
        if not costs_gpu(engine_name) or not (
            limits.month_s or limits.user_s_per_day or limits.server_s(chat)
        ):
            return
        now = utc_now()
        spent = await self.ledger.spent(request.platform, request.user_id, request.server_id, now)
        over = limits.exceeded(spent, chat, request.server_id is not None, now)
        if over is not None:
            raise over

    async def count(self, request: SayRequest, engine_name: str, seconds: float) -> None:
        """A synthesis ``engine_name`` ran for ``request``, for ``seconds`` (never raises)."""
        if costs_gpu(engine_name):
            await self.ledger.add(request.platform, request.user_id, request.server_id, seconds)


def day_month(over: QuotaExceeded) -> str:
    """When the limit resets, as "1 August"."""
    return f"{over.resets_at.day} {over.resets_at:%B}"


def quota_note(over: QuotaExceeded) -> str:
    """The stand-in voice's caption note when a limit sent it."""
    if over.scope == "budget":
        return f"this month's GPU budget is spent; the usual voice is back {day_month(over)}"
    return "today's GPU time is spent; the usual voice is back at midnight UTC"
