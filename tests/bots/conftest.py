"""Bot tests run the whole path over a real Valkey; fixtures from ``tests.redis_fixtures``.

The fixtures here are the ones the adapters' tests share: a running TTS service (Piper) per
module and storage settings with rate limiting off.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage.settings import StorageSettings
from tests.bots.harness import Service, running_service
from tests.redis_fixtures import (  # noqa: F401  (pytest finds fixtures by name)
    redis_client,
    storage_settings,
    valkey_server,
    valkey_url,
)
from tts_service.engines.piper import PiperEngine


@pytest.fixture(scope="module")
def service(piper_engine: PiperEngine) -> Iterator[Service]:
    """The real TTS service over Piper, one per test module."""
    with running_service(piper_engine) as running:
        yield running


@pytest.fixture
def open_storage(
    storage_settings: StorageSettings,  # noqa: F811 - the fixture imported above, asked for by name
) -> StorageSettings:
    """Rate limiting off: most tests send several requests as one user."""
    return storage_settings.model_copy(update={"ratelimit_enabled": False})
