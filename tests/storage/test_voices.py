"""Voice clips: content-addressed, owned per user, idle-expiring, forgettable with their audio."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from storage import keys
from storage.cache import AudioCache, CachedAudio
from storage.cache_keys import cache_key
from storage.clip_cipher import ClipCipher, key_id, new_key_text, parse_keys
from storage.errors import StorageUnavailable, VoiceTooLarge
from storage.metrics import StorageMetrics
from storage.redis import make_client
from storage.sent_files import SentFiles
from storage.settings import StorageSettings
from storage.voices import ClipLookup, VoiceStore
from tests.audio_bytes import ogg
from tests.redis_fixtures import make_settings, restricted_client, start_valkey
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


async def clip_of(store: VoiceStore, voice_id: str) -> bytes | None:
    return (await store.lookup_clip(voice_id)).clip


async def voices_of(redis_client: Redis, user: tuple[str, str]) -> tuple[set[str], set[str]]:
    """What ``forget`` finds for the user: the voices they saved, and those they only sent."""
    saved = await redis_client.smembers(keys.user_voices(*user))
    sent = await redis_client.smembers(keys.user_attached(*user))
    return {keys.as_text(v) for v in saved}, {keys.as_text(v) for v in sent}


async def cache_answer(
    redis_client: Redis, settings: StorageSettings, text: str, voice_id: str | None
) -> str:
    key = cache_key(TTSParams(text=text), voice_id, "chatterbox", "0.1.7")
    entry = CachedAudio(
        ogg(text.encode()), AudioFormat.OGG_OPUS, 1.0, "chatterbox", time.time(), voice_id
    )
    assert await AudioCache(redis_client, settings).put(key, entry)
    # Sent once on Telegram: the file id it gave is kept beside the answer, and goes with it.
    await SentFiles(redis_client, settings).remember(key, "telegram:1", entry.audio, f"id-{text}")
    return key


async def test_save_get_and_default(store: VoiceStore) -> None:
    assert await store.default_voice(*ALICE) is None
    await store.save(*ALICE, VOICE_A, b"clip-a")
    assert await store.default_voice(*ALICE) == VOICE_A
    assert await clip_of(store, VOICE_A) == b"clip-a"
    await store.save(*ALICE, VOICE_B, b"clip-b", make_default=False)
    assert await store.default_voice(*ALICE) == VOICE_A
    assert await clip_of(store, "00" * 32) is None


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
    assert await clip_of(store, VOICE_A) == b"clip-a"
    assert await store.default_voice(*ALICE) == VOICE_A
    for key in (keys.voice_clip(VOICE_A), keys.voice_owners(VOICE_A), keys.user_default(*ALICE)):
        assert await redis_client.ttl(key) > 900, key


async def test_clear_default_keeps_the_clip(store: VoiceStore) -> None:
    await store.save(*ALICE, VOICE_A, b"clip-a")
    await store.save(*BOB, VOICE_B, b"clip-b")
    assert await store.default_voice(*ALICE) == VOICE_A
    assert await store.clear_default(*ALICE)
    assert not await store.clear_default(*ALICE)
    assert await store.default_voice(*ALICE) is None
    assert await store.default_voice(*BOB) == VOICE_B, "only the user's own default"
    assert await clip_of(store, VOICE_A) == b"clip-a", "clearing the default keeps the clip"


async def test_save_records_the_voice_for_its_user(store: VoiceStore, redis_client: Redis) -> None:
    await store.save(*ALICE, VOICE_A, b"clip-a")
    await store.save(*ALICE, VOICE_B, b"clip-bb", make_default=False)
    await store.save(*BOB, VOICE_SHARED, b"bob's")
    assert await voices_of(redis_client, ALICE) == ({VOICE_A, VOICE_B}, set())
    assert await store.default_voice(*ALICE) == VOICE_A
    assert [await redis_client.strlen(keys.voice_clip(v)) for v in (VOICE_A, VOICE_B)] == [6, 7]
    for key in (keys.user_voices(*ALICE), keys.voice_clip(VOICE_A), keys.voice_clip(VOICE_B)):
        assert 900 < await redis_client.ttl(key) <= 1000, key
    assert await voices_of(redis_client, ("telegram", "nobody")) == (set(), set())


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
        assert await clip_of(store, voice_id) is None
        assert (
            await redis_client.exists(keys.voice_owners(voice_id), keys.voice_audio(voice_id)) == 0
        )
    assert await redis_client.exists(*made_with_a, made_with_b) == 0
    assert await redis_client.exists(*map(keys.sent_files, [*made_with_a, made_with_b])) == 0
    assert await redis_client.exists(keys.sent_files(bobs), keys.sent_files(built_in)) == 2
    assert await store.default_voice(*ALICE) is None
    assert await voices_of(redis_client, ALICE) == (set(), set())
    # Bob's voice, his audio and the built-in voice's audio are untouched.
    assert await clip_of(store, VOICE_SHARED) == b"bob's"
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
    assert await clip_of(store, VOICE_SHARED) == b"same bytes"
    assert await store.default_voice(*ALICE) is None
    assert await store.default_voice(*BOB) == VOICE_SHARED

    report = await store.forget(*BOB)
    assert report.voices_deleted == [VOICE_SHARED] and report.cache_entries_deleted == 1
    assert await clip_of(store, VOICE_SHARED) is None
    assert await redis_client.exists(answer) == 0


async def test_forget_does_not_delete_a_voice_the_user_does_not_own(
    store: VoiceStore, redis_client: Redis
) -> None:
    """A default pointer alone (e.g. written by an older version) grants no ownership."""
    await store.save(*BOB, VOICE_B, b"bob's")
    await redis_client.set(keys.user_default(*ALICE), VOICE_B)
    report = await store.forget(*ALICE)
    assert report.voices_deleted == [] and report.default_cleared
    assert await clip_of(store, VOICE_B) == b"bob's"


async def test_use_with_the_user_restarts_the_idle_ttl_of_their_voice_list(
    store: VoiceStore, redis_client: Redis
) -> None:
    await store.save(*ALICE, VOICE_A, b"clip-a")
    await redis_client.expire(keys.user_voices(*ALICE), 5)
    assert await store.lookup_clip(VOICE_A, *ALICE) == ClipLookup(clip=b"clip-a")
    assert await redis_client.ttl(keys.user_voices(*ALICE)) > 900
    assert await voices_of(redis_client, ALICE) == ({VOICE_A}, set())


async def test_lookup_tells_an_expired_clip_from_a_dead_server(tmp_path: Path) -> None:
    server = start_valkey(data_dir=tmp_path)
    settings = make_settings(f"redis://127.0.0.1:{server.port}", redis_retries=0)
    client = make_client(f"redis://127.0.0.1:{server.port}", settings)
    store = VoiceStore(client, settings, StorageMetrics(cooldown_s=0.1))
    try:
        await store.save(*ALICE, VOICE_A, b"clip-a")
        found = await store.lookup_clip(VOICE_A, *ALICE)
        assert (found.clip, found.unavailable, found.expired) == (b"clip-a", False, False)
        gone = await store.lookup_clip(VOICE_B, *ALICE)
        assert (gone.clip, gone.unavailable, gone.expired) == (None, False, True)
        server.terminate()
        down = await store.lookup_clip(VOICE_A, *ALICE)
        assert (down.clip, down.unavailable, down.expired) == (None, True, False)
        skipped = await store.lookup_clip(VOICE_A)  # the breaker is open: not even tried
        assert skipped.unavailable and store.metrics.redis_skipped >= 1
    finally:
        await client.aclose()
        if server.is_running():
            server.stop()


async def test_a_voice_sent_once_is_recorded_and_forgotten_with_its_audio_but_never_stored(
    store: VoiceStore, redis_client: Redis, storage_settings: StorageSettings
) -> None:
    assert await store.note_attached(*ALICE, VOICE_A)
    answers = [
        await cache_answer(redis_client, storage_settings, f"sent {i}", VOICE_A) for i in range(2)
    ]
    assert await redis_client.exists(keys.voice_clip(VOICE_A), keys.voice_owners(VOICE_A)) == 0
    assert 990 <= await redis_client.ttl(keys.user_attached(*ALICE)) <= 1000
    assert await voices_of(redis_client, ALICE) == (set(), {VOICE_A})
    assert await store.default_voice(*ALICE) is None

    report = await store.forget(*ALICE)

    assert report.attached_voices_forgotten == [VOICE_A] and report.voices_deleted == []
    assert report.cache_entries_deleted == 2 and report.anything_removed
    assert await redis_client.exists(*answers, keys.voice_audio(VOICE_A)) == 0
    assert await redis_client.exists(keys.user_attached(*ALICE)) == 0
    assert await voices_of(redis_client, ALICE) == (set(), set())


async def test_a_saved_voice_also_sent_once_is_forgotten_once(
    store: VoiceStore, redis_client: Redis
) -> None:
    await store.save(*ALICE, VOICE_A, b"clip-a")
    await store.note_attached(*ALICE, VOICE_A)
    await store.note_attached(*ALICE, VOICE_B)
    assert await voices_of(redis_client, ALICE) == ({VOICE_A}, {VOICE_A, VOICE_B})
    report = await store.forget(*ALICE)
    assert (report.voices_deleted, report.attached_voices_forgotten) == ([VOICE_A], [VOICE_B])


async def test_sending_a_voice_someone_saved_does_not_let_forget_delete_theirs(
    store: VoiceStore, redis_client: Redis, storage_settings: StorageSettings
) -> None:
    await store.save(*BOB, VOICE_SHARED, b"bob's")
    await store.note_attached(*ALICE, VOICE_SHARED)
    bobs = await cache_answer(redis_client, storage_settings, "bob's words", VOICE_SHARED)
    report = await store.forget(*ALICE)
    assert report.attached_voices_forgotten == [VOICE_SHARED]
    assert report.cache_entries_deleted == 0
    assert await clip_of(store, VOICE_SHARED) == b"bob's"
    assert await redis_client.exists(bobs) == 1
    assert await redis_client.exists(keys.voice_forgotten(VOICE_SHARED)) == 0


async def test_a_synthesis_finishing_after_forget_does_not_cache_its_audio(
    store: VoiceStore, redis_client: Redis, storage_settings: StorageSettings
) -> None:
    """Forget lands while a synthesis with the voice runs; its answer must not come back."""
    await store.save(*ALICE, VOICE_A, b"clip-a")
    cache = AudioCache(redis_client, storage_settings)
    k = cache_key(TTSParams(text="slow words"), VOICE_A, "chatterbox", "0.1.7")
    running, finish = asyncio.Event(), asyncio.Event()

    async def synthesize() -> CachedAudio:
        running.set()
        await finish.wait()
        return CachedAudio(
            ogg(b"made after forget"), AudioFormat.OGG_OPUS, 1.0, "chatterbox", time.time(), VOICE_A
        )

    in_flight = asyncio.create_task(cache.get_or_create(k, synthesize))
    await running.wait()
    report = await store.forget(*ALICE)
    assert report.voices_deleted == [VOICE_A]
    tombstone_ttl_s = await redis_client.ttl(keys.voice_forgotten(VOICE_A))
    assert keys.VOICE_FORGOTTEN_TTL_S - 5 <= tombstone_ttl_s <= keys.VOICE_FORGOTTEN_TTL_S
    finish.set()

    made, from_cache = await asyncio.wait_for(in_flight, 10)
    assert made.audio == ogg(b"made after forget") and not from_cache, "the asker still gets it"
    assert await redis_client.exists(k, keys.voice_audio(VOICE_A)) == 0
    assert cache.metrics.cache_voice_forgotten == 1
    # Other voices and the built-in voice cache as before.
    assert await cache_answer(redis_client, storage_settings, "other", VOICE_B)
    assert await cache_answer(redis_client, storage_settings, "built in", None)


async def test_the_tombstone_outlives_the_longest_single_flight_wait(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    patient = storage_settings.model_copy(update={"singleflight_wait_timeout_s": 1000.0})
    store = VoiceStore(redis_client, patient)
    await store.note_attached(*ALICE, VOICE_A)
    await store.forget(*ALICE)
    assert 1050 <= await redis_client.ttl(keys.voice_forgotten(VOICE_A)) <= 1060


# --- clips at rest ---------------------------------------------------------------------------

FLAC_CLIP = b"fLaC" + b"\x00\x00\x00\x22" + bytes(range(50))


def sealed_store(
    redis_client: Redis, storage_settings: StorageSettings, key_text: str
) -> VoiceStore:
    settings = storage_settings.model_copy(update={"voice_idle_ttl_s": 1000})
    return VoiceStore(redis_client, settings, cipher=ClipCipher.from_text(key_text))


async def test_clips_are_stored_encrypted_and_read_back(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    store = sealed_store(redis_client, storage_settings, new_key_text())
    await store.save(*ALICE, VOICE_A, FLAC_CLIP)
    stored = await redis_client.get(keys.voice_clip(VOICE_A))
    assert not stored.startswith(b"fLaC") and FLAC_CLIP[4:] not in stored
    assert await store.lookup_clip(VOICE_A, *ALICE) == ClipLookup(clip=FLAC_CLIP)
    assert await redis_client.get(keys.voice_clip(VOICE_A)) == stored, "no rewrite when current"


async def test_a_clip_no_key_opens_is_unavailable_not_expired_nor_a_crash(
    redis_client: Redis, storage_settings: StorageSettings, caplog: pytest.LogCaptureFixture
) -> None:
    await sealed_store(redis_client, storage_settings, new_key_text()).save(
        *ALICE, VOICE_A, FLAC_CLIP
    )
    stored = await redis_client.get(keys.voice_clip(VOICE_A))
    wrong = sealed_store(redis_client, storage_settings, new_key_text())
    no_key = VoiceStore(redis_client, storage_settings)
    for store in (wrong, no_key):
        with caplog.at_level(logging.WARNING, logger="storage"):
            found = await store.lookup_clip(VOICE_A, *ALICE)
        assert (found.clip, found.unavailable, found.expired) == (None, True, False)
    assert "cannot be decrypted" in caplog.text and "SAYBOT_DATA_KEY is not set" in caplog.text
    assert VOICE_A in caplog.text
    assert await redis_client.get(keys.voice_clip(VOICE_A)) == stored, "kept for the right key"
    # A clip moved under another voice's key does not open either.
    await redis_client.set(keys.voice_clip(VOICE_B), stored)
    right = sealed_store(redis_client, storage_settings, new_key_text())
    assert (await right.lookup_clip(VOICE_B)).unavailable


async def test_rotation_reseals_on_use_under_the_first_key(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    old, new = new_key_text(), new_key_text()
    await sealed_store(redis_client, storage_settings, old).save(*ALICE, VOICE_A, FLAC_CLIP)
    await redis_client.expire(keys.voice_clip(VOICE_A), 500)
    rotating = sealed_store(redis_client, storage_settings, f"{new},{old}")
    assert (await rotating.lookup_clip(VOICE_A)).clip == FLAC_CLIP
    stored = await redis_client.get(keys.voice_clip(VOICE_A))
    assert stored[1:9] == key_id(parse_keys(new)[0])
    assert 990 <= await redis_client.ttl(keys.voice_clip(VOICE_A)) <= 1000, "its TTL restarted"
    only_new = sealed_store(redis_client, storage_settings, new)
    assert (await only_new.lookup_clip(VOICE_A)).clip == FLAC_CLIP, "the old key can go now"


async def test_a_clip_stored_before_encryption_is_sealed_when_used(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    await VoiceStore(redis_client, storage_settings).save(*ALICE, VOICE_A, FLAC_CLIP)
    assert await redis_client.get(keys.voice_clip(VOICE_A)) == FLAC_CLIP
    store = sealed_store(redis_client, storage_settings, new_key_text())
    assert (await store.lookup_clip(VOICE_A)).clip == FLAC_CLIP
    assert not (await redis_client.get(keys.voice_clip(VOICE_A))).startswith(b"fLaC")
    assert (await store.lookup_clip(VOICE_A)).clip == FLAC_CLIP


async def test_resealing_never_brings_back_a_forgotten_clip(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    """The write-back is SET XX: a forget between the read and the write wins."""
    old = new_key_text()
    await sealed_store(redis_client, storage_settings, old).save(*ALICE, VOICE_A, FLAC_CLIP)
    stored = await redis_client.get(keys.voice_clip(VOICE_A))
    rotating = sealed_store(redis_client, storage_settings, f"{new_key_text()},{old}")
    await rotating.forget(*ALICE)
    found = await rotating._opened(VOICE_A, stored)  # as if read just before the forget
    assert found.clip == FLAC_CLIP
    assert await redis_client.exists(keys.voice_clip(VOICE_A)) == 0


# --- at most a few voices per user -----------------------------------------------------------


async def test_saving_past_the_limit_lets_go_of_the_oldest_voice(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    settings = storage_settings.model_copy(update={"max_voices_per_user": 2})
    store = VoiceStore(redis_client, settings)
    await store.save(*ALICE, VOICE_A, b"clip-a")
    made_with_a = await cache_answer(redis_client, storage_settings, "by a", VOICE_A)
    await store.save(*ALICE, VOICE_SHARED, b"shared", make_default=False)
    await store.save(*BOB, VOICE_SHARED, b"shared")
    assert await store.save(*ALICE, VOICE_A, b"clip-a") == [], "saved again: now the newest"

    assert await store.save(*ALICE, VOICE_B, b"clip-b", make_default=False) == [VOICE_SHARED]
    assert await voices_of(redis_client, ALICE) == ({VOICE_A, VOICE_B}, set())
    assert await clip_of(store, VOICE_SHARED) == b"shared", "Bob still owns it"
    assert await store.default_voice(*BOB) == VOICE_SHARED

    dropped = await store.save(*ALICE, "d4" * 32, b"clip-d", make_default=False)
    assert dropped == [VOICE_A]
    assert await clip_of(store, VOICE_A) is None, "nobody else owned it: deleted"
    assert await redis_client.exists(made_with_a, keys.voice_audio(VOICE_A)) == 0
    assert await redis_client.exists(keys.voice_forgotten(VOICE_A)) == 1
    assert await store.default_voice(*ALICE) is None, "it was the default"
    assert await voices_of(redis_client, ALICE) == ({VOICE_B, "d4" * 32}, set())
    assert await redis_client.zcard(keys.user_voice_saved_at(*ALICE)) == 2
    await store.forget(*ALICE)
    assert await redis_client.exists(keys.user_voice_saved_at(*ALICE)) == 0


async def test_the_default_limit_is_three_and_untimed_voices_count_as_oldest(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    store = VoiceStore(redis_client, storage_settings)
    assert storage_settings.max_voices_per_user == 3
    # Saved by a saybot that kept no save times.
    await store.save(*ALICE, VOICE_B, b"clip-b")
    await redis_client.delete(keys.user_voice_saved_at(*ALICE))
    for n in range(2):
        assert await store.save(*ALICE, f"e{n}" * 32, b"clip") == []
    assert await store.save(*ALICE, VOICE_A, b"clip-a") == [VOICE_B]
    assert len((await voices_of(redis_client, ALICE))[0]) == 3


# --- the audio cache on a server of its own --------------------------------------------------


async def test_forget_deletes_answers_on_the_cache_server_and_the_index_on_the_data_server(
    redis_client: Redis, cache_client: Redis, storage_settings: StorageSettings
) -> None:
    store = VoiceStore(redis_client, storage_settings, cache_redis=cache_client)
    cache = AudioCache(cache_client, storage_settings, data_redis=redis_client)
    await store.save(*ALICE, VOICE_A, b"clip-a")
    key = cache_key(TTSParams(text="apart"), VOICE_A, "chatterbox", "0.1.7")
    entry = CachedAudio(ogg(b"apart"), AudioFormat.OGG_OPUS, 1.0, "chatterbox", 0.0, VOICE_A)
    assert await cache.put(key, entry)
    assert await cache_client.exists(key) == 1 and await redis_client.exists(key) == 0
    assert await redis_client.smembers(keys.voice_audio(VOICE_A)) == {key.encode()}
    assert await cache_client.exists(keys.voice_audio(VOICE_A)) == 0

    report = await store.forget(*ALICE)

    assert report.voices_deleted == [VOICE_A] and report.cache_entries_deleted == 1
    assert await cache_client.exists(key) == 0
    assert await redis_client.exists(keys.voice_audio(VOICE_A), keys.voice_clip(VOICE_A)) == 0
    assert await redis_client.exists(keys.voice_forgotten(VOICE_A)) == 1
    assert not await cache.put(key, entry), "the tombstone is on the data server"
    assert await cache_client.exists(key) == 0


async def test_a_synthesis_finishing_after_forget_does_not_cache_its_audio_across_servers(
    redis_client: Redis, cache_client: Redis, storage_settings: StorageSettings
) -> None:
    store = VoiceStore(redis_client, storage_settings, cache_redis=cache_client)
    await store.save(*ALICE, VOICE_A, b"clip-a")
    cache = AudioCache(cache_client, storage_settings, data_redis=redis_client)
    k = cache_key(TTSParams(text="slow words"), VOICE_A, "chatterbox", "0.1.7")
    running, finish = asyncio.Event(), asyncio.Event()

    async def synthesize() -> CachedAudio:
        running.set()
        await finish.wait()
        return CachedAudio(
            ogg(b"made after forget"), AudioFormat.OGG_OPUS, 1.0, "chatterbox", time.time(), VOICE_A
        )

    in_flight = asyncio.create_task(cache.get_or_create(k, synthesize))
    await running.wait()
    assert await cache_client.exists(keys.lock(keys.digest_of(k))) == 1, "locks: cache server"
    assert (await store.forget(*ALICE)).voices_deleted == [VOICE_A]
    finish.set()
    made, from_cache = await asyncio.wait_for(in_flight, 10)
    assert made.audio == ogg(b"made after forget") and not from_cache
    assert await cache_client.exists(k) == 0
    assert await redis_client.exists(k, keys.voice_audio(VOICE_A)) == 0
    assert cache.metrics.cache_voice_forgotten == 1


async def test_a_forget_cut_short_by_the_cache_server_finishes_when_tried_again(
    redis_client: Redis, cache_client: Redis, storage_settings: StorageSettings
) -> None:
    admin_settings = make_settings(
        f"redis://127.0.0.1:{cache_client.connection_pool.connection_kwargs['port']}"
    )
    store = VoiceStore(redis_client, storage_settings, cache_redis=cache_client)
    cache = AudioCache(cache_client, storage_settings, data_redis=redis_client)
    await store.save(*ALICE, VOICE_A, b"clip-a")
    key = cache_key(TTSParams(text="stays?"), VOICE_A, "chatterbox", "0.1.7")
    entry = CachedAudio(ogg(b"stays?"), AudioFormat.OGG_OPUS, 1.0, "chatterbox", 0.0, VOICE_A)
    assert await cache.put(key, entry)
    async with restricted_client(cache_client, admin_settings, ["~*"], ["+@all", "-del"]) as cut:
        cut_short = VoiceStore(redis_client, storage_settings, StorageMetrics(), cache_redis=cut)
        with pytest.raises(StorageUnavailable):
            await cut_short.forget(*ALICE)
    assert await cache_client.exists(key) == 1
    assert await clip_of(store, VOICE_A) is None, "the clip went at once"

    report = await store.forget(*ALICE)
    assert report.cache_entries_deleted == 1 and report.voices_deleted == [VOICE_A]
    assert await cache_client.exists(key) == 0
    assert await redis_client.exists(keys.voice_audio(VOICE_A), keys.user_voices(*ALICE)) == 0
