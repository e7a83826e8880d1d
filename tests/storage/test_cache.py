"""AudioCache against the session Valkey: storage, limits and single-flight in one process.

Two ``AudioCache`` objects on two clients behave like two bot processes: they share
nothing but Redis. The two-OS-process test is in ``test_singleflight_processes.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from storage import keys
from storage.cache import AudioCache, CachedAudio, decode_entry, encode_entry
from storage.cache_keys import cache_key
from storage.errors import SingleFlightFailed, SingleFlightTimeout
from storage.metrics import StorageMetrics
from storage.redis import make_client
from storage.sent_files import SentFiles
from storage.settings import StorageSettings
from storage.singleflight import error_rebuilder
from tests.audio_bytes import OGG_HEAD_PAGE, ogg
from tts_service.schema import AudioFormat, TTSParams

VOICE = "f0" * 32


class TTSTimeout(Exception):
    """Shaped like the bots' errors: a stable ``code`` and a ``message``."""

    code = "tts_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TTSBusy(TTSTimeout):
    code = "tts_busy"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def entry(audio: bytes = ogg(bytes(range(256)) * 16), voice_id: str | None = None) -> CachedAudio:
    return CachedAudio(
        audio=audio,
        format=AudioFormat.OGG_OPUS,
        duration_s=1.25,
        engine="piper",
        created_at=1_700_000_000.5,
        voice_id=voice_id,
    )


def key(text: str = "hello there") -> str:
    return cache_key(TTSParams(text=text), None, "piper", "1")


class Counting:
    """A stand-in synthesis: counts calls, takes ``delay_s``, optionally fails."""

    def __init__(self, delay_s: float = 0.2, fail: BaseException | None = None) -> None:
        self.calls = 0
        self.delay_s = delay_s
        self.fail = fail

    async def __call__(self) -> CachedAudio:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        return entry(audio=ogg(b"made-" + str(self.calls).encode()))


@pytest.fixture
async def other_client(storage_settings: StorageSettings) -> AsyncIterator[Redis]:
    """A second connection pool: what another bot process would have, already connected
    (a cluster client learns the slots and reaches every node on its first command)."""
    assert storage_settings.redis_url is not None
    client = make_client(storage_settings.redis_url.get_secret_value(), storage_settings)
    await client.ping()
    yield client
    await client.aclose()


def with_settings(settings: StorageSettings, **changes: Any) -> StorageSettings:
    return settings.model_copy(update=changes)


def test_value_codec_round_trips() -> None:
    original = entry(voice_id=VOICE)
    assert decode_entry(encode_entry(original)) == original
    with pytest.raises(ValueError):
        decode_entry(b"raw audio without header")
    with pytest.raises(ValueError):
        decode_entry(b'{"format": "ogg_opus"}\nxx')


async def test_put_then_get_round_trips_with_ttl(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    settings = with_settings(storage_settings, cache_ttl_s=1000)
    cache = AudioCache(redis_client, settings)
    k = key()
    assert await cache.get(k) is None
    assert await cache.put(k, entry())
    assert await cache.get(k) == entry()
    assert 990 <= await redis_client.ttl(k) <= 1000
    assert (cache.metrics.cache_hits, cache.metrics.cache_misses) == (1, 1)


async def test_hits_refresh_nothing(redis_client: Redis, storage_settings: StorageSettings) -> None:
    cache = AudioCache(redis_client, with_settings(storage_settings, cache_ttl_s=1000))
    k = key()
    await cache.put(k, entry())
    await redis_client.expire(k, 50)
    for _ in range(3):
        assert await cache.get(k) is not None
    assert await redis_client.ttl(k) <= 50


async def test_oversized_entries_are_not_stored(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    limit = 1000 + len(OGG_HEAD_PAGE)
    cache = AudioCache(redis_client, with_settings(storage_settings, cache_max_entry_bytes=limit))
    k = key()
    assert not await cache.put(k, entry(audio=ogg(b"x" * 1000)))
    assert await redis_client.exists(k) == 0
    assert cache.metrics.cache_too_large == 1
    assert await cache.put(k, entry(audio=ogg(b"x" * 500)))


async def test_put_refuses_what_is_not_audio(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    """A proxy's HTML page, or a stream that holds no audio, is never cached."""
    cache = AudioCache(redis_client, storage_settings)
    html, silent = key("an error page"), key("nothing said")
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    assert await cache.put(html, entry(audio=page, voice_id=VOICE)) is False
    assert await cache.put(silent, dataclasses.replace(entry(), duration_s=0.0)) is False
    assert await redis_client.exists(html, silent, keys.voice_audio(VOICE)) == 0
    assert cache.metrics.cache_not_audio == 2
    assert (cache.metrics.cache_stores, cache.metrics.cache_too_large) == (0, 0)


async def test_undecodable_value_is_a_miss_and_gets_replaced(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    cache = AudioCache(redis_client, storage_settings)
    k = key()
    await redis_client.set(k, b"garbage")
    assert await cache.get(k) is None
    assert cache.metrics.cache_corrupt == 1
    create = Counting(delay_s=0)
    made, from_cache = await cache.get_or_create(k, create)
    assert (create.calls, from_cache) == (1, False)
    assert await cache.get(k) == made


async def test_put_indexes_entries_by_voice(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    cache = AudioCache(redis_client, storage_settings)
    with_voice, without = key("one"), key("two")
    await cache.put(with_voice, entry(voice_id=VOICE))
    await cache.put(without, entry())
    assert await redis_client.smembers(keys.voice_audio(VOICE)) == {with_voice.encode()}
    assert await redis_client.ttl(keys.voice_audio(VOICE)) > 0
    with pytest.raises(ValueError):
        await cache.put(key("three"), entry(voice_id="not-hex"))


async def test_concurrent_misses_in_one_process_synthesise_once(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    cache = AudioCache(redis_client, storage_settings)
    create = Counting()
    results = await asyncio.gather(*(cache.get_or_create(key(), create) for _ in range(50)))
    assert create.calls == 1
    assert len({made for made, _ in results}) == 1
    assert sorted(from_cache for _, from_cache in results) == [False] + [True] * 49
    assert (await cache.get_or_create(key(), create))[1] is True
    assert cache.metrics.singleflight_leads == 1


async def test_two_processes_share_one_synthesis(
    redis_client: Redis, other_client: Redis, storage_settings: StorageSettings
) -> None:
    first = AudioCache(redis_client, storage_settings)
    second = AudioCache(other_client, storage_settings)
    creates = [Counting(), Counting()]
    results = await asyncio.gather(
        *(
            cache.get_or_create(key(), create)
            for _ in range(10)
            for cache, create in zip((first, second), creates, strict=True)
        )
    )
    assert sum(c.calls for c in creates) == 1
    assert len({made for made, _ in results}) == 1
    assert second.metrics.singleflight_joins + first.metrics.singleflight_joins == 19


async def _race(
    first: AudioCache,
    second: AudioCache,
    leader: Callable[[], Awaitable[CachedAudio]],
    follower: Callable[[], Awaitable[CachedAudio]],
) -> tuple[Any, Any, float]:
    """``first`` takes the lock, then ``second`` misses the same key; returns both outcomes."""
    k = key()
    lead = asyncio.create_task(first.get_or_create(k, leader))
    await asyncio.sleep(0.05)  # the lock is taken
    started = time.monotonic()
    follow = await asyncio.gather(second.get_or_create(k, follower), return_exceptions=True)
    waited = time.monotonic() - started
    led = await asyncio.gather(lead, return_exceptions=True)
    return led[0], follow[0], waited


async def test_a_failed_synthesis_wakes_waiters_with_its_error(
    redis_client: Redis, other_client: Redis, storage_settings: StorageSettings
) -> None:
    settings = with_settings(storage_settings, singleflight_wait_timeout_s=20)
    first = AudioCache(redis_client, settings)
    second = AudioCache(other_client, settings)
    follower = Counting(delay_s=0)
    led, followed, waited = await _race(
        first, second, Counting(delay_s=0.3, fail=TTSTimeout("the GPU never warmed")), follower
    )
    assert isinstance(led, TTSTimeout)
    assert isinstance(followed, SingleFlightFailed)
    assert (followed.code, followed.message) == ("tts_timeout", "the GPU never warmed")
    assert waited < 2, "the waiter must not sit out the wait timeout"
    assert follower.calls == 0
    # The failure is not cached: the next request tries again.
    retry = Counting(delay_s=0)
    assert (await second.get_or_create(key(), retry))[1] is False
    assert retry.calls == 1


async def test_waiters_can_rebuild_the_callers_error_types(
    redis_client: Redis, other_client: Redis, storage_settings: StorageSettings
) -> None:
    first = AudioCache(redis_client, storage_settings)
    second = AudioCache(
        other_client, storage_settings, rebuild_error=error_rebuilder(TTSTimeout, TTSBusy)
    )
    _, followed, _ = await _race(
        first, second, Counting(delay_s=0.2, fail=TTSBusy("all GPUs busy", 3)), Counting()
    )
    assert type(followed) is TTSBusy and followed.message == "all GPUs busy"
    _, followed, _ = await _race(
        first, second, Counting(delay_s=0.2, fail=RuntimeError("boom")), Counting()
    )
    assert type(followed) is SingleFlightFailed and followed.code == "error"


async def test_a_dead_holder_never_wedges_the_key(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    """A lock left by a crashed process (no renewals, no result) expires; a waiter takes over."""
    settings = with_settings(storage_settings, singleflight_lock_ttl_ms=400)
    k = key()
    await redis_client.set(keys.lock(keys.digest_of(k)), "crashed-holder", px=400)
    cache = AudioCache(redis_client, settings)
    create = Counting(delay_s=0)
    started = time.monotonic()
    made, from_cache = await cache.get_or_create(k, create)
    assert (create.calls, from_cache) == (1, False)
    assert 0.25 < time.monotonic() - started < 2
    assert await cache.get(k) == made


async def test_a_live_holder_renews_its_lock(
    redis_client: Redis, other_client: Redis, storage_settings: StorageSettings
) -> None:
    """A synthesis slower than the lock TTL keeps the lock: nobody else starts one."""
    settings = with_settings(storage_settings, singleflight_lock_ttl_ms=300)
    first = AudioCache(redis_client, settings)
    second = AudioCache(other_client, settings)
    slow, follower = Counting(delay_s=1.2), Counting(delay_s=0)
    led, followed, _ = await _race(first, second, slow, follower)
    assert (slow.calls, follower.calls) == (1, 0)
    assert isinstance(led, tuple) and isinstance(followed, tuple)
    assert (led[0], led[1], followed[1]) == (followed[0], False, True)
    assert await redis_client.exists(keys.lock(keys.digest_of(key()))) == 0, "lock released"


async def test_waiting_is_bounded(redis_client: Redis, storage_settings: StorageSettings) -> None:
    settings = with_settings(storage_settings, singleflight_wait_timeout_s=0.3)
    k = key()
    await redis_client.set(keys.lock(keys.digest_of(k)), "stuck-holder", px=60_000)
    cache = AudioCache(redis_client, settings)
    create = Counting(delay_s=0)
    started = time.monotonic()
    with pytest.raises(SingleFlightTimeout):
        await cache.get_or_create(k, create)
    assert time.monotonic() - started < 1.5
    assert create.calls == 0 and cache.metrics.singleflight_timeouts == 1


async def test_uncacheable_answers_let_waiters_synthesise(
    redis_client: Redis, other_client: Redis, storage_settings: StorageSettings
) -> None:
    settings = with_settings(storage_settings, cache_max_entry_bytes=10)
    first = AudioCache(redis_client, settings)
    second = AudioCache(other_client, settings)
    leader, follower = Counting(delay_s=0.2), Counting(delay_s=0)
    led, followed, waited = await _race(first, second, leader, follower)
    assert (leader.calls, follower.calls) == (1, 1)
    assert isinstance(led, tuple) and led[1] is False
    assert isinstance(followed, tuple) and followed[1] is False
    assert waited < 2


async def test_a_cancelled_caller_does_not_cancel_the_shared_synthesis(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    cache = AudioCache(redis_client, storage_settings)
    create = Counting(delay_s=0.3)
    impatient = asyncio.create_task(cache.get_or_create(key(), create))
    patient = asyncio.create_task(cache.get_or_create(key(), create))
    await asyncio.sleep(0.1)
    impatient.cancel()
    made, _ = await patient
    assert create.calls == 1 and impatient.cancelled()
    assert await cache.get(key()) == made


def test_metrics_snapshot_is_plain_data() -> None:
    metrics = StorageMetrics()
    metrics.cache_hits += 2
    assert metrics.snapshot()["cache_hits"] == 2


# --- taking over from a holder that failed transiently -----------------------------------------


def transient(error: Exception) -> bool:
    """The bots' ``is_transient`` in these tests' terms: busy or slow may pass if asked again."""
    return isinstance(error, TTSTimeout)


class Flaky:
    """A stand-in synthesis whose first ``failures`` calls raise ``error``; counts its calls,
    sets ``started`` when one begins and, given a ``gate``, answers only once it is set."""

    def __init__(
        self, error: Exception, failures: int = 1, gate: asyncio.Event | None = None
    ) -> None:
        self.error = error
        self.failures = failures
        self.gate = gate
        self.calls = 0
        self.started = asyncio.Event()

    async def __call__(self) -> CachedAudio:
        self.calls += 1
        call = self.calls
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if call <= self.failures:
            raise self.error
        return entry(audio=ogg(b"made-" + str(call).encode()))


async def together(cache: AudioCache, create: Flaky, callers: int) -> list[Any]:
    """``callers`` concurrent misses of one key in one process; the first one leads (no
    await comes before the task the others join)."""
    return await asyncio.gather(
        *(cache.get_or_create(key(), create, known_missing=True) for _ in range(callers)),
        return_exceptions=True,
    )


async def test_joiners_take_over_a_transient_failure_once(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    cache = AudioCache(redis_client, storage_settings, is_transient=transient)
    create = Flaky(TTSBusy("all GPUs busy", 2))
    leader, *joiners = await together(cache, create, callers=5)
    assert leader is create.error  # its own caller hears of the failure
    assert create.calls == 2  # one takeover among four joiners, not four
    assert all(isinstance(joined, tuple) for joined in joiners), joiners
    assert len({made for made, _ in joiners}) == 1
    assert sorted(from_cache for _, from_cache in joiners) == [False, True, True, True]
    assert cache.metrics.singleflight_takeovers == 4
    assert await cache.get(key()) == joiners[0][0]


async def test_the_takeovers_own_failure_is_shared_not_taken_over_again(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    cache = AudioCache(redis_client, storage_settings, is_transient=transient)
    create = Flaky(TTSTimeout("the GPU never warmed"), failures=2)
    outcomes = await together(cache, create, callers=5)
    assert create.calls == 2
    assert all(outcome is create.error for outcome in outcomes), outcomes
    assert cache.metrics.singleflight_takeovers == 4
    assert await redis_client.exists(key()) == 0


async def test_a_failure_that_is_not_transient_is_shared_in_process(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    cache = AudioCache(redis_client, storage_settings, is_transient=transient)
    create = Flaky(ValueError("text the engine refuses"))
    outcomes = await together(cache, create, callers=5)
    assert create.calls == 1
    assert all(outcome is create.error for outcome in outcomes), outcomes
    assert cache.metrics.singleflight_takeovers == 0


async def polling(admin: Redis, client_name: str) -> None:
    """Until the connection named ``client_name`` is polling a lock (its last command a GET:
    its own SET NX found the lock taken)."""
    async with asyncio.timeout(10):
        while True:
            clients = await admin.client_list()
            if any(c.get("name") == client_name and c.get("cmd") == "get" for c in clients):
                return
            await asyncio.sleep(0.005)


@pytest.mark.parametrize(
    ("error", "taken_over"),
    [(TTSBusy("all GPUs busy", 2), True), (ValueError("text the engine refuses"), False)],
    ids=["transient", "not-transient"],
)
async def test_a_waiter_in_another_process_takes_over_only_a_transient_failure(
    redis_client: Redis, storage_settings: StorageSettings, error: Exception, taken_over: bool
) -> None:
    assert storage_settings.redis_url is not None
    url = storage_settings.redis_url.get_secret_value()
    holder = AudioCache(redis_client, storage_settings, is_transient=transient)
    waiter_client = make_client(f"{url}?client_name=sf-waiter", storage_settings)
    waiter = AudioCache(
        waiter_client,
        storage_settings,
        rebuild_error=error_rebuilder(TTSTimeout, TTSBusy),
        is_transient=transient,
    )
    leading, following = Flaky(error, gate=asyncio.Event()), Flaky(error, failures=0)
    assert leading.gate is not None
    try:
        lead = asyncio.create_task(holder.get_or_create(key(), leading, known_missing=True))
        await leading.started.wait()  # the holder has the lock
        follow = asyncio.create_task(waiter.get_or_create(key(), following, known_missing=True))
        await polling(redis_client, "sf-waiter")
        leading.gate.set()
        with pytest.raises(type(error)):
            await lead
        followed = await asyncio.gather(follow, return_exceptions=True)
    finally:
        await waiter_client.aclose()
    if taken_over:
        assert following.calls == 1 and waiter.metrics.singleflight_takeovers == 1
        assert isinstance(followed[0], tuple) and followed[0][1] is False
        assert await holder.get(key()) == followed[0][0]
    else:
        assert following.calls == 0 and waiter.metrics.singleflight_takeovers == 0
        assert isinstance(followed[0], SingleFlightFailed)
        assert (followed[0].code, followed[0].message) == ("error", "text the engine refuses")
        assert await redis_client.exists(key()) == 0


async def test_a_hit_brings_the_senders_file_id_for_exactly_those_bytes(
    redis_client: Redis, storage_settings: StorageSettings
) -> None:
    cache, sent = (
        AudioCache(redis_client, storage_settings),
        SentFiles(redis_client, storage_settings),
    )
    k = key("sent before")
    assert await cache.lookup(k, "telegram:1") == (None, None)
    await cache.put(k, entry())
    assert await cache.lookup(k, "telegram:1") == (entry(), None)  # not uploaded yet
    await sent.remember(k, "telegram:1", entry().audio, "file-one")
    assert await cache.lookup(k, "telegram:1") == (entry(), "file-one")
    assert await cache.lookup(k, "telegram:2") == (entry(), None)  # another bot's id is not ours
    assert await cache.lookup(k) == (entry(), None)
    assert 0 < await redis_client.ttl(keys.sent_files(k)) <= storage_settings.cache_ttl_s
    # The answer cached again under the same key with other bytes: the old id is not for them.
    other = entry(audio=ogg(b"another take"))
    await cache.put(k, other)
    assert await cache.lookup(k, "telegram:1") == (other, None)
    await sent.remember(k, "telegram:1", other.audio, "file-two")
    assert await cache.lookup(k, "telegram:1") == (other, "file-two")
    await sent.forget(k, "telegram:1")  # Telegram refused it
    assert await cache.lookup(k, "telegram:1") == (other, None)


def test_an_answers_file_ids_share_its_cluster_slot() -> None:
    """So a hit reads the answer and its ids in one round trip to one node."""
    for text in ("one", "two", "three"):
        k = key(text)
        assert key_slot(keys.sent_files(k).encode()) == key_slot(k.encode())
