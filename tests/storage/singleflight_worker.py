"""One bot-like process for the cross-process single-flight test (and the benchmark).

    python -m tests.storage.singleflight_worker REDIS_URL REQUESTS [CACHES]

Starts ``REQUESTS`` identical ``get_or_create`` calls, spread over ``CACHES`` independent
``AudioCache`` objects (each its own connection pool), once the test sets ``GO_KEY``.
Each synthesis counts itself with ``INCR COUNTER_KEY`` and returns random bytes (after a real
OpusHead page), so equal results can only come from one synthesis. Prints one JSON line:
``[[sha256, from_cache], …]``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from redis.asyncio import Redis

from storage.cache import AudioCache, CachedAudio
from storage.cache_keys import cache_key
from storage.redis import make_client
from tests.audio_bytes import ogg
from tests.redis_fixtures import make_settings
from tts_service.schema import AudioFormat, TTSParams

COUNTER_KEY = "test:singleflight:syntheses"
READY_KEY = "test:singleflight:ready"
GO_KEY = "test:singleflight:go"
SYNTHESIS_S = 0.5
REPO = Path(__file__).resolve().parents[2]
KEY = cache_key(TTSParams(text="the same words, a hundred times"), None, "stand-in", "1")


async def run(url: str, requests: int, caches: int, cluster: bool) -> list[tuple[str, bool]]:
    settings = make_settings(url, redis_cluster=cluster)
    clients = [make_client(url, settings) for _ in range(caches)]
    try:
        audio_caches = [AudioCache(client, settings) for client in clients]
        control = clients[0]
        for client in clients:  # connected, as ``open_redis`` leaves a bot's client
            await client.ping()

        async def synthesize() -> CachedAudio:
            await control.incr(COUNTER_KEY)
            await asyncio.sleep(SYNTHESIS_S)
            return CachedAudio(
                ogg(os.urandom(40_000)), AudioFormat.OGG_OPUS, 2.0, "stand-in", time.time()
            )

        await control.incr(READY_KEY)
        deadline = time.monotonic() + 30
        while not await control.exists(GO_KEY):
            if time.monotonic() > deadline:
                raise TimeoutError("the test never said go")
            await asyncio.sleep(0.002)
        results = await asyncio.gather(
            *(audio_caches[i % caches].get_or_create(KEY, synthesize) for i in range(requests))
        )
        return [
            (hashlib.sha256(made.audio).hexdigest(), from_cache) for made, from_cache in results
        ]
    finally:
        for client in clients:
            await client.aclose()


async def run_processes(
    client: Redis,
    url: str,
    processes: int,
    requests_each: int,
    caches_each: int,
    cluster: bool = False,
) -> tuple[list[list[object]], float]:
    """Start the workers, release them together; their results and the wall time from "go"."""
    await client.delete(COUNTER_KEY, READY_KEY, GO_KEY)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.storage.singleflight_worker",
            url, str(requests_each), str(caches_each), "cluster" if cluster else "single",
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(processes)
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while int(await client.get(READY_KEY) or 0) < processes:
            if any(proc.returncode is not None for proc in procs) or time.monotonic() > deadline:
                raise RuntimeError("a worker did not start")
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        await client.set(GO_KEY, 1)
        outputs = await asyncio.wait_for(
            asyncio.gather(*(proc.communicate() for proc in procs)), timeout=60
        )
        wall_s = time.perf_counter() - started
        results: list[list[object]] = []
        for proc, (out, err) in zip(procs, outputs, strict=True):
            if proc.returncode != 0:
                raise RuntimeError(f"worker failed: {err.decode()}")
            results.extend(json.loads(out))
        return results, wall_s
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


if __name__ == "__main__":
    url, requests = sys.argv[1], int(sys.argv[2])
    caches = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    cluster = len(sys.argv) > 4 and sys.argv[4] == "cluster"
    print(json.dumps(asyncio.run(run(url, requests, caches, cluster))))
