"""Storage tests run against a real Valkey; the fixtures live in ``tests.redis_fixtures``."""

from __future__ import annotations

from tests.redis_fixtures import (  # noqa: F401  (pytest finds fixtures by name)
    redis_client,
    storage_settings,
    valkey_server,
    valkey_url,
)
