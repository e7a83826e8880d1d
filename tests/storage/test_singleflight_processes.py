"""100 concurrent identical requests split over 2 OS processes → exactly 1 synthesis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from storage.settings import StorageSettings
from tests.storage import singleflight_worker as worker


@pytest.mark.timeout(90)
async def test_hundred_requests_over_two_processes_synthesise_once(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    assert storage_settings.redis_url is not None
    results, wall_s = await worker.run_processes(
        redis_client,
        storage_settings.redis_url.get_secret_value(),
        processes=2,
        requests_each=50,
        caches_each=5,
        cluster=storage_settings.redis_cluster,
    )
    assert int(await redis_client.get(worker.COUNTER_KEY) or 0) == 1
    assert len(results) == 100
    assert len({digest for digest, _ in results}) == 1, "every caller got the one synthesis"
    assert sorted(bool(from_cache) for _, from_cache in results) == [False] + [True] * 99
    assert wall_s < worker.SYNTHESIS_S + 5
