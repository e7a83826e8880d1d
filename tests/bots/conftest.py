"""Bot tests run the whole path over a real Valkey; fixtures from ``tests.redis_fixtures``."""

from __future__ import annotations

from tests.redis_fixtures import (  # noqa: F401  (pytest finds fixtures by name)
    redis_client,
    storage_settings,
    valkey_server,
    valkey_url,
)
