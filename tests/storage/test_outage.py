"""The server dies mid-run: every caller degrades quickly, then recovers on a new server.

A private server, so the session one stays up for the other tests.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from storage.cache import AudioCache, CachedAudio
from storage.cache_keys import cache_key
from storage.client import RedisClient
from storage.errors import StorageUnavailable
from storage.metrics import StorageMetrics
from storage.ratelimit import FAIL_CLOSED_RETRY_AFTER_S, RateLimiter
from storage.redis import open_redis
from storage.settings import StorageSettings
from storage.usage import UsageRecorder
from storage.voices import VoiceStore
from tests.audio_bytes import ogg
from tests.redis_fixtures import make_settings, start_valkey
from tts_service.schema import AudioFormat, TTSParams

T = TypeVar("T")
BOUND_S = 3.0
VOICE = "ab" * 32


async def quickly(call: Awaitable[T]) -> T:
    """Every degraded call must come back well within a chat platform's patience."""
    started = time.monotonic()
    result = await asyncio.wait_for(call, timeout=BOUND_S + 2)
    assert time.monotonic() - started < BOUND_S
    return result


def made(text: str) -> CachedAudio:
    return CachedAudio(ogg(text.encode()), AudioFormat.OGG_OPUS, 1.0, "piper", time.time())


@dataclass(frozen=True)
class Stores:
    """Every storage caller over one client, sharing one metrics (and its breaker)."""

    cache: AudioCache
    voices: VoiceStore
    usage: UsageRecorder
    open_limiter: RateLimiter
    closed_limiter: RateLimiter  # ratelimit_fail_open=False

    @classmethod
    def over(cls, client: RedisClient, settings: StorageSettings) -> Stores:
        metrics = StorageMetrics(cooldown_s=0.2)
        closed = settings.model_copy(update={"ratelimit_fail_open": False})
        return cls(
            AudioCache(client, settings, metrics),
            VoiceStore(client, settings, metrics),
            UsageRecorder(client, settings, metrics),
            RateLimiter(client, settings, metrics),
            RateLimiter(client, closed, metrics),
        )


@pytest.mark.timeout(60)
async def test_storage_degrades_while_redis_is_down_and_recovers(tmp_path: Path) -> None:
    server = start_valkey(data_dir=tmp_path)
    port = server.port
    settings = make_settings(f"redis://127.0.0.1:{port}")
    handle = await open_redis(settings)
    stores = Stores.over(handle.client, settings)
    metrics = stores.cache.metrics  # shared by all of them
    cache, voices, usage = stores.cache, stores.voices, stores.usage
    open_limiter, closed_limiter = stores.open_limiter, stores.closed_limiter
    key = cache_key(TTSParams(text="still here?"), None, "piper", "1")
    try:
        assert await cache.put(key, made("before"))
        assert (await cache.get_or_create(key, lambda: asyncio.sleep(0, made("x"))))[1] is True
        await voices.save("telegram", "1", VOICE, b"clip")

        server.terminate()  # SIGKILL: no goodbye, sockets reset
        assert not await quickly(handle.ping())

        errors_before = metrics.redis_errors
        assert await quickly(cache.get(key)) is None
        assert metrics.redis_errors > errors_before and not metrics.redis_up
        assert await quickly(cache.put(key, made("during"))) is False
        calls = 0

        async def synthesize() -> CachedAudio:
            nonlocal calls
            calls += 1
            return made("during")

        entry, from_cache = await quickly(cache.get_or_create(key, synthesize))
        assert (entry.audio, from_cache, calls) == (ogg(b"during"), False, 1)

        decision = await quickly(open_limiter.check("telegram", "1"))
        assert decision.allowed and decision.degraded
        decision = await quickly(closed_limiter.check("telegram", "1"))
        assert not decision.allowed and decision.retry_after_s == FAIL_CLOSED_RETRY_AFTER_S

        usage.record_soon("telegram", "1", "miss", audio_seconds=1.0)
        await quickly(usage.flush())
        assert await quickly(voices.default_voice("telegram", "1")) is None
        assert (await quickly(voices.lookup_clip(VOICE))).clip is None
        assert await quickly(voices.note_attached("telegram", "1", VOICE)) is False
        with pytest.raises(StorageUnavailable):
            await quickly(voices.save("telegram", "1", VOICE, b"clip"))
        with pytest.raises(StorageUnavailable):
            await quickly(voices.forget("telegram", "1"))

        # A server is back on the same port (empty: it was killed before any snapshot).
        server = start_valkey(port=port, data_dir=tmp_path)
        deadline = time.monotonic() + 10
        while not await handle.ping():
            assert time.monotonic() < deadline, "the client never reconnected"
            await asyncio.sleep(0.05)
        while not await cache.put(key, made("after")):  # the breaker lets a probe through
            assert time.monotonic() < deadline, "the cache never recovered"
            await asyncio.sleep(0.05)
        assert (await cache.get(key) or made("")).audio == ogg(b"after")
        assert metrics.redis_up
        assert (await open_limiter.check("telegram", "1")).degraded is False
    finally:
        await handle.aclose()
        if server.is_running():
            server.stop()


@pytest.mark.timeout(60)
async def test_a_hung_server_costs_one_timeout_per_cooldown_not_per_call(tmp_path: Path) -> None:
    """SIGSTOP: connections stay open, nothing answers. The breaker keeps replies fast."""
    server = start_valkey(data_dir=tmp_path)
    settings = make_settings(f"redis://127.0.0.1:{server.port}", redis_socket_timeout_s=0.5)
    metrics = StorageMetrics(cooldown_s=2.0)
    handle = await open_redis(settings)
    cache = AudioCache(handle.client, settings, metrics)
    limiter = RateLimiter(handle.client, settings, metrics)
    key = cache_key(TTSParams(text="anyone?"), None, "piper", "1")
    pid = server._process.pid
    try:
        assert await cache.put(key, made("stored"))
        os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        assert await quickly(cache.get(key)) is None  # waits out one socket timeout
        first_s = time.monotonic() - started
        assert 0.4 < first_s < 1.5, "one timeout, no retries of it"
        started = time.monotonic()
        for _ in range(20):
            assert await cache.get(key) is None
            assert (await limiter.check("discord", "9")).degraded
        assert time.monotonic() - started < 0.2, "the open breaker answers at once"
        assert metrics.redis_skipped == 40
        os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 10
        while (await cache.get(key)) is None:
            assert time.monotonic() < deadline, "never recovered"
            await asyncio.sleep(0.1)
        assert metrics.redis_up
    finally:
        os.kill(pid, signal.SIGCONT)
        await handle.aclose()
        server.stop()
