"""Voice clips: content-addressed, owned per user, idle-expiring, forgettable with their audio."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from storage import keys
from storage.cache import AudioCache, CachedAudio, cache_key
from storage.errors import VoiceTooLarge
from storage.settings import StorageSettings
from storage.voices import VoiceStore
from tts_service.schema import AudioFormat, TTSParams

ALICE = ("telegram", "111")
BOB = ("discord", "222")
VOICE_A = "a1" * 32
VOICE_B = "b2" * 32
VOICE_SHARED = "c3" * 32


@pytest.fixture
def store(redis_client: Redis, storage_settings: StorageSettings) -> VoiceStore:
    settings = storage_settings.model_copy(
        update={"voice_idle_ttl_s": 1000, "voice_max_bytes": 100}
    )
    return VoiceStore(redis_client, settings)


async def cache_answer(
    redis_client: Redis, settings: StorageSettings, text: str, voice_id: str | None
) -> str:
    key = cache_key(TTSParams(text=text), voice_id, "chatterbox", "0.1.7")
    entry = CachedAudio(
        b"audio " + text.encode(), AudioFormat.OGG_OPUS, 1.0, "chatterbox", time.time(), voice_id
    )
    assert await AudioCache(redis_client, settings).put(key, entry)
    return key


async def test_save_get_and_default(store: VoiceStore) -> None:
    assert await store.default_voice(*ALICE) is None
    await store.save(*ALICE, VOICE_A, b"clip-a")
    assert await store.default_voice(*ALICE) == VOICE_A
    assert await store.get_clip(VOICE_A) == b"clip-a"
    await store.save(*ALICE, VOICE_B, b"clip-b", make_default=False)
    assert await store.default_voice(*ALICE) == VOICE_A
    assert await store.get_clip("00" * 32) is None


async def test_clips_over_the_cap_are_refused(store: VoiceStore, redis_client: Redis) -> None:
    with pytest.raises(VoiceTooLarge) as caught:
        await store.save(*ALICE, VOICE_A, b"x" * 101)
    assert (caught.value.size_bytes, caught.value.max_bytes) == (101, 100)
    assert await redis_client.exists(keys.voice_clip(VOICE_A)) == 0


async def test_invalid_ids_are_refused(store: VoiceStore) -> None:
    with pytest.raises(ValueError):
        await store.save(*ALICE, "../../etc", b"clip")
    with pytest.raises(ValueError):
        await store.save("telegram", "1:2", VOICE_A, b"clip")


async def test_use_restarts_the_idle_ttl(store: VoiceStore, redis_client: Redis) -> None:
    await store.save(*ALICE, VOICE_A, b"clip-a")
    for key in (keys.voice_clip(VOICE_A), keys.voice_owners(VOICE_A), keys.user_default(*ALICE)):
        assert 990 <= await redis_client.ttl(key) <= 1000
        await redis_client.expire(key, 5)
    assert await store.get_clip(VOICE_A) == b"clip-a"
    assert await store.default_voice(*ALICE) == VOICE_A
    for key in (keys.voice_clip(VOICE_A), keys.voice_owners(VOICE_A), keys.user_default(*ALICE)):
        assert await redis_client.ttl(key) > 900, key


async def test_set_default_only_to_own_voices(store: VoiceStore) -> None:
    await store.save(*ALICE, VOICE_A, b"clip-a", make_default=False)
    await store.save(*BOB, VOICE_B, b"clip-b")
    assert not await store.set_default(*ALICE, VOICE_B)
    assert await store.default_voice(*ALICE) is None
    assert await store.set_default(*ALICE, VOICE_A)
    assert await store.default_voice(*ALICE) == VOICE_A
    assert await store.clear_default(*ALICE)
    assert not await store.clear_default(*ALICE)
    assert await store.default_voice(*ALICE) is None
    assert await store.get_clip(VOICE_A) == b"clip-a", "clearing the default keeps the clip"


async def test_list_for_user(store: VoiceStore, redis_client: Redis) -> None:
    await store.save(*ALICE, VOICE_A, b"clip-a")
    await store.save(*ALICE, VOICE_B, b"clip-bb", make_default=False)
    await store.save(*BOB, VOICE_SHARED, b"bob's")
    listed = await store.list_for_user(*ALICE)
    assert [(v.voice_id, v.size_bytes, v.is_default) for v in listed] == [
        (VOICE_A, 6, True),
        (VOICE_B, 7, False),
    ]
    assert all(900 < v.expires_in_s <= 1000 for v in listed)
    await redis_client.delete(keys.voice_clip(VOICE_B))  # expired
    assert [v.voice_id for v in await store.list_for_user(*ALICE)] == [VOICE_A]
    assert await store.list_for_user("telegram", "nobody") == []


async def test_forget_removes_clips_default_and_their_cached_audio(
    store: VoiceStore, redis_client: Redis, storage_settings: StorageSettings
) -> None:
    await store.save(*ALICE, VOICE_A, b"clip-a")
    await store.save(*ALICE, VOICE_B, b"clip-b", make_default=False)
    await store.save(*BOB, VOICE_SHARED, b"bob's")
    made_with_a = [
        await cache_answer(redis_client, storage_settings, f"line {i}", VOICE_A) for i in range(3)
    ]
    made_with_b = await cache_answer(redis_client, storage_settings, "bee", VOICE_B)
    bobs = await cache_answer(redis_client, storage_settings, "bob speaks", VOICE_SHARED)
    built_in = await cache_answer(redis_client, storage_settings, "no voice", None)

    report = await store.forget(*ALICE)

    assert sorted(report.voices_deleted) == sorted([VOICE_A, VOICE_B])
    assert report.voices_still_owned_by_others == []
    assert report.cache_entries_deleted == 4 and report.default_cleared and report.anything_removed
    for voice_id in (VOICE_A, VOICE_B):
        assert await store.get_clip(voice_id) is None
        assert (
            await redis_client.exists(keys.voice_owners(voice_id), keys.voice_audio(voice_id)) == 0
        )
    assert await redis_client.exists(*made_with_a, made_with_b) == 0
    assert await store.default_voice(*ALICE) is None
    assert await store.list_for_user(*ALICE) == []
    # Bob's voice, his audio and the built-in voice's audio are untouched.
    assert await store.get_clip(VOICE_SHARED) == b"bob's"
    assert await redis_client.exists(bobs, built_in) == 2
    assert not (await store.forget(*ALICE)).anything_removed


async def test_forget_keeps_a_clip_another_user_also_saved(
    store: VoiceStore, redis_client: Redis, storage_settings: StorageSettings
) -> None:
    await store.save(*ALICE, VOICE_SHARED, b"same bytes")
    await store.save(*BOB, VOICE_SHARED, b"same bytes")
    answer = await cache_answer(redis_client, storage_settings, "shared", VOICE_SHARED)

    report = await store.forget(*ALICE)
    assert report.voices_still_owned_by_others == [VOICE_SHARED] and report.voices_deleted == []
    assert await store.get_clip(VOICE_SHARED) == b"same bytes"
    assert await store.default_voice(*ALICE) is None
    assert await store.default_voice(*BOB) == VOICE_SHARED

    report = await store.forget(*BOB)
    assert report.voices_deleted == [VOICE_SHARED] and report.cache_entries_deleted == 1
    assert await store.get_clip(VOICE_SHARED) is None
    assert await redis_client.exists(answer) == 0


async def test_forget_does_not_delete_a_voice_the_user_does_not_own(
    store: VoiceStore, redis_client: Redis
) -> None:
    """A default pointer alone (e.g. written by an older version) grants no ownership."""
    await store.save(*BOB, VOICE_B, b"bob's")
    await redis_client.set(keys.user_default(*ALICE), VOICE_B)
    report = await store.forget(*ALICE)
    assert report.voices_deleted == [] and report.default_cleared
    assert await store.get_clip(VOICE_B) == b"bob's"
