"""Secrets never reach a log line, whether in the message, its arguments or a traceback,
whichever logger and handler write it: uvicorn's own (``propagate=False``) included."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from pydantic import SecretStr

from bots.log_redaction import (
    MASK,
    RedactSecrets,
    redact_also,
    redact_secrets_in_logs,
    stop_redacting,
)
from tests.standins.telegram_api import TOKEN as BOT_TOKEN

TOKEN = "123456:AAH-super-secret-token"
SHORT = "Zq7"  # a configured secret of any length is masked
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redacting() -> Iterator[None]:
    try:
        yield
    finally:
        stop_redacting()


def test_filter_masks_messages_args_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RedactSecrets([TOKEN, SHORT, "   "]))
    log = logging.getLogger("test.redaction")
    with caplog.at_level(logging.INFO):
        log.info("POST https://api.telegram.org/bot%s/getMe", TOKEN)
        log.info("password %s, quoted %s", SHORT, quote(TOKEN, safe=""))
        try:
            raise RuntimeError(f"failed with {TOKEN}")
        except RuntimeError:
            log.exception("boom")
    text = caplog.text
    assert TOKEN not in text and SHORT not in text and quote(TOKEN, safe="") not in text
    assert "bot***/getMe" in text
    assert "password ***, quoted ***" in text
    assert "failed with ***" in text
    assert "   " not in RedactSecrets(["   "]).secrets  # a blank secret is no secret


def test_every_record_is_masked_whatever_its_handler(redacting: None) -> None:
    """Handlers added after the call, on loggers that do not propagate, see masked records;
    arguments stay arguments (uvicorn's access formatter unpacks them)."""
    redact_secrets_in_logs(SecretStr(TOKEN), SecretStr(SHORT), SecretStr(""), None)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    own = logging.getLogger("test.redaction.own")
    own.propagate = False
    own.addHandler(handler)
    own.setLevel(logging.INFO)
    try:
        record = own.makeRecord(
            own.name, logging.INFO, __file__, 1, "%s %s %d", (TOKEN, SHORT, 7), None
        )
        assert record.args == (MASK, MASK, 7)
        own.info("GET /bot%s/getMe?pw=%s %d", TOKEN, SHORT, 200)
        redact_also("generated-at-run-time")
        own.info("secret_token=%r", "generated-at-run-time")
    finally:
        own.removeHandler(handler)
        own.propagate = True
    assert stream.getvalue().splitlines() == ["GET /bot***/getMe?pw=*** 200", "secret_token='***'"]
    assert logging.getLogger("httpx").level == logging.WARNING


# Runs in its own process so that uvicorn installs its own handlers (propagate=False) and
# stream handlers write to the process's real stdout and stderr, as in production.
SCRIPT = f"""
import asyncio, logging, sys

import httpx, uvicorn
from telegram import Bot
from telegram.error import TelegramError

from bots.log_redaction import redact_secrets_in_logs
from tests.standins.telegram_api import TOKEN, TelegramStandin

SHORT = {SHORT!r}
logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
redact_secrets_in_logs(TOKEN, SHORT, "  ")
logging.getLogger("httpx").setLevel(logging.DEBUG)  # one who turns request lines on: masked too
log = logging.getLogger("saybot.test")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({{"type": "lifespan.startup.complete"}})
        await send({{"type": "lifespan.shutdown.complete"}})
        return
    if scope["path"].startswith("/boom"):
        raise RuntimeError("failed for " + scope["path"])
    await send({{"type": "http.response.start", "status": 404, "headers": []}})
    await send({{"type": "http.response.body", "body": b""}})


async def main():
    # Installed now, after redaction was: uvicorn's own loggers and handlers, access log on.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="info"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient() as http:
        await http.get(f"http://127.0.0.1:{{port}}/bot{{TOKEN}}/getMe?pw={{SHORT}}")
        await http.get(f"http://127.0.0.1:{{port}}/boom/bot{{TOKEN}}")
    async with TelegramStandin() as tg:
        tg.fail_next("getMe", 500)
        bot = Bot(TOKEN, base_url=tg.base_url)
        try:
            async with bot:
                pass
        except TelegramError:
            log.exception("the bot could not start against %s", bot.base_url)
    server.should_exit = True
    await task


asyncio.run(main())
"""


def test_no_secret_reaches_stdout_or_stderr_of_a_real_process() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out, err = result.stdout, result.stderr
    for secret in (BOT_TOKEN, quote(BOT_TOKEN, safe=""), SHORT):
        assert secret not in out and secret not in err, secret
    # uvicorn's access log (its own handler, on stdout), path quoted by uvicorn:
    assert '"GET /bot***/getMe?pw=*** HTTP/1.1" 404' in out
    # uvicorn's error log (its own handler, on stderr), with the traceback:
    assert "ERROR uvicorn.error" in err or "Exception in ASGI application" in err
    assert "RuntimeError: failed for /boom/bot***" in err
    # httpx's request lines, PTB's own debug lines and the failed request's traceback:
    assert "HTTP Request: GET http://127.0.0.1:" in err and "/bot***/getMe?pw=***" in err
    assert "/bot***/getMe" in err and "Set Bot API URL: http://127.0.0.1:" in err
    assert "the bot could not start against http://127.0.0.1:" in err
