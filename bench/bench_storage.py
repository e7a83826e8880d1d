"""Storage against a real embedded Valkey, each figure next to a baseline from the same run.

1. A cache hit of a 40 KB answer through ``AudioCache.get`` vs. a raw ``GET`` of the same
   key on the same client (target ≤ 1.3×). Calls are interleaved so noise hits both alike.
2. Cache-key derivation rate vs. a bare sha256 of the same text.
3. The single-flight test: 100 identical requests over 2 OS processes; wall time from
   "go" vs. the one synthesis it had to wait for, and how many syntheses ran.
4. A cache put of an answer made with a reference voice (indexed under the voice, checked
   against its forget tombstone: two round trips) vs. one in the built-in voice (one ``SET``).

    .venv/bin/python -m bench.bench_storage [--rounds 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from storage.cache import AudioCache, CachedAudio
from storage.cache_keys import cache_key
from storage.redis import make_client
from tests.audio_bytes import OGG_HEAD_PAGE, ogg
from tests.redis_fixtures import make_settings, start_valkey
from tests.storage import singleflight_worker as worker
from tts_service.schema import AudioFormat, TTSParams

TEXT = "The morning train was late again, so Maria walked the last two miles along the river."


async def bench_hit(url: str, rounds: int, value_bytes: int) -> None:
    settings = make_settings(url)
    client = make_client(url, settings)
    try:
        cache = AudioCache(client, settings)
        key = cache_key(TTSParams(text=TEXT), None, "piper", "1")
        entry = CachedAudio(
            ogg(os.urandom(value_bytes - len(OGG_HEAD_PAGE))),
            AudioFormat.OGG_OPUS,
            3.2,
            "piper",
            time.time(),
        )
        assert await cache.put(key, entry)
        for _ in range(200):  # warm-up: connection, allocator
            await client.get(key)
            await cache.get(key)
        raw_s: list[float] = []
        cached_s: list[float] = []
        for _ in range(rounds):
            started = time.perf_counter()
            raw = await client.get(key)
            raw_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            hit = await cache.get(key)
            cached_s.append(time.perf_counter() - started)
            assert raw is not None and hit is not None and hit.audio == entry.audio
    finally:
        await client.aclose()
    raw_p50, hit_p50 = statistics.median(raw_s), statistics.median(cached_s)
    print(f"cache hit, {value_bytes // 1000} KB value, {rounds} rounds interleaved")
    print(f"  raw GET          p50 {raw_p50 * 1e6:7.1f} µs   total {sum(raw_s):6.3f} s")
    print(f"  AudioCache.get   p50 {hit_p50 * 1e6:7.1f} µs   total {sum(cached_s):6.3f} s")
    print(
        f"  ratio cache/raw: p50 {hit_p50 / raw_p50:.3f}×   total {sum(cached_s) / sum(raw_s):.3f}×"
        "   (target ≤ 1.3×)"
    )


async def bench_put(url: str, rounds: int, value_bytes: int) -> None:
    settings = make_settings(url)
    client = make_client(url, settings)
    voice_id = hashlib.sha256(b"a reference clip").hexdigest()
    try:
        cache = AudioCache(client, settings)
        audio = ogg(os.urandom(value_bytes - len(OGG_HEAD_PAGE)))
        built_in = CachedAudio(audio, AudioFormat.OGG_OPUS, 3.2, "piper", time.time())
        voiced = CachedAudio(audio, AudioFormat.OGG_OPUS, 3.2, "piper", time.time(), voice_id)
        plain_s: list[float] = []
        voiced_s: list[float] = []
        for n in range(rounds // 5 + rounds):  # the first fifth warms up
            plain_key = cache_key(TTSParams(text=f"{TEXT} {n}"), None, "piper", "1")
            voiced_key = cache_key(TTSParams(text=f"{TEXT} {n}"), voice_id, "piper", "1")
            started = time.perf_counter()
            assert await cache.put(plain_key, built_in)
            plain = time.perf_counter() - started
            started = time.perf_counter()
            assert await cache.put(voiced_key, voiced)
            took = time.perf_counter() - started
            if n >= rounds // 5:
                plain_s.append(plain)
                voiced_s.append(took)
        await client.flushall()
    finally:
        await client.aclose()
    plain_p50, voiced_p50 = statistics.median(plain_s), statistics.median(voiced_s)
    print(f"cache put, {value_bytes // 1000} KB value, {rounds} rounds interleaved")
    print(f"  built-in voice   p50 {plain_p50 * 1e6:7.1f} µs")
    print(
        f"  reference voice  p50 {voiced_p50 * 1e6:7.1f} µs   {voiced_p50 / plain_p50:.2f}×"
        "   (index + tombstone check; paid once per synthesis)"
    )


def bench_keys(seconds: float = 1.0) -> None:
    params = TTSParams(text=TEXT, exaggeration=0.7, seed=42)
    reference = hashlib.sha256(b"clip").hexdigest()

    def rate(fn: object) -> float:
        assert callable(fn)
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for _ in range(500):
                fn()
            count += 500
        return count / (time.perf_counter() - started)

    baseline = rate(lambda: hashlib.sha256(TEXT.encode()).hexdigest())
    from_params = rate(lambda: cache_key(params, reference, "chatterbox", "0.1.7"))
    from_fields = rate(
        lambda: cache_key(
            {"text": TEXT, "exaggeration": 0.7, "seed": 42}, reference, "chatterbox", "0.1.7"
        )
    )
    print("cache-key derivation")
    print(f"  bare sha256 of the text        {baseline:10,.0f} /s")
    print(
        f"  cache_key(TTSParams, …)        {from_params:10,.0f} /s   {baseline / from_params:5.1f}× slower"
    )
    print(
        f"  cache_key(dict → validated, …) {from_fields:10,.0f} /s   {baseline / from_fields:5.1f}× slower"
    )


async def bench_single_flight(url: str) -> None:
    settings = make_settings(url)
    client = make_client(url, settings)
    try:
        await client.flushall()
        results, wall_s = await worker.run_processes(
            client, url, processes=2, requests_each=50, caches_each=1
        )
        syntheses = int(await client.get(worker.COUNTER_KEY) or 0)
    finally:
        await client.aclose()
    distinct = len({digest for digest, _ in results})
    print("single-flight: 100 identical requests over 2 OS processes")
    print(f"  syntheses {syntheses}   results {len(results)}   distinct results {distinct}")
    print(
        f"  wall time from go {wall_s:.3f} s vs. one synthesis {worker.SYNTHESIS_S:.3f} s"
        f"   ratio {wall_s / worker.SYNTHESIS_S:.3f}×  (includes the workers' exit)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--value-bytes", type=int, default=40_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="saybot-bench-") as data_dir:
        server = start_valkey(data_dir=Path(data_dir))
        url = f"redis://127.0.0.1:{server.port}"
        try:
            asyncio.run(bench_hit(url, args.rounds, args.value_bytes))
            asyncio.run(bench_put(url, args.rounds // 3, args.value_bytes))
            bench_keys()
            asyncio.run(bench_single_flight(url))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
