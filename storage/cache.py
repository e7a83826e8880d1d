"""The audio cache: one Redis string per distinct synthesis, found again by any process.

Key: see ``storage.cache_keys`` (derived there, without Redis). Value: one string,
``<JSON header>\\n<audio bytes>``, so a hit is a single ``GET``. Hits refresh nothing;
eviction of cold entries is Redis's job (see ``storage.redis``). An answer made with a
reference voice is indexed under it (``voice:{<id>}:audio``) so "forget my voice" finds
it, and is not stored while that voice's forget tombstone is up.

The entries and the single-flight locks live on the cache server, which may evict them at
any time; the index and the tombstones are durable data and live with the voices on the data
server (one server may be both: pass no ``data_redis``).

``get_or_create`` runs the synthesis once among all concurrent callers of one key through
``storage.singleflight``, which is told how to read, store and decode an answer here.
With Redis down, ``get`` misses, ``put`` does nothing and ``get_or_create`` just calls
``create`` — counted in ``StorageMetrics.redis_errors``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from storage import keys
from storage.client import RedisClient
from storage.metrics import REDIS_ERRORS, StorageMetrics
from storage.sent_files import held_id
from storage.settings import StorageSettings
from storage.singleflight import ErrorRebuilder, SingleFlight
from tts_service import containers
from tts_service.schema import AudioFormat

log = logging.getLogger("storage")


@dataclass(frozen=True, slots=True)
class CachedAudio:
    """An encoded answer and what a reply needs to describe it."""

    audio: bytes
    format: AudioFormat
    duration_s: float
    engine: str
    created_at: float  # Unix time
    voice_id: str | None = None  # the reference clip's id; None for the built-in voice


Create = Callable[[], Awaitable[CachedAudio]]


class Lookup(NamedTuple):
    """What the cache holds under a key: the entry (None: a miss), and the id its sender
    keeps the entry's bytes under, when one was asked for and is known."""

    entry: CachedAudio | None
    held_as: str | None = None


def encode_entry(entry: CachedAudio) -> bytes:
    header = {
        "format": entry.format.value,
        "duration_s": entry.duration_s,
        "engine": entry.engine,
        "created_at": entry.created_at,
        "voice_id": entry.voice_id,
    }
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + entry.audio


def decode_entry(raw: bytes) -> CachedAudio:
    """Inverse of ``encode_entry``; ``ValueError`` on anything else."""
    head, newline, audio = raw.partition(b"\n")
    if not newline:
        raise ValueError("no header")
    try:
        header = json.loads(head)
        return CachedAudio(
            audio=audio,
            format=AudioFormat(header["format"]),
            duration_s=float(header["duration_s"]),
            engine=str(header["engine"]),
            created_at=float(header["created_at"]),
            voice_id=header["voice_id"],
        )
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"bad header: {exc}") from exc


# Index an answer under its voice unless the voice was just forgotten (both keys: {voice_id}).
_INDEX_UNLESS_FORGOTTEN_LUA = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class AudioCache:
    """Get, put and single-flight; never raises for a Redis failure.

    ``redis`` is the cache server's client (entries, single-flight); ``data_redis`` the data
    server's, where the voices' indexes and tombstones live (default: ``redis``).
    """

    def __init__(
        self,
        redis: RedisClient,
        settings: StorageSettings,
        metrics: StorageMetrics | None = None,
        *,
        data_redis: RedisClient | None = None,
        rebuild_error: ErrorRebuilder | None = None,
        is_transient: Callable[[Exception], bool] = lambda exc: False,
    ) -> None:
        self._redis = redis
        self._data = data_redis if data_redis is not None else redis
        self._settings = settings
        self.metrics = metrics if metrics is not None else StorageMetrics()
        self._index = self._data.register_script(_INDEX_UNLESS_FORGOTTEN_LUA)
        self._flight = SingleFlight(
            redis,
            settings,
            self.metrics,
            peek=self._fetch,
            put=self.put,
            decode=self._decode,
            rebuild_error=rebuild_error,
            is_transient=is_transient,
        )

    async def get(self, key: str) -> CachedAudio | None:
        """The cached entry, or None (a miss, a corrupt value, or Redis unavailable)."""
        return (await self.lookup(key)).entry

    async def lookup(self, key: str, sender: str | None = None) -> Lookup:
        """``peek``, counted as a hit or a miss."""
        found = await self.peek(key, sender)
        self.count(found)
        return found

    async def peek(self, key: str, sender: str | None = None) -> Lookup:
        """The entry, and ``sender``'s file id for its bytes (``storage.sent_files``) when it
        holds one: both in one round trip, from one cluster slot. Not counted (``count``)."""
        if sender is None:
            return Lookup(await self._fetch(key))
        raw, stored = await self.metrics.guarded(
            "cache get", lambda: self._get_with_held(key, sender), when_down=(None, None)
        )
        entry = None if raw is None else self._decode(key, raw)
        return Lookup(entry, None if entry is None else held_id(stored, entry.audio))

    def count(self, found: Lookup) -> None:
        if found.entry is None:
            self.metrics.cache_misses += 1
        else:
            self.metrics.cache_hits += 1

    async def _get_with_held(self, key: str, sender: str) -> tuple[bytes | None, bytes | None]:
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.hget(keys.sent_files(key), sender)
        raw, stored = await pipe.execute()
        return raw, stored

    async def _fetch(self, key: str) -> CachedAudio | None:
        """``get`` without counting it (the single-flight holder's second look)."""
        raw = await self.metrics.guarded("cache get", lambda: self._redis.get(key), when_down=None)
        return None if raw is None else self._decode(key, raw)

    async def put(self, key: str, entry: CachedAudio) -> bool:
        """Store with the configured TTL and index it under its voice; False if not stored.

        Not stored either when the voice was forgotten moments ago (its tombstone is up):
        a synthesis that began before "forget my voice" must not bring its audio back;
        nor when it is not audio of its format (a proxy's error page must never be served
        for 30 days).
        """
        if entry.voice_id is not None:
            keys.check_voice_id(entry.voice_id)
        problem = containers.problem_with(entry.format, entry.audio, entry.duration_s)
        if problem is not None:
            self.metrics.cache_not_audio += 1
            log.warning("not caching %s: %s", key, problem)
            return False
        value = encode_entry(entry)
        if len(value) > self._settings.cache_max_entry_bytes:
            self.metrics.cache_too_large += 1
            log.info("not caching %s: %d bytes is over the limit", key, len(value))
            return False
        stored = await self.metrics.guarded(
            "cache put", lambda: self._store(key, value, entry.voice_id), when_down=None
        )
        if stored is None:
            return False
        if not stored:
            self.metrics.cache_voice_forgotten += 1
            log.info("not caching %s: its voice was just forgotten", key)
            return False
        self.metrics.cache_stores += 1
        return True

    async def _store(self, key: str, value: bytes, voice_id: str | None) -> bool:
        """SET the value (indexed under its voice, if any); False if the voice was forgotten.

        The entry (cache server) and the voice's index and tombstone (data server) cannot be
        written atomically together, so the order does the work, each step awaited before
        the next starts:

        1. data: index the key, atomically with "no tombstone" (one slot);
        2. cache: SET the entry;
        3. data: look for the tombstone again, and DEL the entry if it is up.

        ``VoiceStore.forget`` puts the tombstone up atomically with taking the index, then
        deletes the indexed entries, then the index. If its step lands before 1, step 1
        refuses. If after 1, the key is in the index it takes: an entry SET before the
        deletion is deleted by it, one SET after the deletion was also SET after the
        tombstone went up, so step 3, later still, sees the tombstone (it outlives any
        synthesis) and deletes it. Only real-time order is used, so it holds across two
        servers as it does on one. If step 3 cannot ask, the entry is deleted too: an answer
        that may belong to a forgotten voice is not kept.
        """
        ttl_s = self._settings.cache_ttl_s
        if voice_id is None:
            await self._redis.set(key, value, ex=ttl_s)
            return True
        tombstone = keys.voice_forgotten(voice_id)
        indexed = await self._index(keys=[keys.voice_audio(voice_id), tombstone], args=[key, ttl_s])
        if not indexed:
            return False
        try:
            await self._redis.set(key, value, ex=ttl_s)
            forgotten = await self._data.exists(tombstone)
        except REDIS_ERRORS:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._redis.delete(key)
            raise
        if forgotten:
            await self._redis.delete(key)
            return False
        return True

    def _decode(self, key: str, raw: bytes | str) -> CachedAudio | None:
        try:
            return decode_entry(raw if isinstance(raw, bytes) else raw.encode())
        except ValueError as exc:
            self.metrics.cache_corrupt += 1
            log.warning("ignoring undecodable cache value at %s: %s", key, exc)
            return None

    async def get_or_create(
        self, key: str, create: Create, *, known_missing: bool = False
    ) -> tuple[CachedAudio, bool]:
        """The cached entry, or one made by exactly one ``create`` among all concurrent callers.

        Returns ``(entry, from_cache)``; ``from_cache`` is False only for the caller whose
        ``create`` ran. Waiters raise the holder's error (see ``rebuild_error``) or
        ``SingleFlightTimeout`` after ``singleflight_wait_timeout_s``. ``known_missing``:
        the caller has just looked (and counted the miss); the lock holder looks again.
        """
        if not known_missing:
            entry = await self.get(key)
            if entry is not None:
                return entry, True
        return await self._flight.run(key, create)

    async def drain(self, timeout_s: float) -> None:
        """Before closing Redis: let syntheses whose callers left land (bounded), cancel
        the rest. Their locks are released, or expire on their own."""
        await self._flight.drain(timeout_s)
