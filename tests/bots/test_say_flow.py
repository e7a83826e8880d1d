"""The platform-agnostic flow over real Valkey and the real Piper service."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from bots.errors import InvalidInput, RateLimited, StorageProblem, TTSUnavailable
from bots.say import SayRequest, VoiceSource
from storage.redis import make_client
from storage.settings import StorageSettings
from tests.bots.harness import Service, running_service, say_flow
from tests.redis_fixtures import make_settings, start_valkey
from tests.tts_service.audio_samples import clip
from tts_service.engines.piper import PiperEngine


@pytest.fixture(scope="module")
def service(piper_engine: PiperEngine) -> Iterator[Service]:
    with running_service(piper_engine, max_in_flight=8) as running:
        yield running


def request(text: str = "Flow test.", user: str = "1", **params: float) -> SayRequest:
    return SayRequest(platform="test", user_id=user, chat_id=user, text=text, params=params)


async def test_concurrent_identical_requests_synthesise_once(
    redis_client: Redis, storage_settings: StorageSettings, service: Service
) -> None:
    open_settings = storage_settings.model_copy(update={"ratelimit_enabled": False})
    async with say_flow(redis_client, open_settings, service.url) as flow:
        before = service.counter.tts_requests
        results = await asyncio.gather(
            *(flow.say(request("Twenty people ask at once.", user=str(n))) for n in range(20))
        )
    assert service.counter.tts_requests == before + 1
    assert len({r.audio for r in results}) == 1
    assert sum(not r.from_cache for r in results) == 1
    assert all(r.voice is VoiceSource.BUILT_IN for r in results)


async def test_failed_synthesis_reaches_every_waiter_as_the_same_error(
    redis_client: Redis, storage_settings: StorageSettings, piper_engine: PiperEngine
) -> None:
    with running_service(piper_engine) as gone:
        pass
    open_settings = storage_settings.model_copy(update={"ratelimit_enabled": False})
    async with say_flow(redis_client, open_settings, gone.url) as flow:
        outcomes = await asyncio.gather(
            *(flow.say(request("Nobody home.", user=str(n))) for n in range(5)),
            return_exceptions=True,
        )
    assert all(isinstance(o, TTSUnavailable) for o in outcomes), outcomes


async def test_validation_and_rate_limit_come_before_any_synthesis(
    redis_client: Redis, storage_settings: StorageSettings, service: Service
) -> None:
    limited = storage_settings.model_copy(update={"ratelimit_burst": 1})
    async with say_flow(redis_client, limited, service.url) as flow:
        before = service.counter.tts_requests
        with pytest.raises(InvalidInput, match="cfg_weight must be a number from 0 to 1"):
            await flow.say(request(cfg_weight=2))
        await flow.say(request("First is free."))
        with pytest.raises(RateLimited) as limited_error:
            await flow.say(request("Second is too soon."))
        assert 0 < limited_error.value.retry_after_s <= 10
        assert service.counter.tts_requests == before + 1


async def test_saving_a_voice_with_redis_down_says_so(service: Service) -> None:
    server = start_valkey()
    settings = make_settings(f"redis://127.0.0.1:{server.port}")
    redis = make_client(f"redis://127.0.0.1:{server.port}", settings)
    try:
        async with say_flow(redis, settings, service.url) as flow:
            server.stop()
            with pytest.raises(StorageProblem):
                await flow.save_voice("test", "1", clip("wav"))
            result = await flow.say(request("Speaking without storage."))
            assert result.audio and not result.from_cache
    finally:
        await redis.aclose()
