"""Stopping with chat requests in flight: wait for them (bounded), then give up on the rest.

One budget bounds the whole stop (``SHUTDOWN_TIMEOUT_S``; Docker waits 10 s and Kubernetes
30 s before killing): new work is refused at once, requests in flight are waited for
until only the time to tell the rest and to close is left, those still running are
cancelled and their users told, background syntheses are cancelled, and everything
closes. Both adapters stop the same way; only how they tell a user "I had to restart"
differs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from typing import Any

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 25.0  # the whole stop, signal to exit
# How long telling the user of a given-up request may take.
GAVE_UP_TIMEOUT_S = 5.0
# Closing the clients (Redis, HTTP pools, the gateway) after everything else.
CLOSE_RESERVE_S = 2.0
# What is left of the budget to wait for requests in flight.
DRAIN_TIMEOUT_S = SHUTDOWN_TIMEOUT_S - GAVE_UP_TIMEOUT_S - CLOSE_RESERVE_S


class ShutdownClock:
    """The one deadline of a stop, started when the stop is asked for; each step takes
    what is left of it, less what the steps after it need."""

    def __init__(self, total_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        self.total_s = total_s
        self._deadline: float | None = None

    def begin(self) -> None:
        if self._deadline is None:
            self._deadline = time.monotonic() + self.total_s

    def left(self, reserve_s: float = 0.0) -> float:
        """Seconds left for this step, keeping ``reserve_s`` for the ones after it."""
        self.begin()  # a stop nobody announced (a failed start) starts the clock too
        assert self._deadline is not None
        return max(0.0, self._deadline - time.monotonic() - reserve_s)

    def drain_s(self) -> float:
        """For waiting on requests in flight: all but the time to tell the rest and close."""
        return self.left(GAVE_UP_TIMEOUT_S + CLOSE_RESERVE_S)


async def wait_for_in_flight(
    in_flight: Collection[asyncio.Task[Any]], timeout_s: float, what: str
) -> set[asyncio.Task[Any]]:
    """Wait until ``in_flight`` is empty (it may grow meanwhile: requests turned away join
    it too), at most ``timeout_s``; returns the tasks still running then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    if in_flight:
        log.info("waiting for %d %s in flight", len(in_flight), what)
    while in_flight and loop.time() < deadline:
        await asyncio.wait(set(in_flight), timeout=deadline - loop.time())
    unfinished = {task for task in in_flight if not task.done()}
    if unfinished:
        log.warning("%d %s did not finish in time", len(unfinished), what)
    return unfinished


async def cancel_and_wait(tasks: set[asyncio.Task[Any]], timeout_s: float) -> None:
    """Cancel ``tasks`` and give them ``timeout_s`` to end (a handler may still reply)."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout_s)
