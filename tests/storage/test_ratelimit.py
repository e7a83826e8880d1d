"""Token buckets: burst, refill, retry-after, per-platform rules, admins, shared by processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from storage.ratelimit import RateLimiter
from storage.redis import make_client
from storage.settings import RateRule, StorageSettings

PER_MINUTE = 600.0  # 10 a second: refills fast enough for a test to watch


@pytest.fixture
def settings(storage_settings: StorageSettings) -> StorageSettings:
    return storage_settings.model_copy(
        update={
            "ratelimit_per_minute": PER_MINUTE,
            "ratelimit_burst": 3,
            "ratelimit_platforms": {"discord": RateRule(per_minute=PER_MINUTE, burst=5)},
            "ratelimit_admins": frozenset({"telegram:42"}),
        }
    )


@pytest.fixture
async def other_client(storage_settings: StorageSettings) -> AsyncIterator[Redis]:
    """A second connection pool, connected to every node first as ``open_redis`` connects the
    product's (a burst on a cluster client that never connected hits redis-py#4287: a
    connection half-made by one command is used by another)."""
    assert storage_settings.redis_url is not None
    client = make_client(storage_settings.redis_url.get_secret_value(), storage_settings)
    if isinstance(client, RedisCluster):
        await client.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        await client.ping()
    yield client
    await client.aclose()


async def allowed_in_a_row(limiter: RateLimiter, platform: str, user_id: str, tries: int) -> int:
    decisions = [await limiter.check(platform, user_id) for _ in range(tries)]
    return sum(d.allowed for d in decisions)


async def test_burst_then_denied_with_a_truthful_retry_after(
    redis_client: Redis, settings: StorageSettings
) -> None:
    limiter = RateLimiter(redis_client, settings)
    for _ in range(3):
        assert (await limiter.check("telegram", "1")).allowed
    denied = await limiter.check("telegram", "1")
    assert not denied.allowed and not denied.degraded
    assert 0.01 < denied.retry_after_s <= 0.1
    assert limiter.metrics.ratelimit_denied == 1
    await asyncio.sleep(denied.retry_after_s + 0.01)
    assert (await limiter.check("telegram", "1")).allowed, "allowed once retry_after has passed"
    assert not (await limiter.check("telegram", "1")).allowed


async def test_buckets_refill_up_to_the_burst_only(
    redis_client: Redis, settings: StorageSettings
) -> None:
    limiter = RateLimiter(redis_client, settings)
    assert await allowed_in_a_row(limiter, "telegram", "1", 3) == 3
    await asyncio.sleep(1.0)  # 10 tokens' worth of time, but the bucket holds 3
    assert await allowed_in_a_row(limiter, "telegram", "1", 6) == 3


async def test_users_and_platforms_have_their_own_buckets(
    redis_client: Redis, settings: StorageSettings
) -> None:
    limiter = RateLimiter(redis_client, settings)
    assert await allowed_in_a_row(limiter, "telegram", "1", 5) == 3
    assert await allowed_in_a_row(limiter, "telegram", "2", 5) == 3
    assert await allowed_in_a_row(limiter, "discord", "1", 8) == 5, "discord's own burst"


async def test_admins_bypass_and_the_limiter_can_be_disabled(
    redis_client: Redis, settings: StorageSettings
) -> None:
    limiter = RateLimiter(redis_client, settings)
    assert await allowed_in_a_row(limiter, "telegram", "42", 20) == 20
    assert await allowed_in_a_row(limiter, "discord", "42", 20) == 5, "admin on telegram only"
    off = RateLimiter(redis_client, settings.model_copy(update={"ratelimit_enabled": False}))
    assert await allowed_in_a_row(off, "telegram", "1", 20) == 20


async def test_processes_share_one_bucket(
    redis_client: Redis, other_client: Redis, settings: StorageSettings
) -> None:
    """Two limiters on two connection pools, hammering at once: still exactly the burst.

    A token a minute: the burst is all there is, however long the first calls of a fresh
    client take (a cluster client first learns the slots, then loads the script)."""
    slow = settings.model_copy(update={"ratelimit_per_minute": 1.0})
    first, second = RateLimiter(redis_client, slow), RateLimiter(other_client, slow)
    decisions = await asyncio.gather(*(lim.check("telegram", "1") for lim in (first, second) * 10))
    assert sum(d.allowed for d in decisions) == 3


async def test_buckets_expire_once_full_again(
    redis_client: Redis, settings: StorageSettings
) -> None:
    limiter = RateLimiter(redis_client, settings)
    await limiter.check("telegram", "1")
    ttl_ms = await redis_client.pttl("saybot:v1:rate:telegram:1")
    assert 0 < ttl_ms <= 3 / 10 * 1000 + 1000


async def test_a_communitys_rule_overrides_the_platforms_even_when_disabled(
    redis_client: Redis, settings: StorageSettings
) -> None:
    off = settings.model_copy(update={"ratelimit_enabled": False})
    limiter = RateLimiter(redis_client, off)
    assert await allowed_in_a_row(limiter, "telegram", "7", 5) == 5  # the bot's own: off
    one = RateRule(per_minute=1, burst=1)
    assert (await limiter.check("telegram", "8", one)).allowed
    denied = await limiter.check("telegram", "8", one)
    assert not denied.allowed and 55 < denied.retry_after_s <= 60
    assert (await limiter.check("telegram", "42", one)).allowed  # the allow-list still passes
    assert (await limiter.check("telegram", "42", one)).allowed
