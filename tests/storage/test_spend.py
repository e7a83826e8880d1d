"""GPU seconds spent: per user and community per UTC day, everyone per month, with TTLs."""

from __future__ import annotations

import datetime as dt

import pytest
from redis.asyncio import Redis

from storage import keys
from storage.redis import make_client
from storage.spend import SpendLedger, Spent
from tests.redis_fixtures import make_settings, start_valkey

NOW = dt.datetime(2025, 3, 31, 23, 59, tzinfo=dt.UTC)
NEXT_DAY = NOW + dt.timedelta(minutes=2)  # another day, another month


async def test_seconds_add_up_per_user_community_day_and_month(redis_client: Redis) -> None:
    ledger = SpendLedger(redis_client)
    await ledger.add("discord", "1", "900", 1.25, NOW)
    await ledger.add("discord", "2", "900", 0.5, NOW)
    await ledger.add("discord", "1", None, 2.0, NOW)  # a DM: no community
    await ledger.add("discord", "1", "900", 0.0, NOW)  # nothing spent: nothing written
    assert await ledger.spent("discord", "1", "900", NOW) == Spent(3.25, 1.75, 3.75)
    assert await ledger.spent("discord", "1", None, NOW) == Spent(3.25, 0.0, 3.75)
    assert await ledger.spent("discord", "1", "900", NEXT_DAY) == Spent()
    assert await ledger.month_seconds("2025-03") == pytest.approx(3.75)
    assert await ledger.month_seconds("2025-04") == 0.0
    day = await redis_client.ttl(keys.spend_user_day("discord", "1", "2025-03-31"))
    month = await redis_client.ttl(keys.spend_month("2025-03"))
    server = await redis_client.ttl(keys.spend_server_day("discord", "900", "2025-03-31"))
    assert 0 < day <= keys.SPEND_DAY_TTL_S and 0 < server <= keys.SPEND_DAY_TTL_S
    assert keys.SPEND_DAY_TTL_S < month <= keys.SPEND_MONTH_TTL_S


async def test_with_redis_down_nothing_is_counted_and_nothing_raises() -> None:
    server = start_valkey()
    url = f"redis://127.0.0.1:{server.port}"
    redis = make_client(url, make_settings(url))
    ledger = SpendLedger(redis)
    try:
        server.stop()
        await ledger.add("telegram", "1", None, 1.0, NOW)
        assert await ledger.spent("telegram", "1", None, NOW) == Spent()
        assert ledger.metrics.redis_errors >= 1
    finally:
        await redis.aclose()
