"""Storage tests run against a real Valkey; the fixtures live in ``tests.redis_fixtures``.

Every test that takes ``storage_settings`` (or ``redis_client``, built from it) runs twice:
against one server, and against a real 3-primary Valkey cluster (``tests.valkey_cluster``)
through ``RedisCluster``, where any script, transaction or multi-key command whose keys span
two slots fails with CROSSSLOT. Tests that start, stop or reconfigure a server of their own
take ``single_storage_settings`` instead.

``cache_client`` is a client of a second session server, for tests of the audio cache kept
apart from durable data (``CACHE_REDIS_URL``); it is flushed before each test too.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from storage.redis import make_client
from storage.settings import StorageSettings
from tests.redis_fixtures import (  # noqa: F401  (pytest finds fixtures by name)
    make_settings,
    redis_client,
    start_valkey,
    valkey_server,
    valkey_url,
)
from tests.valkey_cluster import ValkeyCluster, running_cluster


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[ValkeyCluster]:
    """Three primaries for the whole session (~2 s to form); stopped at the end."""
    with running_cluster(primaries=3) as cluster:
        yield cluster


@pytest.fixture(params=["single", "cluster"])
def storage_settings(request: pytest.FixtureRequest, valkey_url: str) -> StorageSettings:  # noqa: F811
    """Settings of the session server, then of the session cluster (``REDIS_CLUSTER``)."""
    if request.param == "cluster":
        cluster: ValkeyCluster = request.getfixturevalue("valkey_cluster")
        return make_settings(cluster.url, redis_cluster=True)
    return make_settings(valkey_url)


@pytest.fixture
def single_storage_settings(valkey_url: str) -> StorageSettings:  # noqa: F811
    return make_settings(valkey_url)


@pytest.fixture(scope="session")
def cache_valkey_server() -> Iterator[Any]:
    """A second Valkey for the whole session: the cache server beside the data server."""
    with tempfile.TemporaryDirectory(prefix="saybot-valkey-cache-") as data_dir:
        server = start_valkey(data_dir=Path(data_dir))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
async def cache_client(cache_valkey_server: Any) -> AsyncIterator[Redis]:
    """A client of the cache server, on an empty database."""
    url = f"redis://127.0.0.1:{cache_valkey_server.port}"
    client = make_client(url, make_settings(url))
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()
