"""The login form's edges: whose form it is, who is asking, and each refusal as a page.

Apart from ``app`` because these are the form's own rules: a POST naming another site's
``Origin`` is refused (403), the throttle counts by client address, and every way a login
can fail becomes the login form again with one sentence (and ``Retry-After`` where waiting
helps).
"""

from __future__ import annotations

import datetime as dt
import math
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from bots.admin.auth import (
    SESSION_COOKIE,
    AdminAuth,
    AdminAuthError,
    LoginThrottled,
    SessionsUnavailable,
)
from bots.admin.dashboard import render_login

MAX_LOGIN_BODY_BYTES = 4096
SESSIONS_RETRY_AFTER_S = 5  # Redis down: what the login form tells a browser to wait
DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int] | None:
    """``scheme://host[:port]`` as (scheme, host, port), default ports filled in."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if parts.hostname is None or scheme not in DEFAULT_PORTS:
        return None
    return scheme, parts.hostname.lower(), port if port is not None else DEFAULT_PORTS[scheme]


def foreign_origin(request: Request) -> bool:
    """True when the request names an ``Origin`` that is not this endpoint's own (``null``
    and garbled ones included); a request without one (not from a browser) is not foreign."""
    origin = request.headers.get("origin")
    if origin is None:
        return False
    own = _origin(f"{request.url.scheme}://{request.url.netloc}")
    return own is None or _origin(origin) != own


def client_address(request: Request) -> str:
    """Who the throttle counts: the peer, or what a trusted proxy says in X-Forwarded-For
    (uvicorn applies it for ``forwarded_allow_ips``, loopback by default)."""
    return request.client.host if request.client is not None else "unknown"


def _wait_text(seconds: float) -> str:
    """When to try again, as a sentence's end: "in 15 minutes (after 14:05 UTC)"."""
    minutes = max(1, math.ceil(seconds / 60))
    after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    if after.second or after.microsecond:  # round up: never name a time that is too early
        after = after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    span = "a minute" if minutes == 1 else f"{minutes} minutes"
    return f"in {span} (after {after:%H:%M} UTC)"


def login_refusal(exc: AdminAuthError) -> HTMLResponse:
    """The login form again, saying why: the one place login errors become user text."""
    headers: dict[str, str] = {}
    if isinstance(exc, LoginThrottled):
        message = f"Too many failed logins. Try again {_wait_text(exc.retry_after_s)}."
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    elif isinstance(exc, SessionsUnavailable):
        message = (
            "Logging in needs Redis, which is unavailable right now; try again shortly. "
            "Scripts can still send the token as a bearer header."
        )
        headers["Retry-After"] = str(SESSIONS_RETRY_AFTER_S)
    elif exc.code == "admin_token_not_configured":
        return HTMLResponse(render_login(None, configured=False), status_code=401)
    else:
        message = exc.message
    return HTMLResponse(render_login(message, True), status_code=exc.status, headers=headers)


def foreign_refusal() -> HTMLResponse:
    return HTMLResponse(
        render_login("This form was sent from another site. Log in from this page.", True),
        status_code=403,
    )


async def start_session(
    auth: AdminAuth, request: Request, given: str, response: Response
) -> Response:
    """A login with ``given`` (the form's token, or the login link's): ``response`` with the
    new session's HttpOnly cookie, the browser's previous session ended; the login form
    saying why not (``login_refusal``) otherwise."""
    try:
        session = await auth.login(given, client_address(request))
    except AdminAuthError as exc:
        return login_refusal(exc)
    previous = request.cookies.get(SESSION_COOKIE)
    if previous is not None:  # a new login replaces the browser's old session
        await auth.end_session(previous)
    response.set_cookie(
        SESSION_COOKIE,
        session,
        max_age=auth.session_ttl_s,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response
