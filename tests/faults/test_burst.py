"""A burst against the real ``saybot run`` and a real local Piper service: 300 messages from
30 users over 10 texts, all at once, rate limiting off. Every message gets one voice note,
each text is synthesised exactly once (single-flight, then the cache), nobody is told
"busy"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.faulty_tts import FaultyTTS, serving
from tests.faults.product import (
    is_voice_note,
    redis_url,
    replies,
    running_product,
    still_serving,
    until_answered,
)
from tests.standins.telegram_api import TelegramStandin
from tts_service.engines.piper import PiperEngine

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

USERS = 30
TEXTS = [f"Burst sentence number {n}, spoken once for everyone." for n in range(10)]
PER_USER = 10


@pytest.fixture
def tts(piper_engine: PiperEngine) -> Iterator[tuple[str, FaultyTTS]]:
    with serving(piper_engine) as served:  # no faults scripted: it only counts
        yield served


async def test_a_burst_is_answered_once_each_with_one_synthesis_per_text(
    tg: TelegramStandin, valkey: Any, tmp_path: Path, tts: tuple[str, FaultyTTS]
) -> None:
    url, faulty = tts
    env = {"RATELIMIT_ENABLED": "false"}
    async with running_product(
        tg, tmp_path / "bot", tts_url=url, redis_url=redis_url(valkey), env=env
    ) as product:
        messages = [
            tg.send_command(user, user, "say", TEXTS[(user + n) % len(TEXTS)])
            for n in range(PER_USER)
            for user in range(1, USERS + 1)
        ]
        await until_answered(product, tg, messages, timeout_s=90)
        assert faulty.posts() == faulty.syntheses() == len(TEXTS)
        await still_serving(product, tg, USERS + 1, TEXTS[0])
    # saybot has exited: no reply can still be on its way.
    answers = [replies(tg, message) for message in messages]
    assert [len(found) for found in answers] == [1] * len(messages), "one reply each"
    not_voice = [found[0] for found in answers if not is_voice_note(found[0])]
    assert not not_voice, [call.params.get("text") for call in not_voice[:5]]
    assert faulty.posts() == len(TEXTS), "the one after the burst was cached too"
