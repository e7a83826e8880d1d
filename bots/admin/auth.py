"""Who may read the admin endpoint: ``ADMIN_TOKEN``, as a bearer header or a session cookie.

- Scripts and Prometheus send ``Authorization: Bearer <ADMIN_TOKEN>``.
- A browser posts the token once to the login form (``POST /admin/login``) and gets an
  ``HttpOnly``, ``SameSite=Strict`` cookie ``saybot_admin`` holding ``<expiry>.<mac>``: an
  HMAC of the expiry under a key derived from the token. The cookie never holds the token
  itself, expires after ``SESSION_TTL_S``, and every session ends when the token changes.
- Without ``ADMIN_TOKEN`` the endpoint answers only ``/healthz``; everything else says
  that ``ADMIN_TOKEN`` is not configured (401), and ``check_admin_bind`` refuses to listen
  beyond loopback at all. No token is generated: there is nothing to leak into logs.

Tokens and MACs are compared in constant time. The token is never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable

from pydantic import SecretStr

from bots.settings import BotSettings
from tts_service.exposure import is_loopback, secret_value

log = logging.getLogger(__name__)

SESSION_COOKIE = "saybot_admin"
SESSION_TTL_S = 12 * 3600  # a working day; then the login form again
MIN_TOKEN_CHARS = 16  # shorter tokens are accepted with a warning; `secrets.token_urlsafe(32)`
_SESSION_KEY_LABEL = b"saybot admin session v1"


class AdminBindRefused(RuntimeError):
    """Refusing to expose the admin endpoint beyond loopback without ``ADMIN_TOKEN``."""


class AdminUnauthorized(Exception):
    """The request carries no valid credentials; ``code`` says which case, for the body."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_admin_bind(settings: BotSettings) -> None:
    """Without ``ADMIN_TOKEN`` the admin endpoint may only listen on loopback."""
    if secret_value(settings.admin_token) is None and not is_loopback(settings.admin_host):
        raise AdminBindRefused(
            f"refusing to serve the admin endpoint on {settings.admin_host} without "
            "ADMIN_TOKEN; set a token or leave ADMIN_HOST at 127.0.0.1"
        )


class AdminAuth:
    """Checks bearer tokens and session cookies against one ``ADMIN_TOKEN``."""

    def __init__(
        self,
        token: SecretStr | None,
        *,
        session_ttl_s: int = SESSION_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        secret = secret_value(token)  # a blank ADMIN_TOKEN= is no token
        self._token = secret.encode() if secret is not None else None
        self._session_key = (
            hmac.new(self._token, _SESSION_KEY_LABEL, hashlib.sha256).digest()
            if self._token is not None
            else None
        )
        self.session_ttl_s = session_ttl_s
        self._clock = clock
        if self._token is None:
            log.warning(
                "ADMIN_TOKEN is not set: the admin endpoint answers only /healthz; "
                "set ADMIN_TOKEN to use /readyz, /usage, /metrics and /admin"
            )
        elif len(self._token) < MIN_TOKEN_CHARS:
            log.warning(
                "ADMIN_TOKEN is shorter than %d characters; a longer one is harder to guess",
                MIN_TOKEN_CHARS,
            )

    @property
    def configured(self) -> bool:
        return self._token is not None

    def token_matches(self, given: str) -> bool:
        if self._token is None:
            return False
        return hmac.compare_digest(given.encode(), self._token)

    def new_session(self) -> str:
        """A cookie value: the expiry and its MAC (no token inside)."""
        if self._session_key is None:
            raise AdminUnauthorized(*_NOT_CONFIGURED)
        expires = int(self._clock()) + self.session_ttl_s
        return f"{expires}.{self._mac(expires)}"

    def session_valid(self, value: str) -> bool:
        if self._session_key is None:
            return False
        expires_text, _, mac = value.partition(".")
        if not expires_text.isdigit():
            return False
        expires = int(expires_text)
        now = self._clock()
        if not now < expires <= now + self.session_ttl_s:
            return False
        return hmac.compare_digest(mac.encode(), self._mac(expires).encode())

    def authorize(self, bearer: str | None, cookie: str | None) -> None:
        """Pass, or raise ``AdminUnauthorized`` saying why (never echoing what was sent)."""
        if self._token is None:
            raise AdminUnauthorized(*_NOT_CONFIGURED)
        if bearer is not None and self.token_matches(bearer):
            return
        if cookie is not None and self.session_valid(cookie):
            return
        if bearer is None and cookie is None:
            raise AdminUnauthorized(
                "unauthorized", "send Authorization: Bearer <ADMIN_TOKEN>, or log in at /admin"
            )
        raise AdminUnauthorized("unauthorized", "wrong token or expired session")

    def _mac(self, expires: int) -> str:
        assert self._session_key is not None
        return hmac.new(self._session_key, str(expires).encode(), hashlib.sha256).hexdigest()


_NOT_CONFIGURED = (
    "admin_token_not_configured",
    "ADMIN_TOKEN is not configured; set it and restart saybot to use the admin endpoint",
)
