"""``REDIS_URL=redis+sentinel://[user:password@]host:port[,host:port…]/<service>[/<db>]``:
a client of the primary that the Sentinels name for ``<service>``, for high availability
without cluster mode.

The client asks the Sentinels for the primary's address on every new connection, so after a
failover the next command reaches the new primary (what is in flight fails, and the storage
layer degrades for it as it does for any Redis outage). Credentials in the URL are the
primary's; the Sentinels are asked without any.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel

SCHEME = "redis+sentinel"


class SentinelURLError(ValueError):
    """A ``redis+sentinel://`` URL that names no Sentinel or no service."""


def is_sentinel_url(url: str) -> bool:
    return url.startswith(f"{SCHEME}://")


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, dict[str, Any]]:
    """The Sentinels' addresses, the service name and the primary's connection options."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels: list[tuple[str, int]] = []
    for address in filter(None, hosts.split(",")):
        host, sep, port = address.rpartition(":")
        if not sep or "]" in port:  # no port, or the end of a bare [IPv6] address
            host, port = address, ""
        try:
            sentinels.append((host.strip("[]"), int(port or 26379)))
        except ValueError:
            raise SentinelURLError(f"a Sentinel address is host:port, not {address!r}") from None
    path = [segment for segment in parts.path.split("/") if segment]
    if not sentinels or not path:
        raise SentinelURLError(
            "a Sentinel URL is redis+sentinel://host:port[,host:port…]/<service>[/<db>]"
        )
    options: dict[str, Any] = {}
    if userinfo:
        user, has_password, password = userinfo.partition(":")
        if user:
            options["username"] = unquote(user)
        if has_password:
            options["password"] = unquote(password)
    if len(path) > 1:
        options["db"] = int(path[1])
    return sentinels, unquote(path[0]), options


class SentinelPrimary(Redis):
    """A client of the primary whose ``aclose`` also closes its connections to the Sentinels."""

    sentinels_of: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinels_of is not None:
            for client in self.sentinels_of.sentinels:
                await client.aclose()


def sentinel_client(url: str, max_connections: int, common: dict[str, Any]) -> Redis:
    """A client of the primary of the URL's service (see ``storage.redis.make_client``)."""
    sentinels, service, options = parse_sentinel_url(url)
    timeouts = ("socket_timeout", "socket_connect_timeout")
    sentinel_options = {name: common[name] for name in timeouts if name in common}
    sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_options, **common)  # type: ignore[no-untyped-call]
    client: SentinelPrimary = sentinel.master_for(
        service, redis_class=SentinelPrimary, max_connections=max_connections, **options
    )
    client.sentinels_of = sentinel
    return client
