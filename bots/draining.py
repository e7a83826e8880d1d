"""Stopping with chat requests in flight: wait for them (bounded), then give up on the rest.

Both adapters stop the same way; only how they tell a user "I had to restart" differs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

log = logging.getLogger(__name__)

# In-flight requests may take a cold GPU's tens of seconds; a stop waits this long for them.
DRAIN_TIMEOUT_S = 60.0
# How long telling the user of a given-up request may take.
GAVE_UP_TIMEOUT_S = 5.0


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
