"""``saybot run`` as the README starts it: one real process, embedded Valkey, local Piper.

The Telegram stand-in plays the Bot API; the process is stopped with SIGTERM
and must finish the request in flight, then exit cleanly. In-process, ``run()``
serves ``/healthz`` while it still waits for a TTS service that is not ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.responses import JSONResponse

from bots.run import configured_platforms, run, wait_for_tts
from bots.tts_client import TTSClient
from storage.settings import StorageSettings
from tests.bots.harness import ASGIApp, Scope, bot_settings
from tests.redis_fixtures import free_port
from tests.servers import serve_in_thread
from tests.standins.telegram_api import TOKEN, Call, TelegramStandin
from tests.tts_helpers import make_settings
from tts_service.api import create_app
from tts_service.engines.piper import PiperEngine

USER = 777
ROOT = Path(__file__).parents[2]
ADMIN_TOKEN = "run-test-admin-token-0123456789"


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


def test_a_blank_platform_token_starts_no_adapter() -> None:
    blank = bot_settings(telegram_bot_token=SecretStr(""), discord_bot_token=SecretStr("  "))
    assert configured_platforms(blank) == []
    assert configured_platforms(bot_settings(telegram_bot_token=SecretStr(TOKEN))) == ["telegram"]


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


class HeldReadyz:
    """ASGI wrapper of the real TTS service: ``/readyz`` answers 503 until ``release()``,
    as a service still loading its engine does; ``refused`` counts the probes turned away."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.held = True
        self.refused = 0

    def release(self) -> None:
        self.held = False

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/readyz" and self.held:
            self.refused += 1
            body = {"error": {"code": "not_ready", "message": "the engine is loading"}}
            await JSONResponse(body, status_code=503)(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def until(
    check: Callable[[], Awaitable[bool]], task: asyncio.Task[None], timeout_s: float = 30.0
) -> None:
    """Poll ``check`` until it holds; fail at once if ``run()`` ended."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        if task.done():
            task.result()
            raise AssertionError("run() returned before it was stopped")
        with contextlib.suppress(httpx.TransportError):
            if await check():
                return
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_platforms_start_at_once_while_a_remote_tts_service_is_still_loading(
    tg: TelegramStandin, piper_engine: PiperEngine, storage_settings: StorageSettings
) -> None:
    """A cold GPU must not hold up start-up: Telegram polls (and serves cached audio) while
    the service loads; /readyz says the service is the one not ready."""
    service = HeldReadyz(create_app(piper_engine, make_settings()))
    port = free_port()
    with serve_in_thread(service) as tts_url:
        settings = bot_settings(
            tts_service_url=tts_url,
            telegram_bot_token=SecretStr(TOKEN),
            telegram_api_base_url=tg.base_url,
            telegram_file_base_url=tg.base_file_url,
            admin_port=port,
            admin_token=SecretStr(ADMIN_TOKEN),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(run(settings, storage_settings, stop))
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10
            ) as http:

                async def alive() -> bool:
                    return bool((await http.get("/healthz")).json() == {"status": "ok"})

                loading: list[httpx.Response] = []

                async def telegram_up() -> bool:
                    loading.append(await http.get("/readyz"))
                    return bool(loading[-1].json()["components"]["telegram"] == {"ok": True})

                await until(alive, task)
                await until(telegram_up, task)
                assert service.refused >= 1 and service.held  # still loading, and asked
                assert loading[-1].status_code == 503, loading[-1].text
                assert loading[-1].json()["components"]["tts"] == {
                    "ok": False,
                    "code": "tts_busy",
                    "reason": "the TTS service is busy or still loading its engine",
                }
                assert await alive()
                assert not task.done()

                service.release()
                ready: list[httpx.Response] = []

                async def running() -> bool:
                    ready.append(await http.get("/readyz"))
                    return ready[-1].status_code == 200

                await until(running, task)
                components = ready[-1].json()["components"]
                # A shared REDIS_URL without SAYBOT_DATA_KEY: ready, and /readyz says that
                # voice clips are stored unencrypted there.
                redis_status = components["redis"]
                assert (redis_status["ok"], redis_status["embedded"]) == (True, False)
                assert ["unencrypted" in w for w in redis_status["warnings"]] == [True]
                assert components["tts"]["engine"]["name"] == "piper"
                assert components["telegram"] == {"ok": True}
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


class AnswersSeen:
    """ASGI wrapper of the real TTS service: the path and status of every answer it gave."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.answers: list[tuple[str, int]] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def noting(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.answers.append((scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, noting)


REFUSED_TOKEN = "the TTS service refused our token: check TTS_API_TOKEN"


async def test_waiting_for_the_tts_service_ends_at_once_when_it_refuses_our_token(
    piper_engine: PiperEngine,
) -> None:
    """A wrong token will not fix itself: the start-up wait asks once, not for a minute."""
    service = AnswersSeen(create_app(piper_engine, make_settings()))
    with serve_in_thread(service) as url:
        client = TTSClient(url, "not-the-services-token")
        try:
            await asyncio.wait_for(wait_for_tts(client, timeout_s=600), 30)
        finally:
            await client.aclose()
    assert service.answers == [("/readyz", 401)]


async def test_a_refused_token_is_reported_once_and_does_not_hold_up_start(
    tg: TelegramStandin,
    piper_engine: PiperEngine,
    open_storage: StorageSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """TTS_API_TOKEN is wrong: Telegram polls without the service being waited for, every
    /say reads "unavailable", the log says what to fix once, /readyz says it too."""
    service = AnswersSeen(create_app(piper_engine, make_settings()))
    port = free_port()
    with serve_in_thread(service) as tts_url:
        settings = bot_settings(
            tts_service_url=tts_url,
            tts_api_token=SecretStr("not-the-services-token"),
            telegram_bot_token=SecretStr(TOKEN),
            telegram_api_base_url=tg.base_url,
            telegram_file_base_url=tg.base_file_url,
            admin_port=port,
            admin_token=SecretStr(ADMIN_TOKEN),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(run(settings, open_storage, stop))
        try:
            await tg.wait_for("getUpdates", timeout=30)
            assert not task.done()
            assert ("/readyz", 401) not in service.answers  # polling began without waiting
            asked = [tg.send_command(USER, USER, "say", f"Anyone there? ({n})") for n in (1, 2)]
            for message in asked:

                def answers(call: Call, message: dict[str, Any] = message) -> bool:
                    return bool(
                        call.params["reply_parameters"]["message_id"] == message["message_id"]
                    )

                reply = await tg.wait_for("sendMessage", answers, timeout=30)
                assert reply.params["text"] == (
                    "The voice engine is unavailable right now — please try again later."
                )
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10
            ) as http:
                ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["components"]["tts"] == {
                "ok": False,
                "code": "tts_misconfigured",
                "reason": REFUSED_TOKEN,
            }
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    refusals = {status for _, status in service.answers}
    assert refusals == {401} and len(service.answers) >= 3  # two /say and the probe at least
    logged = [r for r in caplog.records if r.getMessage() == REFUSED_TOKEN]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR
