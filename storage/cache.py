"""The audio cache: one key per distinct synthesis, single-flight across processes.

Key: ``saybot:v1:audio:<sha256>`` over a canonical JSON of the normalised text, every
parameter at a fixed precision, the reference clip's sha256 (or ``default``), the engine
name and model version, and the output format — so equivalent requests share one entry
and a new engine or model version can never be answered with stale audio.

Value: one string, ``<JSON header>\\n<audio bytes>``, so a hit is a single ``GET``. Hits
refresh nothing; eviction of cold entries is Redis's job (see ``storage.redis``). An answer
made with a reference voice is indexed under it (``voice:{<id>}:audio``) so "forget my
voice" finds it, and is not stored while that voice's forget tombstone is up.

Single-flight (``get_or_create``): concurrent misses of one key coalesce in-process on
one task, and across processes on a Redis lock (``SET NX PX`` with a random token,
renewed while the synthesis runs, released by compare-and-delete). Waiters poll
lock → value → outcome in that order, so a released lock always shows its result:
the stored audio, or an *outcome* marker under the holder's token saying it failed
(waiters raise the same error) or could not cache (waiters synthesise themselves).
A lock whose holder died expires within ``singleflight_lock_ttl_ms`` and a waiter takes
over. With Redis down, ``get`` misses, ``put`` does nothing and ``get_or_create`` just
calls ``create`` — counted in ``StorageMetrics.redis_errors``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis

from storage import keys
from storage.errors import SingleFlightFailed, SingleFlightTimeout
from storage.metrics import REDIS_ERRORS, StorageMetrics
from storage.settings import StorageSettings
from tts_service.schema import AudioFormat, TTSParams, normalize_text

log = logging.getLogger("storage")

KEY_SCHEMA_VERSION = 1  # bump when the canonical JSON changes meaning
PARAM_DECIMALS = 3  # 0.5 and 0.5004 are the same request; 0.5 and 0.501 are not
_NOT_PARAMS = frozenset({"text", "format"})

# Waiters poll quickly at first (a hit on a just-finished synthesis) then back off.
POLL_FIRST_S = 0.005
POLL_MAX_S = 0.1
OUTCOME_MESSAGE_MAX_CHARS = 500


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
# (code, message, error type) of a failed synthesis → the exception its waiters raise.
ErrorRebuilder = Callable[[str, str, str], BaseException]


# --- keys --------------------------------------------------------------------------------------


def _canonical_number(name: str, value: object) -> str:
    """The parameter as its declared type would print it: ``exaggeration=1`` is ``1.000``
    like ``1.0``, and ``seed=7.0`` is ``7`` like ``7`` (``model_copy`` skips validation)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"parameter {name} is {type(value).__name__}, not a number")
    if not math.isfinite(value):
        raise ValueError(f"parameter {name} is {value}")
    if TTSParams.model_fields[name].annotation is int:
        if value != int(value):
            raise ValueError(f"parameter {name} is a whole number, not {value}")
        return str(int(value))
    text = f"{float(value):.{PARAM_DECIMALS}f}"
    return text.removeprefix("-") if float(text) == 0 else text  # -0.000 is 0.000


def cache_key(
    params: TTSParams | Mapping[str, Any],
    reference_sha256: str | None,
    engine_name: str,
    model_version: str,
    fmt: AudioFormat | str | None = None,
) -> str:
    """``saybot:v1:audio:<sha256>`` of everything that changes the audio.

    ``params`` is a ``TTSParams`` or the fields to build one (validated the same way);
    ``fmt`` defaults to ``params.format``.
    """
    if not isinstance(params, TTSParams):
        params = TTSParams.model_validate(dict(params))
    numbers = {
        name: _canonical_number(name, getattr(params, name))
        for name in sorted(TTSParams.model_fields)
        if name not in _NOT_PARAMS
    }
    canonical = {
        "v": KEY_SCHEMA_VERSION,
        "text": normalize_text(params.text),
        "params": numbers,
        "reference": reference_sha256.lower() if reference_sha256 else "default",
        "engine": engine_name,
        "model_version": model_version,
        "format": AudioFormat(fmt if fmt is not None else params.format).value,
    }
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return keys.audio(hashlib.sha256(blob.encode()).hexdigest())


# --- values ------------------------------------------------------------------------------------


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


# --- single-flight scripts -----------------------------------------------------------------------

# Renew or release the lock only while it is still ours (the token is random per holder).
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# Index an answer under its voice unless the voice was just forgotten (both keys: {voice_id}).
_INDEX_UNLESS_FORGOTTEN_LUA = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class _Retry:
    """The holder we waited for left no result: try to take the lock ourselves."""


class _Alone:
    """Wait no longer; synthesise without the lock (Redis down, or the answer is uncacheable)."""


_RETRY: Final = _Retry()
_ALONE: Final = _Alone()


def _describe_failure(exc: Exception) -> dict[str, str]:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None)
    return {
        "kind": "error",
        "code": code if isinstance(code, str) else "error",
        "message": (message if isinstance(message, str) else str(exc) or type(exc).__name__)[
            :OUTCOME_MESSAGE_MAX_CHARS
        ],
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
    }


def error_rebuilder(*classes: type[Exception]) -> ErrorRebuilder:
    """Waiters raise ``cls(message)`` for the class whose ``code`` matches, else
    ``SingleFlightFailed``. Pass your own error classes, e.g. ``error_rebuilder(TTSBusy, …)``."""
    by_code = {getattr(cls, "code", None): cls for cls in classes}

    def rebuild(code: str, message: str, error_type: str) -> BaseException:
        cls = by_code.get(code)
        if cls is not None:
            try:
                return cls(message)
            except TypeError:
                pass  # a constructor that needs more than a message
        return SingleFlightFailed(code, message, error_type)

    return rebuild


class AudioCache:
    """Get, put and single-flight over one Redis client; never raises for a Redis failure."""

    def __init__(
        self,
        redis: Redis,
        settings: StorageSettings,
        metrics: StorageMetrics | None = None,
        *,
        rebuild_error: ErrorRebuilder | None = None,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self.metrics = metrics if metrics is not None else StorageMetrics()
        self._rebuild_error = rebuild_error or error_rebuilder()
        self._inflight: dict[str, asyncio.Task[tuple[CachedAudio, bool]]] = {}
        self._renew = redis.register_script(_RENEW_LUA)
        self._release = redis.register_script(_RELEASE_LUA)
        self._index = redis.register_script(_INDEX_UNLESS_FORGOTTEN_LUA)

    # --- plain cache ---------------------------------------------------------------------------

    async def get(self, key: str) -> CachedAudio | None:
        """The cached entry, or None (a miss, a corrupt value, or Redis unavailable)."""
        entry = await self._fetch(key)
        self.count_lookup(entry)
        return entry

    async def peek(self, key: str) -> CachedAudio | None:
        """``get`` without counting it: for a lookup made before the caller knows whether
        ``key`` is the one it needs (it calls ``count_lookup`` if it was)."""
        return await self._fetch(key)

    def count_lookup(self, entry: CachedAudio | None) -> None:
        if entry is None:
            self.metrics.cache_misses += 1
        else:
            self.metrics.cache_hits += 1

    async def put(self, key: str, entry: CachedAudio) -> bool:
        """Store with the configured TTL and index it under its voice; False if not stored.

        Not stored either when the voice was forgotten moments ago (its tombstone is up):
        a synthesis that began before "forget my voice" must not bring its audio back.
        """
        if entry.voice_id is not None:
            keys.check_voice_id(entry.voice_id)
        value = encode_entry(entry)
        if len(value) > self._settings.cache_max_entry_bytes:
            self.metrics.cache_too_large += 1
            log.info("not caching %s: %d bytes is over the limit", key, len(value))
            return False
        if not self.metrics.redis_allowed():
            return False
        try:
            if entry.voice_id is None:
                await self._redis.set(key, value, ex=self._settings.cache_ttl_s)
            elif not await self._put_voiced(key, value, entry.voice_id):
                self.metrics.redis_succeeded()
                self.metrics.cache_voice_forgotten += 1
                log.info("not caching %s: its voice was just forgotten", key)
                return False
        except REDIS_ERRORS as exc:
            self.metrics.redis_failed("cache put", exc)
            return False
        self.metrics.redis_succeeded()
        self.metrics.cache_stores += 1
        return True

    async def _put_voiced(self, key: str, value: bytes, voice_id: str) -> bool:
        """Index, store, re-check the tombstone; False (nothing kept) if the voice was forgotten.

        The audio key and the voice's keys live in different cluster slots, so no single
        command covers both. The index is written first, atomically with the tombstone check
        (one slot); a forget that lands after it finds the key in the index and deletes the
        answer, and one that lands between it and the SET is caught by the second check.
        """
        ttl_s = self._settings.cache_ttl_s
        tombstone = keys.voice_forgotten(voice_id)
        indexed = await self._index(keys=[keys.voice_audio(voice_id), tombstone], args=[key, ttl_s])
        if not indexed:
            return False
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(key, value, ex=ttl_s)
        pipe.exists(tombstone)
        _, forgotten = await pipe.execute()
        if forgotten:
            await self._redis.delete(key)
            return False
        return True

    async def _fetch(self, key: str) -> CachedAudio | None:
        if not self.metrics.redis_allowed():
            return None
        try:
            raw = await self._redis.get(key)
        except REDIS_ERRORS as exc:
            self.metrics.redis_failed("cache get", exc)
            return None
        self.metrics.redis_succeeded()
        return None if raw is None else self._decode(key, raw)

    def _decode(self, key: str, raw: bytes | str) -> CachedAudio | None:
        try:
            return decode_entry(raw if isinstance(raw, bytes) else raw.encode())
        except ValueError as exc:
            self.metrics.cache_corrupt += 1
            log.warning("ignoring undecodable cache value at %s: %s", key, exc)
            return None

    # --- single-flight -------------------------------------------------------------------------

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
        task = self._inflight.get(key)
        if task is not None:  # the same key is being resolved in this process: share it
            shared, _ = await asyncio.shield(task)
            self.metrics.singleflight_joins += 1
            return shared, True
        task = asyncio.create_task(self._resolve(key, create), name=f"single-flight {key}")
        self._inflight[key] = task
        task.add_done_callback(lambda done: self._task_done(key, done))
        # Shielded: a caller that gives up (a cancelled chat interaction) does not throw away
        # the synthesis the others wait for; it still lands in the cache.
        made, created = await asyncio.shield(task)
        if not created:
            self.metrics.singleflight_joins += 1
        return made, not created

    async def drain(self, timeout_s: float) -> None:
        """Before closing Redis: let syntheses whose callers left land (bounded), cancel
        the rest. Their locks are released, or expire on their own."""
        tasks = set(self._inflight.values())
        if not tasks:
            return
        _, unfinished = await asyncio.wait(tasks, timeout=timeout_s)
        for task in unfinished:
            task.cancel()
        if unfinished:
            log.warning("cache: gave up on %d synthesis(es) at shutdown", len(unfinished))
            await asyncio.wait(unfinished)

    def _task_done(self, key: str, task: asyncio.Task[tuple[CachedAudio, bool]]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" noise if every caller left

    async def _resolve(self, key: str, create: Create) -> tuple[CachedAudio, bool]:
        """Take the lock and create, or wait for whoever holds it. True = we created."""
        digest = keys.digest_of(key)
        lock_key = keys.lock(digest)
        token = secrets.token_hex(16)
        deadline = asyncio.get_running_loop().time() + self._settings.singleflight_wait_timeout_s
        while True:
            if not self.metrics.redis_allowed():
                return await self._create_alone(key, create), True
            try:
                holder = await self._redis.set(
                    lock_key, token, nx=True, px=self._settings.singleflight_lock_ttl_ms, get=True
                )
            except REDIS_ERRORS as exc:
                self.metrics.redis_failed("single-flight lock", exc)
                return await self._create_alone(key, create), True
            if not isinstance(holder, bytes | str):  # nil: the lock is ours
                return await self._lead(key, lock_key, token, digest, create)
            waited = await self._wait(key, lock_key, digest, keys.as_text(holder), deadline)
            if isinstance(waited, CachedAudio):
                return waited, False
            if waited is _ALONE:
                return await self._create_alone(key, create), True
            # _RETRY: the holder vanished without a word; loop to take over

    async def _lead(
        self, key: str, lock_key: str, token: str, digest: str, create: Create
    ) -> tuple[CachedAudio, bool]:
        renewer = asyncio.create_task(self._keep_lock(lock_key, token))
        try:
            # A previous holder may have stored the answer just before we took its lock.
            existing = await self._fetch(key)
            if existing is not None:
                return existing, False
            self.metrics.singleflight_leads += 1
            try:
                entry = await create()
            except Exception as exc:
                await self._post_outcome(digest, token, _describe_failure(exc))
                raise
            if not await self.put(key, entry):
                await self._post_outcome(digest, token, {"kind": "uncached"})
            return entry, True
        finally:
            renewer.cancel()
            try:
                await self._release(keys=[lock_key], args=[token])
            except REDIS_ERRORS as exc:  # it expires on its own
                self.metrics.redis_failed("single-flight release", exc)

    async def _create_alone(self, key: str, create: Create) -> CachedAudio:
        entry = await create()
        await self.put(key, entry)
        return entry

    async def _keep_lock(self, lock_key: str, token: str) -> None:
        ttl_ms = self._settings.singleflight_lock_ttl_ms
        while True:
            await asyncio.sleep(ttl_ms / 3000)
            try:
                renewed = await self._renew(keys=[lock_key], args=[token, ttl_ms])
            except REDIS_ERRORS as exc:
                self.metrics.redis_failed("single-flight renew", exc)
                continue
            if not renewed:
                log.warning(
                    "lost the single-flight lock %s; another caller may synthesise too", lock_key
                )
                return

    async def _post_outcome(self, digest: str, token: str, outcome: dict[str, str]) -> None:
        try:
            await self._redis.set(
                keys.outcome(digest, token), json.dumps(outcome), px=keys.OUTCOME_TTL_MS
            )
        except REDIS_ERRORS as exc:  # waiters then take over instead of sharing the error
            self.metrics.redis_failed("single-flight outcome", exc)

    async def _wait(
        self, key: str, lock_key: str, digest: str, holder: str, deadline: float
    ) -> CachedAudio | _Retry | _Alone:
        loop = asyncio.get_running_loop()
        delay = POLL_FIRST_S
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.metrics.singleflight_timeouts += 1
                raise SingleFlightTimeout(
                    f"waited {self._settings.singleflight_wait_timeout_s:g} s for another "
                    "synthesis of the same request"
                )
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, POLL_MAX_S)
            # Lock first: if it is gone, the value or outcome written before the release
            # is visible to the two reads that follow.
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(lock_key)
            pipe.get(key)
            pipe.get(keys.outcome(digest, holder))
            try:
                current, raw, outcome = await pipe.execute()
            except REDIS_ERRORS as exc:
                self.metrics.redis_failed("single-flight wait", exc)
                return _ALONE
            if raw is not None and (entry := self._decode(key, raw)) is not None:
                return entry
            if outcome is not None:
                return self._follow_outcome(outcome)
            if current is None:
                return _RETRY
            holder = keys.as_text(current)  # a new holder took over from a dead one

    def _follow_outcome(self, raw: bytes) -> _Alone:
        outcome = json.loads(raw)
        if outcome.get("kind") == "error":
            raise self._rebuild_error(
                str(outcome.get("code", "error")),
                str(outcome.get("message", "")),
                str(outcome.get("type", "")),
            )
        return _ALONE
