"""``RedisCluster`` whose callers wait for a free connection instead of failing.

redis-py's cluster client gives each node at most ``max_connections`` and answers one more
concurrent command with ``MaxConnectionsError``; its pipeline then treats that like a node
failure: it closes the whole client, cutting the connections of every command in flight,
and resends what got no answer (a counter pipeline that had already run counts twice).
A burst of chat messages must queue instead, as it does on one server's
``BlockingConnectionPool``: a semaphore of ``max_connections`` permits in front of every
command and pipeline (each holds at most one connection per node) does that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from redis.asyncio.cluster import ClusterPipeline, RedisCluster

T = TypeVar("T")

# A command sent while this task already holds a permit (a redirect resent inside a pipeline,
# a script's EVALSHA) takes no second one: waiting on itself could deadlock.
_holding: ContextVar[bool] = ContextVar("saybot_cluster_permit", default=False)


class BoundedRedisCluster(RedisCluster):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._permits = asyncio.Semaphore(int(kwargs.get("max_connections", 100)))

    async def bounded(self, call: Callable[[], Awaitable[T]]) -> T:
        if _holding.get():
            return await call()
        async with self._permits:
            token = _holding.set(True)
            try:
                return await call()
            finally:
                _holding.reset(token)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return await self.bounded(
            lambda: super(BoundedRedisCluster, self).execute_command(*args, **kwargs)
        )

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused there, with its reason
        return _BoundedPipeline(self, transaction)  # type: ignore[abstract]


class _BoundedPipeline(ClusterPipeline):
    def __init__(self, client: BoundedRedisCluster, transaction: bool | None = None) -> None:
        super().__init__(client, transaction)
        self._bounded_client = client

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        run = super().execute
        return await self._bounded_client.bounded(
            lambda: run(raise_on_error=raise_on_error, allow_redirections=allow_redirections)
        )
