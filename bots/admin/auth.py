"""Who may read the admin endpoint: ``ADMIN_TOKEN``, as a bearer header or a session cookie.

- Scripts and Prometheus send ``Authorization: Bearer <ADMIN_TOKEN>``. Nothing stores or
  throttles those: a bearer request never touches Redis, and never waits out the login throttle.
- A browser posts the token once to the login form (``POST /admin/login``) and gets an
  ``HttpOnly``, ``SameSite=Strict`` cookie ``saybot_admin`` holding a random session id
  (``secrets.token_urlsafe(32)``). Redis keeps the session for ``SESSION_TTL_S``
  (``storage.sessions``, under the id's sha256): logging out deletes it, so a copied cookie
  stops working with it. Each session is bound to the token it was made under (an HMAC of
  its id under a key derived from the token), so changing ``ADMIN_TOKEN`` ends them all.
  With Redis down no session can be checked or made: the dashboard asks to log in again and
  the form says why; the bearer header still works.
- Failed logins are counted per client address and overall (``storage.sessions.LoginThrottle``);
  past either limit the form answers 429 until the window ends, even to the right token.
- Without ``ADMIN_TOKEN`` the endpoint answers only ``/healthz``; everything else says
  that ``ADMIN_TOKEN`` is not configured (401), and ``check_admin_bind`` refuses to listen
  beyond loopback at all. ``AdminAuth`` makes no token; ``saybot run`` does, once per start,
  when none is set (``bots.admin.login_link``: printed as a login link, masked in logs).

Tokens and MACs are compared in constant time. The token is never logged or echoed.

Errors (``bots.admin.app`` turns each into an answer, JSON or the login form)::

    AdminAuthError              ``code`` and ``message`` for the body, ``status`` for the answer
    ├── AdminUnauthorized       401: no valid credentials, or a session Redis cannot vouch for
    ├── LoginThrottled          429: too many failed logins; ``retry_after_s``
    └── SessionsUnavailable     503: Redis is down (or not open yet): no session can be made

``AdminBindRefused`` is raised once, at start, not per request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable

from pydantic import SecretStr

from bots.settings import BotSettings
from storage import keys
from storage.client import CLIENT_TYPES, RedisClient
from storage.errors import StorageUnavailable
from storage.metrics import StorageMetrics
from storage.sessions import ClientSource, LoginCharge, LoginThrottle, SessionStore
from tts_service.exposure import is_loopback, secret_value

log = logging.getLogger(__name__)

SESSION_COOKIE = "saybot_admin"
SESSION_TTL_S = keys.ADMIN_SESSION_TTL_S
MIN_TOKEN_CHARS = 16  # shorter tokens are accepted with a warning; `secrets.token_urlsafe(32)`
_SESSION_KEY_LABEL = b"saybot admin session v1"
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{32,128}")  # what token_urlsafe makes; else no lookup


class AdminBindRefused(RuntimeError):
    """Refusing to expose the admin endpoint beyond loopback without ``ADMIN_TOKEN``."""


class AdminAuthError(Exception):
    """A request the admin endpoint refuses; ``code`` and ``message`` go into the body."""

    status = 401

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AdminUnauthorized(AdminAuthError):
    """The request carries no valid credentials; ``code`` says which case, for the body."""


class LoginThrottled(AdminAuthError):
    """Too many failed logins: the form refuses every token for ``retry_after_s``."""

    status = 429

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("login_throttled", "too many failed logins")
        self.retry_after_s = retry_after_s


class SessionsUnavailable(AdminAuthError):
    """Redis cannot keep or check sessions right now."""

    status = 503

    def __init__(self) -> None:
        super().__init__(
            "sessions_unavailable",
            "logging in needs Redis, which is unavailable right now; try again shortly "
            "(Authorization: Bearer <ADMIN_TOKEN> still works)",
        )


def check_admin_bind(settings: BotSettings) -> None:
    """Without ``ADMIN_TOKEN`` the admin endpoint may only listen on loopback; beyond it,
    the token must be a strong one (``check_strong_token``)."""
    if secret_value(settings.admin_token) is None and not is_loopback(settings.admin_host):
        raise AdminBindRefused(
            f"refusing to serve the admin endpoint on {settings.admin_host} without "
            "ADMIN_TOKEN; set a token or leave ADMIN_HOST at 127.0.0.1"
        )
    from tts_service.exposure import WeakToken, check_strong_token

    try:
        check_strong_token("ADMIN_TOKEN", settings.admin_token, settings.admin_host)
    except WeakToken as exc:
        raise AdminBindRefused(
            f"refusing to serve the admin endpoint on {settings.admin_host}: {exc}"
        ) from exc


class AdminAuth:
    """Checks bearer tokens and session cookies against one ``ADMIN_TOKEN``, makes and ends
    sessions, and throttles failed logins.

    ``redis`` is a client, or a callable that returns one (None until it is open: ``saybot
    run`` serves the endpoint before it opens Redis); ``metrics`` the process's storage
    metrics, so Redis failures here count and share the breaker like every other call's.
    """

    def __init__(
        self,
        token: SecretStr | None,
        *,
        redis: RedisClient | ClientSource | None = None,
        metrics: StorageMetrics | None = None,
        session_ttl_s: int = SESSION_TTL_S,
        clock: Callable[[], float] = time.time,
        throttle: LoginThrottle | None = None,
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
        source = _client_source(redis)
        metrics = metrics if metrics is not None else StorageMetrics()
        self._sessions = SessionStore(source, metrics)
        self.throttle = throttle if throttle is not None else LoginThrottle(source, metrics)
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

    async def login(self, given: str, client_address: str) -> str:
        """The login form's token → a new session id (for the cookie).

        Raises ``LoginThrottled`` before looking at the token once the client (or everyone)
        has failed too often this window, ``AdminUnauthorized`` for a wrong token (counted),
        ``SessionsUnavailable`` when Redis cannot keep the session.
        """
        if self._token is None:
            raise AdminUnauthorized(*_NOT_CONFIGURED)
        charge = await self.throttle.charge(client_address)
        if not charge.allowed:
            raise LoginThrottled(charge.retry_after_s)
        if not self.token_matches(given):
            self._log_failure(client_address, charge)
            raise AdminUnauthorized("unauthorized", "Wrong token.")
        await self.throttle.refund(client_address, charge)
        return await self.new_session()

    async def new_session(self) -> str:
        """A new session id, kept in Redis for ``session_ttl_s`` (no token inside)."""
        if self._session_key is None:
            raise AdminUnauthorized(*_NOT_CONFIGURED)
        session_id = secrets.token_urlsafe(32)
        expires_at = self._clock() + self.session_ttl_s
        try:
            await self._sessions.save(
                session_id, self._binding(session_id), expires_at, self.session_ttl_s
            )
        except StorageUnavailable as exc:
            raise SessionsUnavailable() from exc
        return session_id

    async def session_valid(self, value: str) -> bool:
        """Whether the cookie names a live session made under this token.

        Raises ``SessionsUnavailable`` when Redis cannot say.
        """
        if self._session_key is None or not _SESSION_ID.fullmatch(value):
            return False
        try:
            stored = await self._sessions.load(value)
        except StorageUnavailable as exc:
            raise SessionsUnavailable() from exc
        if stored is None or not self._clock() < stored.expires_at:
            return False
        # Made under another ADMIN_TOKEN (or written by someone else): not a session of ours.
        return hmac.compare_digest(stored.binding.encode(), self._binding(value).encode())

    async def end_session(self, value: str) -> bool:
        """Delete the session the cookie names; False when Redis could not be told (then
        it lasts until it expires)."""
        if not _SESSION_ID.fullmatch(value):
            return True  # nothing of ours to end
        return await self._sessions.delete(value)

    async def authorize(self, bearer: str | None, cookie: str | None) -> None:
        """Pass, or raise ``AdminUnauthorized`` saying why (never echoing what was sent)."""
        if self._token is None:
            raise AdminUnauthorized(*_NOT_CONFIGURED)
        if bearer is not None and self.token_matches(bearer):
            return
        if cookie is not None:
            try:
                if await self.session_valid(cookie):
                    return
            except SessionsUnavailable:
                raise AdminUnauthorized(
                    "session_unverifiable",
                    "sessions cannot be checked while Redis is unavailable; send "
                    "Authorization: Bearer <ADMIN_TOKEN>, or log in again once it is back",
                ) from None
        if bearer is None and cookie is None:
            raise AdminUnauthorized(
                "unauthorized", "send Authorization: Bearer <ADMIN_TOKEN>, or log in at /admin"
            )
        raise AdminUnauthorized("unauthorized", "wrong token or expired session")

    def _binding(self, session_id: str) -> str:
        """Ties a session to the token: keyed by the id, which Redis never sees, so what
        Redis holds cannot test a guess of the token."""
        assert self._session_key is not None
        return hmac.new(self._session_key, session_id.encode(), hashlib.sha256).hexdigest()

    def _log_failure(self, client_address: str, charge: LoginCharge) -> None:
        throttle = self.throttle
        log.warning(
            "admin login refused from %s: wrong token (%d of %d allowed from there, "
            "%d of %d from everyone, per %d min%s)",
            client_address,
            charge.client_failures,
            throttle.per_client,
            charge.all_failures,
            throttle.overall,
            throttle.window_s // 60,
            "; counted in this process: Redis is unavailable" if charge.in_process else "",
        )
        if charge.client_failures == throttle.per_client:
            log.warning(
                "admin login throttled for %s: its logins are refused for up to %d min",
                client_address,
                throttle.window_s // 60,
            )
        if charge.all_failures == throttle.overall:
            log.warning(
                "admin login throttled for everyone after %d failed logins: the form refuses "
                "every login for up to %d min (bearer requests are unaffected)",
                charge.all_failures,
                throttle.window_s // 60,
            )


def _client_source(redis: RedisClient | ClientSource | None) -> ClientSource:
    if redis is None:
        return lambda: None
    if isinstance(redis, CLIENT_TYPES):
        return lambda: redis
    return redis


_NOT_CONFIGURED = (
    "admin_token_not_configured",
    "ADMIN_TOKEN is not configured; set it and restart saybot to use the admin endpoint",
)
