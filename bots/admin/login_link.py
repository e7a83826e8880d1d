"""With no ``ADMIN_TOKEN``, ``saybot run`` makes one per start and prints a link that logs in.

As Jupyter does: ``make run`` alone gives a newcomer a page to open. The link,
``http://127.0.0.1:8089/?token=…``, is exchanged for the HttpOnly session cookie on first use
(``GET /?token=``, throttled like the login form) and the browser is sent on to ``/``, so the
token leaves the address bar and the history. The token lives only in this process: it is
printed once on stdout (not logged: log records mask it) and dies with the process. Without a
token of its own the endpoint still listens on loopback only (``check_admin_bind`` runs
before one is made).
"""

from __future__ import annotations

import secrets
import sys
from typing import TextIO

from pydantic import SecretStr

from bots.log_redaction import redact_also
from bots.settings import BotSettings
from tts_service.exposure import secret_value

LOGIN_QUERY = "token"


def with_login_token(settings: BotSettings) -> tuple[BotSettings, str | None]:
    """``settings`` with a random admin token when none is set, and that token (else None)."""
    if secret_value(settings.admin_token) is not None:
        return settings, None
    token = secrets.token_urlsafe(32)
    redact_also(token)
    return settings.model_copy(update={"admin_token": SecretStr(token)}), token


def login_link(admin_url: str, token: str) -> str:
    return f"{admin_url}/?{LOGIN_QUERY}={token}"


def announce_login_link(admin_url: str, token: str, out: TextIO | None = None) -> None:
    """One line on stdout with the link (the terminal that ran ``saybot run``)."""
    print(
        f"saybot: open {login_link(admin_url, token)} for the playground and the dashboard "
        "(a new token each start; set ADMIN_TOKEN to keep one)",
        file=out or sys.stdout,
        flush=True,
    )
