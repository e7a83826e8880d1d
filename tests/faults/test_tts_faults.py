"""The TTS service misbehaves; the real ``saybot run`` answers each message once, clearly,
and keeps serving.

Between the bots and the TTS service sits ``FaultyTTS``: the real service (Piper) with
faults scripted per text, so each case names the one request that gets the fault and
every other request is real.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.faulty_tts import Fault, FaultyTTS, serving
from tests.faults.product import (
    BUSY_PREFIX,
    TOOK_TOO_LONG,
    UNAVAILABLE,
    Product,
    is_voice_note,
    redis_url,
    running_product,
    say,
    sentence,
    still_serving,
    the_reply,
    until_answered,
)
from tests.standins.telegram_api import TelegramStandin
from tts_service.engines.piper import PiperEngine

pytestmark = [pytest.mark.faults, pytest.mark.timeout(90)]

# TTS_READ_TIMEOUT_S of the hang case only: a hang is "too long" after this (Piper needs < 1 s
# for the short texts said in that case; the other cases keep the default).
READ_TIMEOUT_S = 3
TOKEN_LOG_LINE = "the TTS service refused our token: check TTS_API_TOKEN"


@pytest.fixture(scope="module")
def tts(piper_engine: PiperEngine) -> Iterator[tuple[str, FaultyTTS]]:
    with serving(piper_engine) as served:
        yield served


@pytest.fixture
def faulty(tts: tuple[str, FaultyTTS]) -> FaultyTTS:
    return tts[1]


@pytest.fixture
async def product(
    tg: TelegramStandin, valkey: Any, tmp_path: Path, tts: tuple[str, FaultyTTS]
) -> AsyncIterator[Product]:
    async with running_product(
        tg, tmp_path / "bot", tts_url=tts[0], redis_url=redis_url(valkey)
    ) as running:
        yield running


async def test_a_200_page_that_is_not_audio_is_unavailable_and_not_cached(
    product: Product, tg: TelegramStandin, faulty: FaultyTTS
) -> None:
    text = "A captive portal answered this one."
    faulty.script(text, Fault.HTML_200)

    assert sentence(await say(product, tg, 101, text)) == UNAVAILABLE
    # The page was not cached as the answer: once the service is back, the text is spoken.
    assert is_voice_note(await say(product, tg, 102, text))
    assert faulty.posts(text) == 2 and faulty.syntheses(text) == 1
    assert product.log_lines("no usable audio"), "the operator is told what came back"
    await still_serving(product, tg, 103, "Still here after a portal page.")


async def test_a_proxy_500_page_is_unavailable(
    product: Product, tg: TelegramStandin, faulty: FaultyTTS
) -> None:
    text = "A proxy failed in front of the service."
    faulty.script(text, Fault.HTML_500)

    assert sentence(await say(product, tg, 111, text)) == UNAVAILABLE
    assert is_voice_note(await say(product, tg, 112, text))
    assert faulty.posts(text) == 2
    await still_serving(product, tg, 113, "Still here after a proxy error.")


async def test_a_hang_past_the_read_timeout_took_too_long(
    tg: TelegramStandin, valkey: Any, tmp_path: Path, tts: tuple[str, FaultyTTS]
) -> None:
    url, faulty = tts
    text = "The service never answers this request."
    faulty.script(text, Fault.HANG)
    env = {"TTS_READ_TIMEOUT_S": str(READ_TIMEOUT_S)}
    async with running_product(
        tg, tmp_path / "bot", tts_url=url, redis_url=redis_url(valkey), env=env
    ) as product:
        assert sentence(await say(product, tg, 121, text)) == TOOK_TOO_LONG
        assert faulty.posts(text) == 1, "a request that may have reached the service is not resent"
        assert is_voice_note(await say(product, tg, 122, text)), "the timeout was not cached"
        await still_serving(product, tg, 123, "Still here after a hang.")


async def test_a_303_to_a_result_url_is_followed_to_the_audio(
    product: Product, tg: TelegramStandin, faulty: FaultyTTS
) -> None:
    text = "This one outlived the web endpoint's limit."
    faulty.script(text, Fault.REDIRECT)

    assert is_voice_note(await say(product, tg, 131, text))
    assert is_voice_note(await say(product, tg, 132, text))  # cached: no second synthesis
    assert faulty.posts(text) == 1 and faulty.syntheses(text) == 1
    await still_serving(product, tg, 133, "Still here after a redirect.")


async def test_a_storm_of_busy_answers_is_waited_out(
    product: Product, tg: TelegramStandin, faulty: FaultyTTS
) -> None:
    """503 + ``Retry-After: 1`` for the first requests: everyone gets audio, nobody "busy"."""
    users = range(141, 149)
    storm = 2 * len(users)
    faulty.storm(storm)
    before = faulty.posts()
    messages = [tg.send_command(u, u, "say", f"Storm message number {u}.") for u in users]

    await until_answered(product, tg, messages, timeout_s=60)
    answers = [the_reply(tg, message) for message in messages]
    busy = [
        a.params.get("text") for a in answers if str(a.params.get("text")).startswith(BUSY_PREFIX)
    ]
    assert not busy, busy
    assert all(is_voice_note(answer) for answer in answers), answers
    busy_answered = [a for a in faulty.answered[before:] if a.fault is Fault.BUSY]
    assert len(busy_answered) == storm, "the storm hit the bots' requests"
    assert faulty.syntheses() >= len(users)
    await still_serving(product, tg, 149, "Still here after the storm.")


async def test_a_refused_token_is_reported_once_and_never_delays_the_start(
    tg: TelegramStandin, valkey: Any, tmp_path: Path, tts: tuple[str, FaultyTTS]
) -> None:
    """401 from the service: a configuration error. Start-up does not wait on it, every user
    is told the engine is unavailable, the operator reads one line naming TTS_API_TOKEN, and
    audio cached earlier is still served."""
    url, faulty = tts
    cached = "Cached before the token was rotated."
    async with running_product(
        tg, tmp_path / "healthy", tts_url=url, redis_url=redis_url(valkey)
    ) as healthy:
        assert is_voice_note(await say(healthy, tg, 151, cached))

    made_before, requests_before = faulty.syntheses(), faulty.requests
    async with running_product(
        tg, tmp_path / "refused", tts_url=url, redis_url=redis_url(valkey), tts_token="rotated"
    ) as product:
        # Polling began before anything was asked of the service: the start waited on nothing.
        assert faulty.requests == requests_before
        users = (152, 153, 154)
        messages = [tg.send_command(u, u, "say", f"Refused token, message {u}.") for u in users]
        await until_answered(product, tg, messages)
        assert [sentence(the_reply(tg, m)) for m in messages] == [UNAVAILABLE] * len(users)
        assert faulty.syntheses() == made_before, "refused at the door: nothing was synthesised"
        assert is_voice_note(await say(product, tg, 155, cached)), "the cache still serves"
    lines = product.log_lines("TTS_API_TOKEN")
    assert len(product.log_lines(TOKEN_LOG_LINE)) == 1, lines
    assert len(lines) == 1, f"logged once, not per message: {lines}"
