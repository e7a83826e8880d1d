"""Cloning only with the speaker's say-so, through the flow over real Valkey and a real
service whose engine clones (Piper behind a cloning engine's face)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from bots.chosen_voice import VoiceSource, prepare_voice
from bots.clips import BytesClip
from bots.consent import CONSENT_WORDING_VERSION
from bots.errors import ConsentLapsed, ConsentNeeded, NotYourClip
from bots.say import SavedVoice, SayRequest, SayResult
from storage import keys
from storage.settings import StorageSettings
from storage.usage import UsageReader, utc_today
from tests.bots.harness import Service, running_service, said_with_consent, say_flow
from tests.tts_service.audio_samples import clip
from tests.tts_service.engine_wrappers import CloningPiper
from tts_service.engines.piper import PiperEngine

ALICE, BOB = "100", "200"


@pytest.fixture(scope="module")
def cloning_service(piper_engine: PiperEngine) -> Iterator[Service]:
    with running_service(CloningPiper(piper_engine)) as running:
        yield running


@pytest.fixture
def open_settings(storage_settings: StorageSettings) -> StorageSettings:
    return storage_settings.model_copy(update={"ratelimit_enabled": False})


def in_voice(user: str, clip_bytes: bytes, sender: str | None = None, **kw: bool) -> SayRequest:
    sent = BytesClip(clip_bytes, sender or user, **kw)
    return SayRequest("test", user, user, "Say this in my voice.", clip=sent)


async def voice_keys(redis: Redis) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=f"{keys.PREFIX}voice:*")]


async def test_someone_elses_or_a_forwarded_clip_is_refused_before_it_is_fetched(
    redis_client: Redis, open_settings: StorageSettings, cloning_service: Service
) -> None:
    """Alice replies /say to Bob's voice note: refused, saying why, and nothing downloaded."""

    class Untouchable(BytesClip):
        async def read(self, max_bytes: int, timeout_s: float) -> bytes:
            raise AssertionError("someone else's clip was downloaded")

    bobs = Untouchable(clip("wav"), BOB)
    before = cloning_service.counter.tts_requests
    async with say_flow(redis_client, open_settings, cloning_service.url) as flow:
        with pytest.raises(NotYourClip, match="sent by someone else"):
            await flow.say(SayRequest("test", ALICE, ALICE, "Hi.", clip=bobs))
        with pytest.raises(NotYourClip, match="sent by someone else"):
            await flow.save_voice("test", ALICE, bobs)
        forwarded = Untouchable(clip("wav"), ALICE, forwarded=True)
        with pytest.raises(NotYourClip, match="forwarded"):
            await flow.save_voice("test", ALICE, forwarded)
    assert cloning_service.counter.tts_requests == before
    assert await voice_keys(redis_client) == []


async def test_a_recording_is_cloned_only_after_its_sender_confirms_once(
    redis_client: Redis, open_settings: StorageSettings, cloning_service: Service
) -> None:
    mine = clip("wav", seconds=2.5)
    voice_id = (await prepare_voice(mine)).voice_id
    before = cloning_service.counter.tts_requests
    async with say_flow(redis_client, open_settings, cloning_service.url) as flow:
        with pytest.raises(ConsentNeeded) as asked:
            await flow.say(in_voice(ALICE, mine))
        # Waiting for the answer: nothing stored, nothing synthesised.
        assert await voice_keys(redis_client) == []
        assert cloning_service.counter.tts_requests == before
        with pytest.raises(NotYourClip, match="only the person who sent the clip"):
            await flow.answer_consent("test", BOB, asked.value.pending_id, True)
        answered = await flow.answer_consent("test", ALICE, asked.value.pending_id, True)
        assert isinstance(answered, SayResult) and answered.voice is VoiceSource.ATTACHED
        consents = await flow.consents.of_user("test", ALICE)
        assert [(c.voice_id, c.wording_version) for c in consents] == [
            (voice_id, CONSENT_WORDING_VERSION)
        ]
        again = await flow.say(in_voice(ALICE, mine))  # asked once per recording
        assert again.from_cache and again.audio == answered.audio
        with pytest.raises(ConsentLapsed):  # a button pressed twice
            await flow.answer_consent("test", ALICE, asked.value.pending_id, True)
        status = await flow.voice_status("test", ALICE)
        assert [c.voice_id for c in status.consents] == [voice_id]


async def test_declining_drops_the_clip_at_once_and_stores_nothing(
    redis_client: Redis, open_settings: StorageSettings, cloning_service: Service
) -> None:
    before = cloning_service.counter.tts_requests
    async with say_flow(redis_client, open_settings, cloning_service.url) as flow:
        with pytest.raises(ConsentNeeded) as asked:
            await flow.save_voice("test", ALICE, BytesClip(clip("wav"), ALICE))
        assert await flow.answer_consent("test", ALICE, asked.value.pending_id, False) is None
        with pytest.raises(ConsentLapsed):
            await flow.answer_consent("test", ALICE, asked.value.pending_id, True)
        assert await flow.voices.default_voice("test", ALICE) is None
    assert await voice_keys(redis_client) == []
    assert await redis_client.exists(keys.user_consents("test", ALICE)) == 0
    assert cloning_service.counter.tts_requests == before


async def test_a_saved_voice_is_stored_only_once_confirmed(
    redis_client: Redis, open_settings: StorageSettings, cloning_service: Service
) -> None:
    async with say_flow(redis_client, open_settings, cloning_service.url) as flow:
        with pytest.raises(ConsentNeeded) as asked:
            await flow.save_voice("test", ALICE, BytesClip(clip("wav"), ALICE))
        assert await flow.voices.default_voice("test", ALICE) is None
        saved = await flow.answer_consent("test", ALICE, asked.value.pending_id, True)
        assert isinstance(saved, SavedVoice) and saved.usable_now
        assert await flow.voices.default_voice("test", ALICE) == saved.voice_id
        spoken = await flow.say(SayRequest("test", ALICE, ALICE, "Now in my voice."))
        assert spoken.voice is VoiceSource.SAVED


async def test_forget_deletes_everything_of_the_user_and_nothing_of_anyone_else(
    redis_client: Redis, open_settings: StorageSettings, cloning_service: Service
) -> None:
    async with say_flow(redis_client, open_settings, cloning_service.url) as flow:
        await said_with_consent(flow, in_voice(ALICE, clip("wav", seconds=2.0)))
        await said_with_consent(flow, in_voice(BOB, clip("wav", seconds=3.0)))
        with pytest.raises(ConsentNeeded) as waiting:  # a question Alice never answered
            await flow.save_voice("test", ALICE, BytesClip(clip("wav", seconds=4.0), ALICE))
        await flow.settled()

        erased = await flow.forget_voice("test", ALICE)

        assert erased.consents == 1 and erased.waiting_clips == 1 and erased.usage_counters > 0
        assert erased.voices.cache_entries_deleted == 1
        with pytest.raises(ConsentLapsed):
            await flow.answer_consent("test", ALICE, waiting.value.pending_id, True)
        assert await redis_client.exists(keys.user_consents("test", ALICE)) == 0
        today = utc_today()
        users = await UsageReader(redis_client, open_settings).top_users(today, today, 10)
        assert [u.user_id for u in users] == [BOB]  # Alice's rows are gone, Bob's stay
        assert len(await flow.consents.of_user("test", BOB)) == 1
        assert not (await flow.forget_voice("test", ALICE)).anything_removed
