"""Starting shards as Discord allows: ``/gateway/bot``'s ``session_start_limit``.

Discord lets a bot start ``max_concurrency`` sessions per 5 seconds, one from each rate
limit key (``shard_id % max_concurrency``), and ``remaining`` sessions until
``reset_after``. ``IdentifyPacer`` spaces this process's IDENTIFYs by key;
``check_session_starts`` refuses to start more shards than may still be started, with a
sentence saying when that changes, instead of being disconnected by Discord one by one.
Across processes, start each after the previous one's shards are ready (docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

IDENTIFY_INTERVAL_S = 5.0  # Discord's window for max_concurrency IDENTIFYs


class SessionStartsExhausted(RuntimeError):
    """Discord would refuse the IDENTIFYs: the bot's daily session starts are used up."""


def check_session_starts(shards: int, remaining: int, reset_after_ms: int) -> None:
    if remaining < shards:
        hours = reset_after_ms / 3_600_000
        raise SessionStartsExhausted(
            f"Discord allows {remaining} more session start(s) for this bot token, this "
            f"process needs {shards}; starts reset in {hours:.1f} h (session_start_limit)."
        )


class IdentifyPacer:
    """Waits, before each IDENTIFY, until its rate limit key's last one is 5 s old."""

    def __init__(
        self,
        max_concurrency: int = 1,
        interval_s: float = IDENTIFY_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self.interval_s = interval_s
        self._clock = clock
        self._sleep = sleep
        self._last: dict[int, float] = {}
        self._lock = asyncio.Lock()

    async def wait(self, shard_id: int | None) -> None:
        key = (shard_id or 0) % self.max_concurrency
        async with self._lock:
            last = self._last.get(key)
            if last is not None:
                delay = last + self.interval_s - self._clock()
                if delay > 0:
                    await self._sleep(delay)
            self._last[key] = self._clock()


def shard_ids_of(count: int, chosen: Sequence[int]) -> list[int]:
    """The shards this process runs: ``DISCORD_SHARD_IDS``, or all of them."""
    return list(chosen) if chosen else list(range(count))
