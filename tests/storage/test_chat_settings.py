"""A community's settings: durable, read whole, changed atomically, defaults when down."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from storage import keys
from storage.chat_settings import ChatSettings, ChatSettingsStore
from storage.errors import StorageUnavailable
from storage.redis import make_client
from tests.redis_fixtures import make_settings, start_valkey


async def test_settings_are_changed_atomically_read_whole_and_never_expire(
    redis_client: Redis,
) -> None:
    store = ChatSettingsStore(redis_client)
    assert await store.get("discord", "42") == ChatSettings()
    changed = await store.change(
        "discord",
        "42",
        {
            "cloning": "off",
            "max_text": "300",
            "rate": "3",
            "quota": "600",
            "default:exaggeration": "0.7",
            "block:darn": "1",
            "block:oh heck": "1",
        },
    )
    assert changed == ChatSettings(
        cloning=False,
        saved_voices=True,
        max_text=300,
        rate_per_minute=3,
        quota_s=600,
        blocked=frozenset({"darn", "oh heck"}),
        defaults={"exaggeration": 0.7},
    )
    assert await store.get("discord", "42") == await store.read("discord", "42") == changed
    assert await redis_client.ttl(keys.chat_settings("discord", "42")) == -1  # durable
    back = await store.change("discord", "42", {"cloning": "on"}, ["rate", "block:darn"])
    assert (back.cloning, back.rate_per_minute, back.blocked) == (True, None, {"oh heck"})
    assert await store.get("telegram", "42") == ChatSettings()  # each platform its own


async def test_fields_that_do_not_parse_read_as_the_defaults(redis_client: Redis) -> None:
    await redis_client.hset(
        keys.chat_settings("telegram", "-1"),
        mapping={"max_text": "lots", "default:temperature": "warm", "saved_voices": "off"},
    )
    read = await ChatSettingsStore(redis_client).get("telegram", "-1")
    assert read == ChatSettings(saved_voices=False)


async def test_with_redis_down_reads_are_the_defaults_and_changes_say_so() -> None:
    server = start_valkey()
    url = f"redis://127.0.0.1:{server.port}"
    redis = make_client(url, make_settings(url))
    store = ChatSettingsStore(redis)
    try:
        await store.change("discord", "1", {"cloning": "off"})
        server.stop()
        assert await store.get("discord", "1") == ChatSettings()
        with pytest.raises(StorageUnavailable, match="cannot be read right now"):
            await store.read("discord", "1")
        with pytest.raises(StorageUnavailable, match="cannot be changed right now"):
            await store.change("discord", "1", {"cloning": "on"})
    finally:
        await redis.aclose()


async def test_ids_that_could_forge_a_key_are_refused(redis_client: Redis) -> None:
    with pytest.raises(ValueError, match="chat_id"):
        await ChatSettingsStore(redis_client).get("discord", "1:settings")
