"""Storage tests run against a real Valkey; the fixtures live in ``tests.redis_fixtures``.

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
from tests.redis_fixtures import (  # noqa: F401  (pytest finds fixtures by name)
    make_settings,
    redis_client,
    start_valkey,
    storage_settings,
    valkey_server,
    valkey_url,
)


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
