"""A primary of a 3-primary cluster dies mid-run: what lives in its slots degrades exactly as
everything does when a single Redis dies (``test_outage``), the other slots keep serving, and
all recovers when it is back.

No replicas, so nothing fails over: the dead primary's slots are simply down. A private
cluster, so the session one stays whole for the other tests.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from redis.crc import key_slot

from storage import keys
from storage.cache_keys import cache_key
from storage.errors import StorageUnavailable
from storage.ratelimit import FAIL_CLOSED_RETRY_AFTER_S
from storage.redis import open_redis
from tests.audio_bytes import ogg
from tests.redis_fixtures import make_settings
from tests.storage.test_outage import Stores, made, quickly  # the same bound and answers
from tests.valkey_cluster import OUTAGE_NODE_TIMEOUT_MS, SLOTS, start_cluster
from tts_service.schema import TTSParams

PRIMARIES = 3


def node_of(key: str) -> int:
    """Which primary serves ``key`` (the fixture gives each an equal range of slots)."""
    return key_slot(key.encode()) * PRIMARIES // SLOTS


def first(predicate: Callable[[str], bool], candidates: itertools.count[int]) -> str:
    return next(str(n) for n in candidates if predicate(str(n)))


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 15) -> None:
    """The breaker lets one probe through per cooldown: poll until one succeeds."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@pytest.mark.timeout(90)
async def test_a_dead_primary_degrades_its_slots_like_a_dead_redis(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path, PRIMARIES, node_timeout_ms=OUTAGE_NODE_TIMEOUT_MS)
    settings = make_settings(cluster.url, redis_cluster=True)
    handle = await open_redis(settings)
    stores = Stores.over(handle.client, settings)
    metrics = stores.cache.metrics  # shared by all of them
    cache, voices, usage = stores.cache, stores.voices, stores.usage
    open_limiter, closed_limiter = stores.open_limiter, stores.closed_limiter
    key = cache_key(TTSParams(text="still here?"), None, "piper", "1")
    dead = node_of(key)
    # A user whose bucket and default voice, and a voice whose keys, live on the primary that
    # dies; an answer that lives elsewhere. (A user's keys carry no common hash tag: only
    # pipelines touch several of them, which the cluster client splits by node.)
    user = first(
        lambda u: (
            node_of(keys.rate_bucket("telegram", u)) == dead
            and node_of(keys.user_default("telegram", u)) == dead
        ),
        itertools.count(1),
    )
    voice = first(lambda v: node_of(keys.voice_clip(v)) == dead, itertools.count(10**16))
    elsewhere = cache_key(
        TTSParams(text=first(lambda t: node_of(cache_key(TTSParams(text=t), None, "piper", "1"))
                             != dead, itertools.count())),
        None, "piper", "1",
    )  # fmt: skip
    try:
        assert await cache.put(key, made("before"))
        await voices.save("telegram", user, voice, b"clip")

        cluster.kill(dead)  # SIGKILL: no goodbye to clients or peers
        assert not await quickly(handle.ping())

        assert await quickly(cache.get(key)) is None
        assert not metrics.redis_up, metrics
        assert await quickly(cache.put(key, made("during"))) is False
        entry, from_cache = await quickly(
            cache.get_or_create(key, lambda: asyncio.sleep(0, made("during")))
        )
        assert (entry.audio, from_cache) == (ogg(b"during"), False)
        decision = await quickly(open_limiter.check("telegram", user))
        assert decision.allowed and decision.degraded
        decision = await quickly(closed_limiter.check("telegram", user))
        assert not decision.allowed and decision.retry_after_s == FAIL_CLOSED_RETRY_AFTER_S
        usage.record_soon("telegram", user, "miss", audio_seconds=1.0)
        await quickly(usage.flush())
        assert await quickly(voices.default_voice("telegram", user)) is None
        assert (await quickly(voices.lookup_clip(voice))).clip is None
        with pytest.raises(StorageUnavailable):
            await quickly(voices.save("telegram", user, voice, b"clip"))
        with pytest.raises(StorageUnavailable):
            await quickly(voices.forget("telegram", user))

        # The live primaries keep serving their slots once the breaker lets a probe through.
        await until(lambda: cache.put(elsewhere, made("other")), "the live slots never served")
        assert (await cache.get(elsewhere) or made("")).audio == ogg(b"other")

        await asyncio.to_thread(cluster.restart, dead)  # its slots, empty (no snapshot)
        await until(handle.ping, "the client never reached the restarted primary")
        await until(lambda: cache.put(key, made("after")), "its slots never recovered")
        assert (await cache.get(key) or made("")).audio == ogg(b"after")
        assert (await open_limiter.check("telegram", user)).degraded is False
        assert metrics.redis_up
    finally:
        await handle.aclose()
        cluster.stop()
