"""What the admin endpoint reads, and where ``saybot run`` is in its life.

``run()`` serves the admin endpoint before it starts anything else, so ``/healthz``
answers from the first moment (a supervisor must not kill a process that is only waiting
for its TTS service). Until every part is up ``AdminLifecycle`` has no ``AdminContext``:
``/readyz`` answers 503 "starting" with the parts still pending, ``/usage`` 503, and the
dashboard shows the same. Once ``run()`` stops, "stopping", so a load balancer drains it.
Admin sessions live in Redis (``AdminLifecycle.redis``), so the login form makes none until
``run()`` has opened it; bearer requests need nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from bots.admin.reports import MonthSpend
from bots.admin.status import PROBE_TIMEOUT_S, RUNNING, STARTING, STOPPING, Readiness
from bots.metrics import ProcessMetrics
from bots.say import SayFlow
from bots.tts_client import TTSClient
from storage.client import RedisClient
from storage.redis import RedisHandle
from storage.usage import UsageReader


@dataclass(frozen=True)
class AdminContext:
    """What the admin endpoint reads (and never changes)."""

    redis: RedisHandle
    tts: TTSClient
    usage: UsageReader
    metrics: ProcessMetrics
    platforms: Mapping[str, Callable[[], bool]]  # name → connected?, as start_adapters returns
    probe_timeout_s: float = PROBE_TIMEOUT_S
    spend: MonthSpend | None = None  # this month's GPU spending and its cap
    flow: SayFlow | None = None  # the playground speaks through it (None: no playground)


class AdminLifecycle:
    """Starting (parts pending) → running (an ``AdminContext``) → stopping."""

    def __init__(self, metrics: ProcessMetrics, parts: Iterable[str]) -> None:
        self.metrics = metrics  # exists before any part: /metrics answers while starting
        self._pending = list(parts)
        self._context: AdminContext | None = None
        self._redis: RedisClient | None = None
        self._stopping = False

    @classmethod
    def running(cls, context: AdminContext) -> AdminLifecycle:
        """A lifecycle whose parts are all up already (tests, or an app built late)."""
        lifecycle = cls(context.metrics, ())
        lifecycle.started(context)
        return lifecycle

    def part_started(self, name: str) -> None:
        if name in self._pending:
            self._pending.remove(name)

    def started(self, context: AdminContext) -> None:
        if context.metrics is not self.metrics:
            raise ValueError("the context must carry the lifecycle's own ProcessMetrics")
        self._pending.clear()
        self._context = context

    def stopping(self) -> None:
        self._stopping = True

    @property
    def phase(self) -> str:
        if self._stopping:
            return STOPPING
        return RUNNING if self._context is not None else STARTING

    def redis_opened(self, client: RedisClient) -> None:
        """Redis is up: admin sessions and the login throttle may use it from now on, while
        the other parts are still starting."""
        self._redis = client

    @property
    def redis(self) -> RedisClient | None:
        """The Redis client once ``run()`` opened it, kept while it stops (the admin sessions
        and login throttle live there); None before."""
        if self._context is not None:
            return self._context.redis.client
        return self._redis

    @property
    def context(self) -> AdminContext | None:
        """The parts to probe and read; None while starting or stopping."""
        return self._context if self.phase == RUNNING else None

    def not_running(self) -> Readiness:
        """What ``/readyz`` says without probing anything, while starting or stopping."""
        return Readiness.not_running(self.phase, list(self._pending))
