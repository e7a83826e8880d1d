"""Secrets never reach a log line, whether in the message, its arguments or a traceback."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from bots.log_redaction import RedactSecrets, redact_secrets_in_logs

TOKEN = "123456:AAH-super-secret-token"


def test_filter_masks_messages_args_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RedactSecrets([TOKEN, "short"]))
    log = logging.getLogger("test.redaction")
    with caplog.at_level(logging.INFO):
        log.info("POST https://api.telegram.org/bot%s/getMe", TOKEN)
        try:
            raise RuntimeError(f"failed with {TOKEN}")
        except RuntimeError:
            log.exception("boom")
    text = caplog.text
    assert TOKEN not in text
    assert "bot***/getMe" in text
    assert "failed with ***" in text
    assert "short" not in RedactSecrets(["short"]).secrets  # too short to mask safely


def test_installs_on_root_handlers_and_quiets_httpx() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler()
    root.addHandler(handler)
    try:
        redact_secrets_in_logs(SecretStr(TOKEN), None)
        assert any(isinstance(f, RedactSecrets) for f in handler.filters)
        assert logging.getLogger("httpx").level == logging.WARNING
    finally:
        root.removeHandler(handler)
