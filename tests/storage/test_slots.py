"""Every Lua script, MULTI…EXEC block and multi-key command the storage layer sends touches
keys of one cluster slot (``storage.keys`` documents the hash tags that make it so).

Watched on the wire: a private server's MONITOR records every command a workload of every
storage component sends (each script, each transaction, forget, release, the login
throttle…); the server itself names each command's keys (``COMMAND GETKEYS``), and each
group is checked with the cluster's own slot function. The cluster run of the storage suite
catches the same mistakes as CROSSSLOT errors; this test says which operation made them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import ResponseError

from storage.cache import AudioCache, CachedAudio
from storage.cache_keys import cache_key
from storage.chat_settings import ChatSettingsStore
from storage.consents import ConsentStore
from storage.metrics import StorageMetrics
from storage.ratelimit import RateLimiter
from storage.redis import make_client
from storage.sessions import LoginThrottle, SessionStore
from storage.spend import SpendLedger
from storage.usage import UsageReader, UsageRecorder
from storage.voices import VoiceStore
from tests.audio_bytes import ogg
from tests.redis_fixtures import make_settings, start_valkey
from tts_service.schema import AudioFormat, TTSParams

VOICE = "cd" * 32
DONE = "test:slots:done"  # the last command of the workload: MONITOR has seen everything


async def workload(client: Redis, url: str) -> None:
    """Each storage operation that sends a script, a transaction or several keys at once."""
    settings = make_settings(url)
    metrics = StorageMetrics()
    cache = AudioCache(client, settings, metrics)
    voices = VoiceStore(client, settings, metrics)
    key = cache_key(TTSParams(text="slots"), VOICE, "piper", "1")
    entry = CachedAudio(ogg(b"x"), AudioFormat.OGG_OPUS, 1.0, "piper", time.time(), VOICE)
    await voices.save("telegram", "7", VOICE, b"clip")
    await cache.get_or_create(key, lambda: asyncio.sleep(0, entry))  # lock, index, release
    await cache.put(cache_key(TTSParams(text="other"), None, "piper", "1"), entry)
    await RateLimiter(client, settings, metrics).check("telegram", "7")
    consents = ConsentStore(client, settings, metrics)
    await consents.record("telegram", "7", VOICE, 1)
    await ChatSettingsStore(client, metrics).change("telegram", "-100", {"cloning": "off"})
    ledger = SpendLedger(client, metrics)
    await ledger.add("telegram", "7", "-100", 2.0)
    await ledger.spent("telegram", "7", "-100")
    recorder = UsageRecorder(client, settings, metrics, flush_interval_s=60)
    recorder.record_soon("telegram", "7", "miss", audio_seconds=1.0, synthesis_seconds=1.0)
    await recorder.flush()
    day = dt.datetime.now(dt.UTC).date()
    await UsageReader(client, settings).summary(day, day)
    await UsageReader(client, settings).top_users(day, day)
    throttle = LoginThrottle(lambda: client, metrics)
    charge = await throttle.charge("127.0.0.1")
    await throttle.refund("127.0.0.1", charge)
    sessions = SessionStore(lambda: client, metrics)
    await sessions.save("s" * 43, "binding", time.time() + 60, 60)
    await sessions.load("s" * 43)
    await sessions.delete("s" * 43)
    await voices.forget("telegram", "7")  # releases the voice: the release script
    await consents.forget("telegram", "7")
    await recorder.forget_user("telegram", "7")
    await client.set(DONE, 1)


_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


def parse(line: str) -> tuple[str, list[str]] | None:
    """``+<time> [<db> <client>] "CMD" "arg"…`` → (client, args); escapes left as they are
    (keys are plain ASCII)."""
    head, sep, rest = line.partition("] ")
    if not sep:
        return None
    return head.rpartition(" ")[2], _ARG.findall(rest)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    valkey = start_valkey(data_dir=tmp_path)
    try:
        yield f"redis://127.0.0.1:{valkey.port}"
    finally:
        valkey.stop()


async def watched(url: str) -> list[tuple[str, list[str]]]:
    """Every command the workload sent, as MONITOR's raw lines give them."""
    port = int(url.rpartition(":")[2])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"MONITOR\r\n")
    assert await reader.readline() == b"+OK\r\n"
    seen: list[tuple[str, list[str]]] = []
    client = make_client(url, make_settings(url))
    try:
        task = asyncio.create_task(workload(client, url))
        while True:
            parsed = parse((await reader.readline()).decode("utf-8", "replace"))
            if parsed is None:
                continue
            seen.append(parsed)
            if parsed[1][:2] == ["SET", DONE]:
                break
        await task
    finally:
        await client.aclose()
        writer.close()
    return seen


async def groups(url: str, seen: list[tuple[str, list[str]]]) -> dict[str, list[list[str]]]:
    """Keys of each script, transaction and multi-key command, by what sent them."""
    names = Redis.from_url(url, decode_responses=True)
    found: dict[str, list[list[str]]] = defaultdict(list)
    open_multi: dict[str, tuple[list[str], list[str]]] = {}
    try:
        for client, args in seen:
            name = args[0].upper()
            if name in ("EVAL", "EVALSHA"):
                count = int(args[2])
                found[f"script {args[1][:8]}"].append(args[3 : 3 + count])
                continue
            if name == "MULTI":
                open_multi[client] = ([], [])
                continue
            if name == "EXEC":
                commands, keys = open_multi.pop(client)
                found[f"MULTI {' '.join(commands)}"].append(keys)
                continue
            try:
                keys = list(await names.command_getkeys(*args))
            except ResponseError:  # a command without keys (PING, CLIENT SETNAME…)
                keys = []
            if client in open_multi:
                open_multi[client][0].append(name)
                open_multi[client][1].extend(keys)
            elif len(keys) > 1:
                found[name].append(keys)
    finally:
        await names.aclose()
    return found


async def test_every_script_transaction_and_multi_key_command_uses_one_slot(server: str) -> None:
    found = await groups(server, await watched(server))
    scripts = [name for name in found if name.startswith("script")]
    transactions = [name for name in found if name.startswith("MULTI")]
    # The workload reached them: index, rate bucket, lock release, voice release, throttle…
    assert len(scripts) >= 5, found
    assert len(transactions) >= 2, found
    crossing: dict[str, Any] = {
        name: keys
        for name, each in found.items()
        for keys in each
        if len({key_slot(key.encode()) for key in keys}) > 1
    }
    assert not crossing, f"keys of one operation in several slots: {crossing}"


def test_the_check_catches_a_cross_slot_group() -> None:
    """The slot function tells apart what the hash tags keep together."""
    together = ["saybot:v1:voice:{ab}:clip", "saybot:v1:voice:{ab}:owners"]
    apart = ["saybot:v1:user:telegram:1:voices", "saybot:v1:user:telegram:1:default"]
    assert len({key_slot(k.encode()) for k in together}) == 1
    assert len({key_slot(k.encode()) for k in apart}) > 1
