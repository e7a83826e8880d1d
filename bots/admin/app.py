"""The admin app factory: ``create_admin_app(context, settings)``, served by ``serve_admin``.

    GET  /healthz        alive (no auth, checks nothing), from the moment ``run()`` begins
    GET  /readyz         Redis, TTS service, each configured platform; 503 + reason if one is
                         down, or while ``run()`` is still starting (or stopping) its parts
    GET  /usage          ?from=YYYY-MM-DD&to=YYYY-MM-DD&top=N: counters from storage.usage
    GET  /metrics        Prometheus text format of the process's own registry
    GET  /admin          the dashboard (a session cookie; without one, a redirect to the login)
    GET  /admin/login    the login form          POST /admin/login   token → session cookie
    POST /admin/logout   ends the session        GET  /admin/static/ the stylesheet and icon
    GET  /               the playground (``bots.playground``; ``/?token=`` logs a browser in)

Everything but ``/healthz``, the login form and its static files needs ``ADMIN_TOKEN``
(``bots.admin.auth``). Errors are ``{"error": {"code", "message"}}`` with a real status,
as in the TTS service; the login form's own refusals are the form again, saying why (401
wrong token, 429 throttled with ``Retry-After``, 503 Redis down, 403 from another site).
No response carries a token, a message text or audio.

The login and logout POSTs answer 403 to an ``Origin`` other than the endpoint's own (the
scheme uvicorn saw — ``X-Forwarded-Proto`` from a trusted proxy — and the ``Host``): a page
elsewhere cannot log a browser in or out. Without ``Origin`` (curl, scripts) they proceed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from bots.admin.auth import (
    SESSION_COOKIE,
    AdminAuth,
    AdminUnauthorized,
    check_admin_bind,
)
from bots.admin.context import AdminContext, AdminLifecycle
from bots.admin.dashboard import DashboardData, render_dashboard, render_login
from bots.admin.login import (
    MAX_LOGIN_BODY_BYTES,
    SESSIONS_RETRY_AFTER_S,
    foreign_origin,
    foreign_refusal,
    start_session,
)
from bots.admin.reports import (
    DEFAULT_DAYS,
    InvalidRange,
    MonthSpend,
    MonthSpent,
    day_range,
    usage_json,
)
from bots.admin.status import Readiness, check_readiness
from bots.asgi_server import serve_app
from bots.playground import PLAYGROUND_CSP, install_playground, is_playground_path
from bots.settings import BotSettings
from storage.metrics import REDIS_ERRORS, StorageMetrics
from storage.usage import UsageReader, UsageSummary, UserUsage

log = logging.getLogger(__name__)

USAGE_READ_TIMEOUT_S = 5.0
DASHBOARD_TOP_USERS = 10
MAX_DASHBOARD_DAYS = 90  # the default usage retention
STATIC_FILES = {  # name → media type; nothing else is served from the package
    "admin.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
REFERRER_POLICY = "same-origin"  # as the pages' own <meta name="referrer">
# The dashboard loads only its own stylesheet and icon; no scripts, no inline styles.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class StorageUnreadable(Exception):
    """The usage counters could not be read."""


class NotRunning(Exception):
    """``run()`` is still starting its parts, or already stopping them; ``phase`` says which."""

    def __init__(self, phase: str) -> None:
        super().__init__(f"saybot is {phase}")
        self.phase = phase


def error_json(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


bearer_scheme = HTTPBearer(auto_error=False, description="ADMIN_TOKEN")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


class RequireAdmin:
    """Dependency: a valid bearer token or session cookie, else ``AdminUnauthorized``."""

    def __init__(self, auth: AdminAuth) -> None:
        self.auth = auth

    async def __call__(self, request: Request, credentials: Credentials) -> None:
        bearer = credentials.credentials if credentials is not None else None
        await self.auth.authorize(bearer, request.cookies.get(SESSION_COOKIE))


def _load_static() -> dict[str, bytes]:
    folder = resources.files("bots.admin") / "static"
    return {name: (folder / name).read_bytes() for name in STATIC_FILES}


@dataclass(frozen=True)
class UsageRead:
    summary: UsageSummary
    top_users: list[UserUsage]
    spent: MonthSpent | None  # this month's GPU spending (None: nothing counts it here)


async def _none() -> None:
    return None


async def read_usage(
    reader: UsageReader,
    from_day: dt.date,
    to_day: dt.date,
    top: int,
    metrics: StorageMetrics | None = None,
    spend: MonthSpend | None = None,
) -> UsageRead:
    """The summary, top users and this month's spending, or ``StorageUnreadable`` (bounded
    in time). A failed read counts in ``metrics`` (``saybot_redis_errors``) like any storage
    call's."""
    try:
        async with asyncio.timeout(USAGE_READ_TIMEOUT_S):
            summary, users, spent = await asyncio.gather(
                reader.summary(from_day, to_day),
                reader.top_users(from_day, to_day, top),
                spend.read() if spend is not None else _none(),
            )
            return UsageRead(summary, users, spent)
    except (*REDIS_ERRORS, TimeoutError) as exc:
        if metrics is not None:
            metrics.redis_failed("usage read", exc)
        raise StorageUnreadable(f"storage did not answer ({type(exc).__name__})") from exc


async def _usage_or_error(
    context: AdminContext, from_day: dt.date, to_day: dt.date
) -> tuple[UsageRead | None, str | None]:
    try:
        read = await read_usage(
            context.usage,
            from_day,
            to_day,
            DASHBOARD_TOP_USERS,
            context.metrics.storage,
            context.spend,
        )
    except StorageUnreadable as exc:
        return None, f"Usage is unavailable: {exc}."
    return read, None


async def _readiness(context: AdminContext) -> Readiness:
    return await check_readiness(
        context.redis,
        context.tts,
        context.platforms,
        context.probe_timeout_s,
        context.metrics.storage,
    )


def create_admin_app(
    context: AdminContext | AdminLifecycle,
    settings: BotSettings,
    *,
    auth: AdminAuth | None = None,
) -> FastAPI:
    """The admin app over ``context`` (or a lifecycle that gets its context once ``run()``
    has started every part); ``auth`` defaults to ``settings.admin_token``."""
    lifecycle = context if isinstance(context, AdminLifecycle) else AdminLifecycle.running(context)
    auth = auth or AdminAuth(
        settings.admin_token,
        redis=lambda: lifecycle.redis,
        metrics=lifecycle.metrics.storage,
    )
    static = _load_static()
    # No /docs or /openapi.json: they would be unauthenticated pages about this endpoint.
    app = FastAPI(title="saybot admin", docs_url=None, redoc_url=None, openapi_url=None)
    _install_handlers(app)
    require = RequireAdmin(auth)
    require_admin = [Depends(require)]

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        # Not "no-referrer": under it a browser sends `Origin: null` with the page's own form
        # POSTs, which the Origin check must refuse. "same-origin" still tells no other site.
        response.headers["Referrer-Policy"] = REFERRER_POLICY
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            PLAYGROUND_CSP if is_playground_path(request.url.path) else CONTENT_SECURITY_POLICY
        )
        return response

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Alive: the process answers. Checks no dependency."""
        return {"status": "ok"}

    @app.get("/readyz", dependencies=require_admin)
    async def readyz() -> JSONResponse:
        """Every component's state; 503 with the reason when one is down (or still starting)."""
        running = lifecycle.context
        readiness = lifecycle.not_running() if running is None else await _readiness(running)
        return JSONResponse(readiness.as_json(), status_code=200 if readiness.ready else 503)

    @app.get("/usage", dependencies=require_admin)
    async def usage(
        from_day: Annotated[dt.date | None, Query(alias="from")] = None,
        to_day: Annotated[dt.date | None, Query(alias="to")] = None,
        top: Annotated[int, Query(ge=0, le=100)] = 10,
    ) -> JSONResponse:
        """Totals, per-day series, per platform, errors by code and top users (ids only)."""
        try:
            start, end = day_range(from_day, to_day)
        except InvalidRange as exc:
            return error_json(422, "invalid_parameters", str(exc))
        running = lifecycle.context
        if running is None:
            raise NotRunning(lifecycle.phase)
        read = await read_usage(
            running.usage, start, end, top, running.metrics.storage, running.spend
        )
        return JSONResponse(usage_json(read.summary, read.top_users, read.spent))

    @app.get("/metrics", dependencies=require_admin)
    async def metrics() -> Response:
        """The Prometheus text exposition of this process."""
        registry = lifecycle.metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/admin", response_class=HTMLResponse)
    async def dashboard(
        request: Request, credentials: Credentials, days: int = DEFAULT_DAYS
    ) -> Response:
        """The page; a browser without a session is sent to the login form instead of a 401."""
        try:
            await require(request, credentials)
        except AdminUnauthorized:
            return RedirectResponse("/admin/login", status_code=303)
        days = min(max(days, 1), MAX_DASHBOARD_DAYS)
        start, end = day_range(None, None, days)
        running = lifecycle.context
        read: UsageRead | None = None
        usage_error: str | None = f"Usage is unavailable: saybot is {lifecycle.phase}."
        if running is None:
            readiness = lifecycle.not_running()
        else:
            readiness, (read, usage_error) = await asyncio.gather(
                _readiness(running), _usage_or_error(running, start, end)
            )
        observer = lifecycle.metrics.observer
        page = render_dashboard(
            DashboardData(
                readiness=readiness,
                summary=read.summary if read is not None else None,
                usage_error=usage_error,
                top_users=read.top_users if read is not None else [],
                request_latency=observer.request_percentiles(),
                tts_latency=observer.tts_percentiles(),
                days=days,
                generated_at=dt.datetime.now(dt.UTC),
                spent=read.spent if read is not None else None,
            )
        )
        return HTMLResponse(page)

    @app.get("/admin/login", response_class=HTMLResponse)
    async def login_form() -> HTMLResponse:
        status = 200 if auth.configured else 401
        return HTMLResponse(render_login(None, auth.configured), status_code=status)

    @app.post("/admin/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        """The form's token → an HttpOnly session cookie, then the dashboard."""
        if foreign_origin(request):
            return foreign_refusal()
        if not auth.configured:
            return HTMLResponse(render_login(None, configured=False), status_code=401)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BODY_BYTES:
                return HTMLResponse(render_login("That is not a token.", True), status_code=413)
        given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        return await start_session(auth, request, given, RedirectResponse("/admin", 303))

    @app.post("/admin/logout")
    async def logout(request: Request) -> Response:
        """Ends the session in Redis (a copy of the cookie stops working too), then the form."""
        if foreign_origin(request):
            return foreign_refusal()
        cookie = request.cookies.get(SESSION_COOKIE)
        ended = cookie is None or await auth.end_session(cookie)
        response: Response = RedirectResponse("/admin/login", status_code=303)
        if not ended:
            log.warning("admin logout: Redis unavailable, the session lasts until it expires")
            response = HTMLResponse(
                render_login(
                    "Logged out in this browser, but Redis is unavailable, so the session "
                    "could not be ended on the server: it lasts until it expires.",
                    True,
                ),
                status_code=503,
                headers={"Retry-After": str(SESSIONS_RETRY_AFTER_S)},
            )
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.get("/admin/static/{name}")
    async def static_file(name: str) -> Response:
        if name not in static:
            return error_json(404, "not_found", "no such file")
        return Response(
            static[name],
            media_type=STATIC_FILES[name],
            headers={"Cache-Control": "public, max-age=3600"},
        )

    install_playground(app, lifecycle, auth, require)  # `/` and `/play/…`: bots.playground
    return app


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(AdminUnauthorized)
    async def on_unauthorized(_: Request, exc: AdminUnauthorized) -> JSONResponse:
        return error_json(401, exc.code, exc.message, **{"WWW-Authenticate": "Bearer"})

    @app.exception_handler(StorageUnreadable)
    async def on_storage(_: Request, exc: StorageUnreadable) -> JSONResponse:
        return error_json(503, "storage_unavailable", str(exc), **{"Retry-After": "5"})

    @app.exception_handler(NotRunning)
    async def on_not_running(_: Request, exc: NotRunning) -> JSONResponse:
        return error_json(503, exc.phase, f"{exc}; try again shortly", **{"Retry-After": "2"})

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        messages = []
        for error in exc.errors():
            name = str(error.get("loc", ("", "?"))[-1])
            if name in ("from", "to"):
                messages.append(f"{name} must be a date, YYYY-MM-DD")
            else:
                messages.append(f"{name}: {error.get('msg', 'invalid')}")
        return error_json(422, "invalid_parameters", "; ".join(dict.fromkeys(messages)))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_json(exc.status_code, code, str(exc.detail))


@contextlib.asynccontextmanager
async def serve_admin(
    context: AdminContext | AdminLifecycle, settings: BotSettings
) -> AsyncIterator[str]:
    """Serve the admin app on ``ADMIN_HOST:ADMIN_PORT`` in this loop; yields its base URL."""
    check_admin_bind(settings)
    app = create_admin_app(context, settings)
    async with serve_app(app, settings.admin_host, settings.admin_port) as url:
        log.info("admin endpoint at %s/admin", url)
        yield url
