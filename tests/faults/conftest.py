"""Fixtures of the fault suite: the Telegram stand-in and a private Valkey per test.

Each test runs the real ``saybot run`` (``tests.faults.product``) against them and a TTS
endpoint it controls (``tests.faults.faulty_tts``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.redis_fixtures import start_valkey
from tests.standins.telegram_api import TelegramStandin


@pytest.fixture
async def tg() -> AsyncIterator[TelegramStandin]:
    async with TelegramStandin() as standin:
        yield standin


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[Any]:
    """A Valkey of this test's own, so one can be killed without touching the others."""
    server = start_valkey(data_dir=tmp_path / "valkey")
    try:
        yield server
    finally:
        if server.is_running():
            server.stop()
