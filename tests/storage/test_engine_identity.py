"""The engine identity remembered for bots that start while the TTS service is away."""

from __future__ import annotations

from redis.asyncio import Redis

from storage import keys
from storage.engine_identity import EngineIdentityStore
from storage.metrics import StorageMetrics
from storage.redis import make_client
from tests.redis_fixtures import make_settings, start_valkey
from tts_service.schema import EngineInfo

ENGINE = EngineInfo(
    name="chatterbox",
    model_version="0.1.7+abc123",
    sample_rate=24_000,
    can_clone_voice=True,
    honoured_params=["exaggeration", "temperature", "cfg_weight", "seed"],
    max_chunk_chars=300,
)


async def test_remembered_until_the_audio_it_keys_expires(redis_client: Redis) -> None:
    store = EngineIdentityStore(redis_client)
    assert await store.last_seen() is None
    await store.remember(ENGINE)
    assert await store.last_seen() == ENGINE
    ttl_s = await redis_client.ttl(keys.ENGINE_IDENTITY)
    assert keys.AUDIO_TTL_S - 5 < ttl_s <= keys.AUDIO_TTL_S


async def test_an_unreadable_identity_is_no_identity(redis_client: Redis) -> None:
    await redis_client.set(keys.ENGINE_IDENTITY, b'{"name": "from another version"}')
    assert await EngineIdentityStore(redis_client).last_seen() is None


async def test_redis_down_is_no_identity_and_no_error() -> None:
    server = start_valkey()
    url = f"redis://127.0.0.1:{server.port}"
    client = make_client(url, make_settings(url))
    metrics = StorageMetrics()
    store = EngineIdentityStore(client, metrics)
    try:
        await store.remember(ENGINE)
        server.stop()
        assert await store.last_seen() is None
        await store.remember(ENGINE)  # degrades silently
        assert metrics.redis_errors >= 1 and not metrics.redis_up
    finally:
        await client.aclose()
        if server.is_running():
            server.stop()
