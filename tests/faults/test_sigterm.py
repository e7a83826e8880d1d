"""SIGTERM while a request hangs at the TTS service: the real ``saybot run`` exits 0 within
its shutdown budget and tells the user of the request it gave up.

``SHUTDOWN_TIMEOUT_S + 2 s`` from signal to exit is a contract (an orchestrator kills the
process after its grace period), not a speed test: the budget is the product's own. A new
process on the same Redis then answers the same text: nothing the stopped one held (a
single-flight lock) is left to block it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bots.messages import GAVE_UP
from tests.faults.faulty_tts import Fault, FaultyTTS, serving
from tests.faults.product import (
    Product,
    is_voice_note,
    redis_url,
    replies,
    reply_problems,
    running_product,
    say,
    sentence,
    until_answered,
)
from tests.standins.telegram_api import TelegramStandin
from tts_service.engines.piper import PiperEngine

pytestmark = [pytest.mark.faults, pytest.mark.timeout(90)]

SHUTDOWN_TIMEOUT_S = 6  # the smallest budget BotSettings allows is 5
EXIT_GRACE_S = 2


@pytest.fixture
def tts(piper_engine: PiperEngine) -> Iterator[tuple[str, FaultyTTS]]:
    with serving(piper_engine) as served:
        yield served


async def test_sigterm_with_a_request_hanging_exits_in_time_and_tells_its_user(
    tg: TelegramStandin, valkey: Any, tmp_path: Path, tts: tuple[str, FaultyTTS]
) -> None:
    url, faulty = tts
    hanging = "This request is hanging at the TTS service when the stop signal arrives."
    faulty.script(hanging, Fault.HANG)
    env = {"SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S)}
    product = await Product.start(
        tg, tmp_path / "bot", tts_url=url, redis_url=redis_url(valkey), env=env
    )
    try:
        message = tg.send_command(301, 301, "say", hanging)
        assert await asyncio.to_thread(faulty.wait_hang_started, 30), "the request never hung"

        signalled = time.monotonic()
        product.process.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(product.process.wait(), SHUTDOWN_TIMEOUT_S + 30)
        took_s = time.monotonic() - signalled
    finally:
        await product.kill()
    assert status == 0, product.log[-3000:]
    assert took_s <= SHUTDOWN_TIMEOUT_S + EXIT_GRACE_S, f"exited {took_s:.1f} s after SIGTERM"
    answers = replies(tg, message)
    assert [sentence(answer) for answer in answers] == [GAVE_UP], "told once, after exit too"
    assert not reply_problems(tg), reply_problems(tg)
    assert "Traceback" not in product.log, product.log

    # The same text from a fresh process on the same Redis: answered, and by a synthesis.
    async with running_product(
        tg, tmp_path / "again", tts_url=url, redis_url=redis_url(valkey)
    ) as again:
        retry = tg.send_command(301, 301, "say", hanging)
        await until_answered(again, tg, [retry], timeout_s=60)
        assert [is_voice_note(answer) for answer in replies(tg, retry)] == [True]
        assert is_voice_note(await say(again, tg, 302, "A new request after the restart."))
