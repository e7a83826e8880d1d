"""The stand-in voice (``TTS_FALLBACK=local``) over real Valkey and two real services: the
"GPU" one (Piper behind a cloning engine's face, held or gone) and the bundled Piper one."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from bots.chosen_voice import VoiceSource
from bots.clips import BytesClip
from bots.engine_identity import EngineIdentity
from bots.errors import TTSUnavailable
from bots.fallback import OWN_VOICE_NOTE, STAND_IN_NOTE, Fallback
from bots.say import SayFlow, SayRequest
from bots.tts_client import TTSClient
from storage import keys
from storage.settings import StorageSettings
from tests.bots.harness import FAST_RETRY, Service, running_service, saved_with_consent
from tests.tts_helpers import API_TOKEN
from tests.tts_service.audio_samples import clip
from tests.tts_service.engine_wrappers import CloningPiper
from tts_service.engines.piper import PiperEngine


@pytest.fixture(scope="module")
def local(piper_engine: PiperEngine) -> Iterator[Service]:
    with running_service(piper_engine) as running:
        yield running


@pytest.fixture
def open_settings(storage_settings: StorageSettings) -> StorageSettings:
    return storage_settings.model_copy(update={"ratelimit_enabled": False})


@contextlib.asynccontextmanager
async def flow_with_fallback(
    redis: Redis, storage: StorageSettings, gpu_url: str, local_url: str, after_s: float
) -> AsyncIterator[SayFlow]:
    gpu = TTSClient(gpu_url, API_TOKEN, read_timeout_s=60, retry=FAST_RETRY)
    stand_in = TTSClient(local_url, API_TOKEN, read_timeout_s=60, retry=FAST_RETRY)
    fallback = Fallback(stand_in, EngineIdentity(stand_in.fetch_engine_info), after_s=after_s)
    flow = SayFlow.over_redis(redis, storage, gpu, fallback=fallback)
    try:
        yield flow
    finally:
        await flow.drain()
        await gpu.aclose()
        await stand_in.aclose()


def request(text: str, user: str = "1", clip_bytes: bytes | None = None) -> SayRequest:
    sent = BytesClip(clip_bytes, user) if clip_bytes is not None else None
    return SayRequest(platform="test", user_id=user, chat_id=user, text=text, clip=sent)


async def test_the_stand_in_answers_while_the_gpu_is_gone_under_its_own_keys(
    redis_client: Redis, open_settings: StorageSettings, local: Service, piper_engine: PiperEngine
) -> None:
    with running_service(CloningPiper(piper_engine)) as gone:
        pass  # stopped: its port refuses connections
    async with flow_with_fallback(
        redis_client, open_settings, gone.url, local.url, after_s=30
    ) as flow:
        first = await flow.say(request("The GPU is away."))
        assert (first.voice, first.note, first.engine) == (
            VoiceSource.STAND_IN,
            STAND_IN_NOTE,
            "piper",
        )
        again = await flow.say(request("The GPU is away."))
        assert again.from_cache and again.audio == first.audio
        assert local.counter.tts_requests == 1
        # A request that clones a clip it brings is refused, never spoken in another voice.
        with pytest.raises(TTSUnavailable):
            await flow.say(request("In my voice.", clip_bytes=clip("wav")))
        assert local.counter.tts_requests == 1
    cached = [k async for k in redis_client.scan_iter(match=keys.audio("*"))]
    assert len(cached) == 1  # under Piper's identity only: nothing under the GPU engine's


async def test_a_cold_gpu_is_not_waited_for_and_its_answer_replaces_the_stand_in(
    redis_client: Redis, open_settings: StorageSettings, local: Service, piper_engine: PiperEngine
) -> None:
    cold = CloningPiper(piper_engine, gate=threading.Event())
    assert cold.gate is not None
    with running_service(cold) as gpu:
        try:
            async with flow_with_fallback(
                redis_client, open_settings, gpu.url, local.url, after_s=0.2
            ) as flow:
                # The gate stays shut until the stand-in has answered: the GPU cannot win.
                stood_in = await flow.say(request("Warm up, GPU."))
                assert stood_in.voice is VoiceSource.STAND_IN
                # The GPU got the work all the same, and goes on with it.
                assert await asyncio.to_thread(cold.entered.wait, 30)
                cold.gate.set()
                await flow.cache.drain(30)  # its synthesis lands in the cache
                real = await flow.say(request("Warm up, GPU."))
                assert (real.voice, real.from_cache, real.engine) == (
                    VoiceSource.BUILT_IN,
                    True,
                    "cloning-piper",
                )
                assert gpu.counter.tts_requests == 1
        finally:
            cold.gate.set()


async def test_someone_with_a_saved_voice_is_told_once_it_comes_back(
    redis_client: Redis, open_settings: StorageSettings, local: Service, piper_engine: PiperEngine
) -> None:
    with running_service(CloningPiper(piper_engine)) as gpu:
        async with flow_with_fallback(
            redis_client, open_settings, gpu.url, local.url, after_s=30
        ) as flow:
            await saved_with_consent(flow, "test", "7", clip("wav"))
    async with flow_with_fallback(  # the same Redis, the GPU gone now
        redis_client, open_settings, gpu.url, local.url, after_s=30
    ) as flow:
        notes = [(await flow.say(request(f"Line {n}.", user="7"))).note for n in range(2)]
        assert notes == [OWN_VOICE_NOTE, STAND_IN_NOTE]


async def test_without_the_fallback_the_gpus_absence_is_an_error(
    redis_client: Redis, open_settings: StorageSettings, piper_engine: PiperEngine
) -> None:
    with running_service(CloningPiper(piper_engine)) as gone:
        pass
    client = TTSClient(gone.url, API_TOKEN, retry=FAST_RETRY)
    flow = SayFlow.over_redis(redis_client, open_settings, client)
    try:
        with pytest.raises(TTSUnavailable):
            await asyncio.wait_for(flow.say(request("Nobody home.")), 30)
    finally:
        await flow.drain()
        await client.aclose()
