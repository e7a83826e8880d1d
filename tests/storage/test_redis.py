"""Connection: REDIS_URL (and CACHE_REDIS_URL) are honoured; without them two embedded
Valkey servers start (data: noeviction; cache: allkeys-lru), private to their user, persist
and stop."""

from __future__ import annotations

import logging
import os
import socket
import stat
import time
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError
from redis.retry import Retry

from storage import keys
from storage.cache import AudioCache, CachedAudio
from storage.cache_keys import cache_key
from storage.clip_cipher import key_id, new_key_text, parse_keys
from storage.embedded import default_data_dir
from storage.errors import StorageUnavailable
from storage.metrics import StorageMetrics
from storage.redis import mask_url, open_redis
from storage.settings import StorageSettings
from storage.usage import UsageRecorder, utc_today
from storage.voices import VoiceStore
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
        (
            "redis+sentinel://:hunter2@s1:26379,s2:26379/main",
            "redis+sentinel://:***@s1:26379,s2:26379/main",
        ),
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
    port, cache_port = handle.embedded_port, handle.embedded_cache_port
    assert port is not None and cache_port is not None and port != cache_port
    assert handle.cache_is_separate
    pids = [server._process.pid for server in handle._servers]  # the valkey-server children
    async with handle:
        assert await handle.ping()
        assert handle.url_for_logs == f"redis://127.0.0.1:{port}"
        assert handle.cache_url_for_logs == f"redis://127.0.0.1:{cache_port}"
        await handle.client.set("saybot:v1:test:kept", b"across restarts")
        await handle.cache_client.set("saybot:v1:test:cached", b"across restarts too")
        with pytest.raises(StorageUnavailable, match="REDIS_URL"):
            await open_redis(settings)  # a second server on the same data would clobber it
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # stopped and reaped
    assert (tmp_path / "data" / "saybot.rdb").exists(), "a snapshot written on stop"
    assert (tmp_path / "data" / "cache" / "cache.rdb").exists(), "the cache's own snapshot"

    async with await open_redis(settings) as again:
        assert await again.client.get("saybot:v1:test:kept") == b"across restarts"
        assert await again.cache_client.get("saybot:v1:test:cached") == b"across restarts too"
        assert await again.client.exists("saybot:v1:test:cached") == 0


def unauthenticated_ping(port: int) -> bytes:
    """What a local user without the password gets from a server."""
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(256)


def command_line_of(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def modes_under(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}


@pytest.mark.timeout(60)
async def test_embedded_data_is_private_to_its_user(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Directories 0700, files 0600 (the snapshots written at shutdown too), a password per
    server per start that no other local user can see: not in ps, not in a file, not logged."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    old_log = data_dir / "valkey.log"
    old_log.write_text("left world-readable by an older saybot\n")
    old_log.chmod(0o644)
    settings = embedded_settings(data_dir)

    with caplog.at_level(logging.DEBUG):  # every logger, redis-py's included
        handle = await open_redis(settings)
        async with handle:
            passwords = [
                client.connection_pool.connection_kwargs["password"]
                for client in (handle.client, handle.cache_client)
            ]
            assert len(set(passwords)) == 2 and all(len(p) >= 40 for p in passwords)
            for port in (handle.embedded_port, handle.embedded_cache_port):
                assert port is not None
                assert unauthenticated_ping(port).startswith(b"-NOAUTH")
            for server in handle._servers:
                command_line = command_line_of(server._process.pid)  # what ps shows
                assert all(p.encode() not in command_line for p in passwords)
            assert not list(data_dir.rglob("valkey.conf")), "the config (the password) is gone"
            await handle.client.set("saybot:v1:test:private", b"voice data")
            await handle.cache_client.set("saybot:v1:test:private", b"audio")
    # Stopped: each server wrote its snapshot at shutdown.
    modes = modes_under(data_dir)
    assert {"saybot.rdb", "cache/cache.rdb", "saybot.key", "saybot.lock"} <= modes.keys()
    assert modes.pop("cache") == 0o700 and stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert modes == dict.fromkeys(modes, 0o600), modes
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert all(p.encode() not in path.read_bytes() for p in passwords), path
    assert all(p not in caplog.text for p in passwords)


@pytest.mark.timeout(120)
async def test_cache_pressure_never_evicts_durable_data(tmp_path: Path) -> None:
    """The cache server fills far past its budget and evicts; saved voices, the index that
    "forget my voice" relies on, and usage all stay, on a server that never evicts."""
    settings = embedded_settings(tmp_path / "data").model_copy(
        update={"embedded_cache_maxmemory": "4mb", "voice_idle_ttl_s": 1000}
    )
    async with await open_redis(settings) as handle:
        voices = VoiceStore(
            handle.client, settings, cache_redis=handle.cache_client, cipher=handle.clip_cipher
        )
        cache = AudioCache(handle.cache_client, settings, data_redis=handle.client)
        usage = UsageRecorder(handle.client, settings)
        voice_ids = [f"{n:02x}" * 32 for n in range(3)]
        for n, voice_id in enumerate(voice_ids):
            await voices.save("telegram", str(n), voice_id, b"fLaC" + bytes([n]) * 1000)
        padding = b"\0" * 64 * 1024
        answers = 300  # ~19 MB of audio through a 4 MB cache
        for i in range(answers):
            voice_id = voice_ids[i % 3]
            key = cache_key(TTSParams(text=f"line {i}"), voice_id, "chatterbox", "1")
            entry = CachedAudio(
                ogg(b"%d" % i + padding), AudioFormat.OGG_OPUS, 1.0, "chatterbox", 0.0, voice_id
            )
            assert await cache.put(key, entry)
            usage.record_soon("telegram", str(i % 3), "miss", audio_seconds=1.0)
        await usage.flush()

        cache_info = await handle.cache_client.info("stats")
        assert cache_info["evicted_keys"] > 0, "the cache really was under pressure"
        assert await handle.cache_client.dbsize() < answers
        for n, voice_id in enumerate(voice_ids):
            found = await voices.lookup_clip(voice_id, "telegram", str(n))
            assert found.clip == b"fLaC" + bytes([n]) * 1000
            assert await handle.client.scard(keys.voice_audio(voice_id)) == answers // 3
            assert await voices.default_voice("telegram", str(n)) == voice_id
        today = utc_today().isoformat()
        assert await handle.client.exists(keys.usage_day(today), keys.usage_users(today)) == 2
        assert (await handle.client.info("stats"))["evicted_keys"] == 0

        data_config = await config_of(handle.client)
        assert (data_config["maxmemory-policy"], data_config["maxmemory"]) == ("noeviction", "0")
        cache_config = await config_of(handle.cache_client)
        assert cache_config["maxmemory-policy"] == "allkeys-lru"
        assert cache_config["maxmemory"] == str(4 * 1024 * 1024)


async def config_of(client: Redis) -> dict[str, str]:
    found = await client.config_get("maxmemory*")
    return {keys.as_text(name): keys.as_text(value) for name, value in found.items()}


async def test_cache_redis_url_keeps_the_cache_on_its_own_server(tmp_path: Path) -> None:
    data = start_valkey(data_dir=tmp_path / "data")
    cache = start_valkey(data_dir=tmp_path / "cache")
    data_url, cache_url = (f"redis://127.0.0.1:{s.port}" for s in (data, cache))
    try:
        settings = make_settings(
            data_url, cache_redis_url=SecretStr(cache_url), data_key=SecretStr(new_key_text())
        )
        handle = await open_redis(settings)
        async with handle:
            assert handle.cache_is_separate and not handle.is_embedded
            assert handle.warnings == [] and handle.clip_cipher is not None
            voice_id = "ab" * 32
            key = cache_key(TTSParams(text="apart"), voice_id, "chatterbox", "1")
            made = CachedAudio(
                ogg(b"apart"), AudioFormat.OGG_OPUS, 1.0, "chatterbox", 0.0, voice_id
            )
            assert await AudioCache(handle.cache_client, settings, data_redis=handle.client).put(
                key, made
            )
            with SyncRedis(host="127.0.0.1", port=cache.port) as direct:
                assert direct.exists(key) == 1 and direct.exists(keys.voice_audio(voice_id)) == 0
            with SyncRedis(host="127.0.0.1", port=data.port) as direct:
                assert direct.exists(key) == 0 and direct.smembers(keys.voice_audio(voice_id)) == {
                    key.encode()
                }
            cache.stop()
            problem = await handle.problem()
            assert problem is not None and problem.startswith("cache: ")

        same = make_settings(data_url, cache_redis_url=SecretStr(data_url))
        async with await open_redis(same) as handle:
            assert handle.cache_client is handle.client and not handle.cache_is_separate
    finally:
        data.stop()
        if cache.is_running():
            cache.stop()


async def test_a_shared_redis_without_a_data_key_stores_clips_in_clear_and_says_so(
    valkey_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="storage"):
        handle = await open_redis(make_settings(valkey_url))
    async with handle:
        assert handle.clip_cipher is None
        assert handle.warnings == [
            f"SAYBOT_DATA_KEY is not set: voice clips are stored unencrypted in {valkey_url}"
        ]
    assert handle.warnings[0] in caplog.text


@pytest.mark.timeout(60)
async def test_the_embedded_key_file_is_kept_and_an_explicit_key_takes_over(
    tmp_path: Path,
) -> None:
    settings = embedded_settings(tmp_path / "data")
    voice_id, clip = "cd" * 32, b"fLaC" + b"\x01" * 500
    async with await open_redis(settings) as first:
        assert first.clip_cipher is not None and first.warnings == []
        file_key_id = first.clip_cipher.sealing_key_id
        await VoiceStore(first.client, settings, cipher=first.clip_cipher).save(
            "telegram", "1", voice_id, clip
        )
    key_file = tmp_path / "data" / "saybot.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    async with await open_redis(settings) as again:
        assert again.clip_cipher is not None
        assert again.clip_cipher.sealing_key_id == file_key_id, "reused across restarts"

    explicit = new_key_text()
    with_key = settings.model_copy(update={"data_key": SecretStr(explicit)})
    async with await open_redis(with_key) as handle:
        assert handle.clip_cipher is not None
        assert handle.clip_cipher.sealing_key_id == key_id(parse_keys(explicit)[0])
        store = VoiceStore(handle.client, settings, cipher=handle.clip_cipher)
        assert (await store.lookup_clip(voice_id)).clip == clip, "the file's key still opens"
        stored = await handle.client.get(keys.voice_clip(voice_id))
        assert stored[1:9] == handle.clip_cipher.sealing_key_id, "sealed again under the new key"


def test_storage_settings_of_the_split_and_the_data_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_key_text()
    monkeypatch.setenv("CACHE_REDIS_URL", "redis://:pw@cache:6379")
    monkeypatch.setenv("EMBEDDED_MAXMEMORY", "64mb")  # the name it had before
    monkeypatch.setenv("MAX_VOICES_PER_USER", "5")
    monkeypatch.setenv("SAYBOT_DATA_KEY", f"{key},{new_key_text()}")
    settings = StorageSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.embedded_cache_maxmemory == "64mb" and settings.max_voices_per_user == 5
    assert settings.cache_redis_url is not None and settings.data_key is not None
    assert key not in repr(settings) and "pw" not in repr(settings)
    monkeypatch.setenv("EMBEDDED_CACHE_MAXMEMORY", "32mb")
    assert StorageSettings(_env_file=None).embedded_cache_maxmemory == "32mb"  # type: ignore[call-arg]

    monkeypatch.setenv("SAYBOT_DATA_KEY", "c2hvcnQtc2VjcmV0")  # 12 bytes, not 32
    with pytest.raises(ValidationError) as caught:
        StorageSettings(_env_file=None)  # type: ignore[call-arg]
    assert "12 bytes" in str(caught.value) and "c2hvcnQtc2VjcmV0" not in str(caught.value)


async def test_settings_hold_the_url_as_a_secret() -> None:
    settings = make_settings("redis://:pw@127.0.0.1:1")
    assert isinstance(settings.redis_url, SecretStr)
    assert "pw" not in str(settings.model_dump())
