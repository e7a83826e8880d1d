"""Redis dies under the real ``saybot run`` and comes back: answers go on (uncached), then
caching resumes.

The Valkey is the test's own, killed with SIGKILL (no goodbye, no snapshot) and started
again, empty, on the same port. Whether an answer came from the cache is read at the TTS
service: a cached answer costs it no synthesis.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.faulty_tts import FaultyTTS, serving
from tests.faults.product import (
    is_voice_note,
    redis_url,
    running_product,
    say,
    still_serving,
)
from tests.redis_fixtures import start_valkey
from tests.standins.telegram_api import TelegramStandin
from tts_service.engines.piper import PiperEngine

pytestmark = [pytest.mark.faults, pytest.mark.timeout(90)]


@pytest.fixture
def tts(piper_engine: PiperEngine) -> Iterator[tuple[str, FaultyTTS]]:
    with serving(piper_engine) as served:
        yield served


async def test_answers_go_on_uncached_while_redis_is_down_and_caching_resumes(
    tg: TelegramStandin, valkey: Any, tmp_path: Path, tts: tuple[str, FaultyTTS]
) -> None:
    url, faulty = tts
    port = valkey.port
    restarted: Any = None
    # Rate limiting stays on (it fails open while Redis is down); each message has its user.
    try:
        async with running_product(
            tg, tmp_path / "bot", tts_url=url, redis_url=redis_url(valkey)
        ) as product:
            before = "Said before the outage."
            for user in (201, 202):
                assert is_voice_note(await say(product, tg, user, before))
            assert faulty.syntheses(before) == 1, "cached while Redis is up"

            valkey.terminate()  # SIGKILL
            during = "Said while Redis is down."
            for user in (203, 204):
                assert is_voice_note(await say(product, tg, user, during))
            assert faulty.syntheses(during) == 2, "nothing can be cached: each is synthesised"
            assert is_voice_note(await say(product, tg, 205, before))  # the cache is gone too

            restarted = start_valkey(port=port, data_dir=tmp_path / "valkey")
            await product.until_ready("redis")
            after = "Said once Redis is back."
            for user in (206, 207):
                assert is_voice_note(await say(product, tg, user, after))
            assert faulty.syntheses(after) == 1, "caching resumed"
            await still_serving(product, tg, 208, "Still here after the outage.")
    finally:
        if restarted is not None:  # after saybot stopped: it writes its last usage there
            restarted.stop()
    assert len(product.log_lines("Redis unavailable")) == 1, "the outage is logged once"
    assert product.log_lines("Redis is back")
