"""The type of a Redis connection: one server (or a Sentinel-managed primary), or a cluster.

``storage.redis.make_client`` picks the class from the settings; every storage component
takes either, because every operation it sends is slot-safe (see ``storage.keys``).
"""

from __future__ import annotations

from typing import TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

RedisClient: TypeAlias = Redis | RedisCluster
CLIENT_TYPES = (Redis, RedisCluster)  # for isinstance
