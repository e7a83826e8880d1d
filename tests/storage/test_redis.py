"""Connection: REDIS_URL is honoured; without it an embedded Valkey starts, persists, stops."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis import Redis as SyncRedis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError
from redis.retry import Retry

from storage.cache import AudioCache, CachedAudio
from storage.cache_keys import cache_key
from storage.errors import StorageUnavailable
from storage.metrics import StorageMetrics
from storage.redis import default_data_dir, mask_url, open_redis
from storage.settings import StorageSettings
from tests.audio_bytes import ogg
from tests.redis_fixtures import free_port, make_settings, start_valkey
from tts_service.schema import AudioFormat, TTSParams


def embedded_settings(data_dir: Path) -> StorageSettings:
    return StorageSettings(_env_file=None, redis_url=None, embedded_data_dir=data_dir)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:hunter2@cache.internal:6380/1", "redis://:***@cache.internal:6380/1"),
        ("rediss://bot:hunter2@[::1]:6390", "rediss://bot:***@[::1]:6390"),
    ],
)
def test_urls_are_logged_without_passwords(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "rediss://:pw@example:6380")
    monkeypatch.setenv("RATELIMIT_ADMINS", "telegram:1, discord:2")
    monkeypatch.setenv("RATELIMIT_PLATFORMS", '{"discord": {"per_minute": 10, "burst": 5}}')
    settings = StorageSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == "rediss://:pw@example:6380"
    assert "pw" not in repr(settings)
    assert settings.ratelimit_admins == {"telegram:1", "discord:2"}
    assert settings.rate_rule("discord").burst == 5
    assert settings.rate_rule("telegram").burst == settings.ratelimit_burst


def test_default_data_dir_is_per_user() -> None:
    assert default_data_dir().parts[-2:] == ("saybot", "valkey")


async def test_redis_url_is_honoured(tmp_path: Path) -> None:
    """A second server on another port: the handle talks to it, and nothing is embedded."""
    other = start_valkey(data_dir=tmp_path)
    try:
        handle = await open_redis(make_settings(f"redis://127.0.0.1:{other.port}"))
        async with handle:
            assert not handle.is_embedded and handle.embedded_port is None
            assert await handle.ping()
            await handle.client.set("saybot:v1:test:where", b"here")
        with SyncRedis(host="127.0.0.1", port=other.port) as direct:
            assert direct.get("saybot:v1:test:where") == b"here"
    finally:
        other.stop()


async def test_a_password_in_redis_url_is_used_and_a_wrong_one_is_named_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    password, wrong = "correct-horse-battery", "not-the-password"
    guarded = start_valkey(data_dir=tmp_path)
    try:
        with SyncRedis(host="127.0.0.1", port=guarded.port) as admin:
            admin.config_set("requirepass", password)
        no_retry = Retry(NoBackoff(), 0)  # redis-py's default retries a refusal for seconds
        with (
            pytest.raises(AuthenticationError),
            SyncRedis(host="127.0.0.1", port=guarded.port, retry=no_retry) as anon,
        ):
            anon.ping()  # the server really asks for it
        key = cache_key(TTSParams(text="behind a password"), None, "piper", "1")
        made = CachedAudio(ogg(b"guarded"), AudioFormat.OGG_OPUS, 1.0, "piper", time.time())

        settings = make_settings(f"redis://:{password}@127.0.0.1:{guarded.port}")
        async with await open_redis(settings) as handle:
            assert await handle.problem() is None
            assert await AudioCache(handle.client, settings).put(key, made)
        with SyncRedis(host="127.0.0.1", port=guarded.port, password=password) as direct:
            assert direct.exists(key) == 1

        settings = make_settings(f"redis://:{wrong}@127.0.0.1:{guarded.port}")
        with caplog.at_level(logging.WARNING, logger="storage"):
            handle = await open_redis(settings)  # degraded, not raised
            async with handle:
                assert not await handle.ping()
                metrics = StorageMetrics()
                assert await AudioCache(handle.client, settings, metrics).get(key) is None
                assert metrics.redis_errors == 1 and not metrics.redis_up
        assert "AuthenticationError: invalid username-password pair" in caplog.text
        assert wrong not in caplog.text and password not in caplog.text
    finally:
        guarded.stop()


async def test_unreachable_redis_url_degrades_instead_of_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING, logger="storage"):
        handle = await open_redis(make_settings(url))
    async with handle:
        assert not await handle.ping()
    assert "not answering" in caplog.text and "secret" not in caplog.text


@pytest.mark.timeout(60)
async def test_embedded_valkey_persists_and_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = embedded_settings(tmp_path / "data")
    with caplog.at_level(logging.INFO, logger="storage"):
        handle = await open_redis(settings)
    assert handle.is_embedded and "embedded Valkey" in caplog.text
    port = handle.embedded_port
    assert port is not None
    pid = handle._server._process.pid  # the valkey-server child process
    async with handle:
        assert await handle.ping()
        assert handle.url_for_logs == f"redis://127.0.0.1:{port}"
        await handle.client.set("saybot:v1:test:kept", b"across restarts")
        with pytest.raises(StorageUnavailable, match="REDIS_URL"):
            await open_redis(settings)  # a second server on the same data would clobber it
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped
    assert (tmp_path / "data" / "saybot.rdb").exists(), "a snapshot written on stop"

    async with await open_redis(settings) as again:
        assert await again.client.get("saybot:v1:test:kept") == b"across restarts"


async def test_settings_hold_the_url_as_a_secret() -> None:
    settings = make_settings("redis://:pw@127.0.0.1:1")
    assert isinstance(settings.redis_url, SecretStr)
    assert "pw" not in str(settings.model_dump())
