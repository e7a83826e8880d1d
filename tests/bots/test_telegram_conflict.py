"""A second poller with the same token: Telegram answers one of them 409 Conflict on every
turn. ``saybot run`` says so in one clear sentence and stops on its own, instead of the two
processes spinning, taking turns at stealing each other's updates."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
import pytest
from pydantic import SecretStr

from bots.run import run
from bots.telegram_bot.app import POLLING_CONFLICT
from storage.settings import StorageSettings
from tests.bots.harness import bot_settings
from tests.servers import serve_in_thread
from tests.standins.telegram_api import TOKEN, TelegramStandin
from tests.tts_helpers import make_settings
from tts_service.api import create_app
from tts_service.engines.piper import PiperEngine


async def other_poller(tg: TelegramStandin, stopped: asyncio.Event) -> None:
    """Another process polling with the same token, until ``stopped``."""
    async with httpx.AsyncClient(timeout=10) as http:
        while not stopped.is_set():
            await http.post(f"{tg.base_url}{TOKEN}/getUpdates", json={"timeout": 1})


@pytest.mark.timeout(60)
async def test_run_stops_with_a_clear_sentence_when_another_process_polls(
    piper_engine: PiperEngine,
    storage_settings: StorageSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with TelegramStandin() as tg:
        with serve_in_thread(create_app(piper_engine, make_settings())) as tts_url:
            settings = bot_settings(
                tts_service_url=tts_url,
                telegram_bot_token=SecretStr(TOKEN),
                telegram_api_base_url=tg.base_url,
                telegram_file_base_url=tg.base_file_url,
                telegram_poll_timeout_s=5,
                admin_port=0,
            )
            never = asyncio.Event()  # nobody sends a stop signal: run() must stop itself
            task = asyncio.create_task(run(settings, storage_settings, never))
            await tg.wait_for("getUpdates", timeout=30)  # saybot polls
            stopped = asyncio.Event()
            other = asyncio.create_task(other_poller(tg, stopped))
            try:
                with caplog.at_level(logging.ERROR, logger="bots.telegram_bot.app"):
                    reason = await asyncio.wait_for(task, 30)
            finally:
                stopped.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(other, 15)
    assert reason == POLLING_CONFLICT
    assert "409 Conflict" in reason and "TELEGRAM_WEBHOOK_URL" in reason
    assert [r.getMessage() for r in caplog.records].count(POLLING_CONFLICT) == 1
