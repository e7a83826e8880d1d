"""Sending the one reply: tried again where it cannot have arrived, never where it may have.

A finished answer must not turn into "something went wrong" because of a blip. Telegram
either never got the request (the connection could not be made, the pool had no room),
answered that it did not take it (429 with ``retry_after``, a 5xx), or may have taken it
and only its answer was lost (a read timeout, a connection dropped mid-answer). The first
two are sent again, a bounded number of times; the third is not (no duplicate voice
notes): it is logged and counted, and no error reply follows that could make a second one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from telegram import Message
from telegram.error import BadRequest, NetworkError, RetryAfter

log = logging.getLogger(__name__)

# Failures before a byte of the request reached Telegram (what PTB's NetworkError wraps).
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 4
    backoff_base_s: float = 0.5
    max_retry_after_s: float = 30.0  # a longer flood wait is not worth holding the reply for


@dataclass
class DeliveryCounts:
    """What became of replies that did not go through at once (read by the metrics)."""

    retried: int = 0
    maybe_lost: int = 0  # may have arrived; not sent again


def _not_delivered(error: NetworkError) -> bool:
    """Telegram cannot have taken this request: it never left, or Telegram answered a 5xx
    (a NetworkError raised for an HTTP answer has no transport error behind it)."""
    cause = error.__cause__
    return isinstance(cause, NOT_SENT) or cause is None


async def deliver(
    send: Callable[[], Awaitable[Message]],
    where: str,
    counts: DeliveryCounts,
    policy: DeliveryPolicy = DeliveryPolicy(),
) -> Message | None:
    """``send()``'s message; None when it may have arrived but its answer was lost.
    Raises what cannot be helped by sending again (a bad request, a blocked bot)."""
    for attempt in range(policy.max_attempts):
        last = attempt == policy.max_attempts - 1
        try:
            return await send()
        except BadRequest:
            raise  # a NetworkError to PTB, but Telegram read and refused it: again fails too
        except RetryAfter as exc:
            wait_s = _seconds(exc.retry_after)
            if last or wait_s > policy.max_retry_after_s:
                raise
            await asyncio.sleep(wait_s)
        except NetworkError as exc:
            if not _not_delivered(exc):
                counts.maybe_lost += 1
                log.warning(
                    "the reply to %s may have arrived, so no error reply follows (%s)",
                    where,
                    exc.message,
                )
                return None
            if last:
                raise
            await asyncio.sleep(random.uniform(0, policy.backoff_base_s * 2**attempt))
        counts.retried += 1
        log.info("sending the reply to %s again (attempt %d)", where, attempt + 2)
    raise AssertionError("unreachable: the loop returns or raises")


def _seconds(retry_after: int | dt.timedelta) -> float:
    if isinstance(retry_after, dt.timedelta):
        return retry_after.total_seconds()
    return float(retry_after)
