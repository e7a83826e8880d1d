"""``saybot run`` as the README starts it: one real process, embedded Valkey, local Piper.

The Telegram stand-in plays the Bot API; the process is stopped with SIGTERM
and must finish the request in flight, then exit cleanly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.standins.telegram_api import TOKEN, TelegramStandin

USER = 777
ROOT = Path(__file__).parents[2]


@pytest.fixture
async def tg() -> AsyncIterator[TelegramStandin]:
    async with TelegramStandin() as standin:
        yield standin


async def start_product(tg: TelegramStandin, data_dir: Path) -> asyncio.subprocess.Process:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "TTS_SERVICE_URL", "TTS_API_TOKEN", "DISCORD_BOT_TOKEN")
    }
    env.update(
        PYTHONPATH=str(ROOT),
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL=tg.base_url,
        TELEGRAM_FILE_BASE_URL=tg.base_file_url,
        TELEGRAM_POLL_TIMEOUT_S="1",
        EMBEDDED_DATA_DIR=str(data_dir),
        TTS_ONNX_THREADS="1",
        ADMIN_PORT="0",
    )
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.cli",
        "run",
        cwd=data_dir,  # no .env of the developer's is read
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_run_serves_telegram_and_stops_cleanly(tg: TelegramStandin, tmp_path: Path) -> None:
    process = await start_product(tg, tmp_path)
    try:
        await tg.wait_for("setMyCommands", timeout=60)
        message = tg.send_command(USER, USER, "say", "Hello from the whole product.")
        reply = await tg.wait_for(
            "sendVoice",
            lambda call: call.params["reply_parameters"]["message_id"] == message["message_id"],
            timeout=60,
        )
        assert reply.files["voice"][:4] == b"OggS"

        # A request in flight when SIGTERM arrives still gets its answer.
        long_text = "This request is still being spoken when the stop signal arrives. " * 8
        slow = tg.send_command(USER, USER, "say", long_text)
        await tg.wait_for("sendChatAction", timeout=30, after_seq=reply.seq + 1)
        process.send_signal(signal.SIGTERM)
        answered = await tg.wait_for(
            "sendVoice",
            lambda call: call.params["reply_parameters"]["message_id"] == slow["message_id"],
            timeout=60,
        )
        assert answered.files["voice"][:4] == b"OggS"
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stdout is not None
    output = (await process.stdout.read()).decode()
    assert "Traceback" not in output
    assert TOKEN not in output and TOKEN.split(":")[1] not in output  # secrets never logged
    assert "embedded Valkey" in output
    assert (tmp_path / "saybot.rdb").exists()  # the embedded server saved its data on the way out
