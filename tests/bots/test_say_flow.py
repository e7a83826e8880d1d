"""The platform-agnostic flow over real Valkey and the real Piper service.

Voice paths need an engine that accepts reference clips: ``CloningPiper`` is the engine
protocol with ``can_clone_voice`` on, so the real service decodes every clip it is sent,
and Piper speaks (in its own voice).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from bots.chosen_voice import VoiceSource, prepare_voice
from bots.clips import BytesClip
from bots.errors import InvalidInput, RateLimited, StorageProblem, TTSUnavailable
from bots.say import SayFlow, SayRequest
from bots.tts_client import TTSClient
from storage import keys
from storage.redis import make_client
from storage.settings import StorageSettings
from storage.usage import UsageReader, utc_today
from tests.bots.harness import (
    FAST_RETRY,
    Service,
    running_service,
    said_with_consent,
    saved_with_consent,
    say_flow,
)
from tests.redis_fixtures import make_settings, restricted_client, start_valkey
from tests.tts_helpers import API_TOKEN
from tests.tts_service.audio_samples import clip
from tests.tts_service.engine_wrappers import CloningPiper
from tts_service.engines.piper import PiperEngine
from tts_service.schema import EngineInfo

# Every key the flow touches except the voices' own: a client limited to these fails (NOPERM)
# exactly when it reads a clip, after the user's default pointer was read fine.
NOT_VOICE_KEYS = [
    "saybot:v1:user:*",
    "saybot:v1:rate:*",
    "saybot:v1:usage:*",
    "saybot:v1:audio:*",
    "saybot:v1:sf:*",
]


class CountingObserver:
    """A ``FlowObserver`` keeping what the Prometheus one would export."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.finished: list[str] = []

    def request_started(self, platform: str) -> None:
        self.in_flight += 1

    def request_finished(self, platform: str, outcome: str, seconds: float) -> None:
        self.in_flight -= 1
        self.finished.append(outcome)

    def tts_called(self, seconds: float, error_code: str | None) -> None:
        pass


@contextlib.asynccontextmanager
async def observed_flow(
    redis: Redis, storage: StorageSettings, tts_url: str, observer: CountingObserver
) -> AsyncIterator[SayFlow]:
    client = TTSClient(tts_url, API_TOKEN, read_timeout_s=60, retry=FAST_RETRY)
    flow = SayFlow.over_redis(redis, storage, client, observer=observer)
    try:
        yield flow
    finally:
        await flow.drain()
        await client.aclose()


@pytest.fixture(scope="module")
def service(piper_engine: PiperEngine) -> Iterator[Service]:
    with running_service(piper_engine, max_in_flight=8) as running:
        yield running


@pytest.fixture(scope="module")
def cloning_service(piper_engine: PiperEngine) -> Iterator[Service]:
    with running_service(CloningPiper(piper_engine)) as running:
        yield running


@pytest.fixture
def open_settings(storage_settings: StorageSettings) -> StorageSettings:
    return storage_settings.model_copy(update={"ratelimit_enabled": False})


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


async def test_a_saved_voice_never_gets_the_built_in_voices_cached_audio(
    redis_client: Redis, open_settings: StorageSettings, cloning_service: Service
) -> None:
    """The built-in voice's entry is read alongside the lookups, as the likeliest answer;
    for a user whose saved voice applies it must be left unused, and counted nowhere."""
    async with say_flow(redis_client, open_settings, cloning_service.url) as flow:
        built_in = await flow.say(request("The same words, two voices."))
        assert (built_in.voice, built_in.from_cache) == (VoiceSource.BUILT_IN, False)
        await saved_with_consent(flow, "test", "1", clip("wav"))
        before_tts = cloning_service.counter.tts_requests
        before = (flow.cache.metrics.cache_hits, flow.cache.metrics.cache_misses)
        saved = await flow.say(request("The same words, two voices."))
        assert (saved.voice, saved.from_cache) == (VoiceSource.SAVED, False)
        assert cloning_service.counter.tts_requests == before_tts + 1
        assert (flow.cache.metrics.cache_hits, flow.cache.metrics.cache_misses) == (
            before[0],
            before[1] + 1,  # one lookup, under the saved voice's key
        )
        again = await flow.say(request("The same words, two voices."))
        assert (again.voice, again.from_cache) == (VoiceSource.SAVED, True)
        assert again.audio == saved.audio


async def test_a_bot_started_while_the_service_is_down_still_serves_cached_audio(
    redis_client: Redis, open_settings: StorageSettings, service: Service, piper_engine: PiperEngine
) -> None:
    """Cache keys name the engine: the identity seen by an earlier bot, kept in Redis, lets
    a fresh bot find cached answers before the service (down, or a cold GPU) answers."""
    async with say_flow(redis_client, open_settings, service.url) as flow:
        first = await flow.say(request("Said before the restart."))
    remembered = await redis_client.get(keys.ENGINE_IDENTITY)
    assert remembered is not None
    assert EngineInfo.model_validate_json(remembered) == piper_engine.info
    with running_service(piper_engine) as gone:
        pass  # stopped: its port now refuses connections
    async with say_flow(redis_client, open_settings, gone.url) as restarted:
        again = await restarted.say(request("Said before the restart."))
        assert again.from_cache and again.audio == first.audio
        with pytest.raises(TTSUnavailable):
            await restarted.say(request("Never said before."))


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
                await saved_with_consent(flow, "test", "1", clip("wav"))
            result = await flow.say(request("Speaking without storage."))
            assert result.audio and not result.from_cache
    finally:
        await redis.aclose()


async def test_a_storage_blip_while_loading_a_saved_voice_falls_back_and_keeps_it(
    redis_client: Redis, open_settings: StorageSettings, cloning_service: Service
) -> None:
    """The pointer reads fine, the clip read fails: the built-in voice speaks, the user is
    not told their voice expired, and the pointer is still there for the next request."""
    async with say_flow(redis_client, open_settings, cloning_service.url) as flow:
        voice_id = (await saved_with_consent(flow, "test", "1", clip("wav"))).voice_id
    async with (
        restricted_client(redis_client, open_settings, NOT_VOICE_KEYS, ["+@all"]) as blinking,
        say_flow(blinking, open_settings, cloning_service.url) as flow,
    ):
        result = await flow.say(request("Where did my voice go?"))
        assert flow.voices.metrics.redis_errors >= 1, "the clip read really failed"
    assert result.voice is VoiceSource.BUILT_IN and result.audio
    assert result.note is not None and "expired" not in result.note
    assert await redis_client.get(keys.user_default("test", "1")) == voice_id.encode()
    async with say_flow(redis_client, open_settings, cloning_service.url) as flow:
        assert (await flow.say(request("There it is."))).voice is VoiceSource.SAVED


async def test_an_expired_voice_whose_pointer_cannot_be_cleared_still_gets_a_reply(
    redis_client: Redis, open_settings: StorageSettings, cloning_service: Service
) -> None:
    async with say_flow(redis_client, open_settings, cloning_service.url) as flow:
        voice_id = (await saved_with_consent(flow, "test", "1", clip("wav"))).voice_id
    await redis_client.delete(keys.voice_clip(voice_id))  # expired
    async with (
        restricted_client(redis_client, open_settings, ["*"], ["+@all", "-del"]) as no_del,
        say_flow(no_del, open_settings, cloning_service.url) as flow,
    ):
        result = await flow.say(request("Is anyone keeping my voice?"))
    assert (result.voice, result.note) == (VoiceSource.BUILT_IN, "your saved voice had expired")
    assert await redis_client.exists(keys.user_default("test", "1")) == 1, "DEL was refused"
    async with say_flow(redis_client, open_settings, cloning_service.url) as flow:
        again = await flow.say(request("Is anyone keeping my voice?", user="1"))
    assert again.note == "your saved voice had expired"
    assert await redis_client.exists(keys.user_default("test", "1")) == 0, "cleared this time"


async def test_using_a_saved_voice_keeps_the_users_list_of_voices_alive(
    redis_client: Redis, open_settings: StorageSettings, cloning_service: Service
) -> None:
    async with say_flow(redis_client, open_settings, cloning_service.url) as flow:
        voice_id = (await saved_with_consent(flow, "test", "1", clip("wav"))).voice_id
        for key in (keys.user_voices("test", "1"), keys.voice_clip(voice_id)):
            await redis_client.expire(key, 5)
        assert (await flow.say(request("Still mine."))).voice is VoiceSource.SAVED
    idle_ttl_s = open_settings.voice_idle_ttl_s
    for key in (keys.user_voices("test", "1"), keys.voice_clip(voice_id)):
        assert await redis_client.ttl(key) > idle_ttl_s - 60, key
    saved = await redis_client.smembers(keys.user_voices("test", "1"))
    assert {keys.as_text(v) for v in saved} == {voice_id}
    assert await redis_client.exists(keys.user_attached("test", "1")) == 0


async def test_forget_deletes_audio_made_with_a_clip_sent_for_one_request(
    redis_client: Redis, open_settings: StorageSettings, cloning_service: Service
) -> None:
    sent = clip("wav", seconds=2.0)
    voice_id = (await prepare_voice(sent)).voice_id
    once = SayRequest(
        platform="test",
        user_id="5",
        chat_id="5",
        text="Once, in my voice.",
        clip=BytesClip(sent, "5"),
    )
    async with say_flow(redis_client, open_settings, cloning_service.url) as flow:
        spoken = await said_with_consent(flow, once)
        assert spoken.voice is VoiceSource.ATTACHED and not spoken.from_cache
        cached = list(await redis_client.smembers(keys.voice_audio(voice_id)))
        assert len(cached) == 1 and await redis_client.exists(*cached) == 1
        assert await redis_client.exists(keys.voice_clip(voice_id)) == 0, "the clip is not kept"
        sent_ids = await redis_client.smembers(keys.user_attached("test", "5"))
        assert {keys.as_text(v) for v in sent_ids} == {voice_id}
        assert await redis_client.exists(keys.user_voices("test", "5")) == 0
        assert await redis_client.exists(keys.user_default("test", "5")) == 0
        attached_ttl_s = await redis_client.ttl(keys.user_attached("test", "5"))
        assert attached_ttl_s > open_settings.voice_idle_ttl_s - 60

        erased = await flow.forget_voice("test", "5")
        report = erased.voices

        assert report.attached_voices_forgotten == [voice_id]
        assert erased.consents == 1  # the consent to the recording goes with it
        assert await redis_client.exists(keys.user_consents("test", "5")) == 0
        assert report.cache_entries_deleted == 1 and report.anything_removed
        assert await redis_client.exists(*cached, keys.voice_audio(voice_id)) == 0
        user_keys = [keys.user_voices("test", "5"), keys.user_attached("test", "5")]
        assert await redis_client.exists(*user_keys, keys.user_default("test", "5")) == 0
        before = cloning_service.counter.tts_requests
        assert not (await said_with_consent(flow, once)).from_cache, (
            "the forgotten answer is not served"
        )
        assert cloning_service.counter.tts_requests == before + 1


async def test_a_cancelled_request_is_finished_and_counted(
    redis_client: Redis, open_settings: StorageSettings, piper_engine: PiperEngine
) -> None:
    """Cancelled mid-synthesis: the in-flight count drops back, the request is counted as
    cancelled, and the synthesis it started still lands in the cache for the next asker."""
    engine = CloningPiper(piper_engine, gate=threading.Event())
    observer = CountingObserver()
    assert engine.gate is not None
    with running_service(engine) as service:
        try:
            async with observed_flow(redis_client, open_settings, service.url, observer) as flow:
                task = asyncio.create_task(flow.say(request("Cancel me mid-sentence.")))
                assert await asyncio.to_thread(engine.entered.wait, 30), "never synthesised"
                assert observer.in_flight == 1
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert (observer.in_flight, observer.finished) == (0, ["cancelled"])
                await flow.settled()  # usage is counted off the answer's path
                today = utc_today()
                usage = await UsageReader(redis_client, open_settings).summary(today, today)
                assert usage.errors_by_code == {"cancelled": 1}
                assert usage.errors_by_platform == {"test": {"cancelled": 1}}

                engine.gate.set()
                again = await flow.say(request("Cancel me mid-sentence."))
                assert again.from_cache and service.counter.tts_requests == 1
                assert (observer.in_flight, observer.finished) == (0, ["cancelled", "hit"])
        finally:
            engine.gate.set()  # before the service stops: it waits for its worker thread
