"""The TTS web service: ``create_app(engine, settings)``, the same app locally and on Modal.

Endpoints: ``POST /v1/tts`` (audio bytes; a JSON body or a form, ``tts_body``),
``GET /v1/engine``, ``GET /readyz`` (engine loaded), ``GET /healthz`` (alive; the only
one without auth), and OpenAI's speech dialect (``openai_api``: ``POST /v1/audio/speech``,
``GET /v1/models``). Every error is a real HTTP status with ``{"error": {"code",
"message"}}`` (on OpenAI's paths with its ``type`` and ``param`` too).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from tts_service import synthesis
from tts_service.engines.base import TTSEngine
from tts_service.errors import (
    EngineNotReady,
    PayloadTooLarge,
    ServiceBusy,
    TTSError,
    Unauthorized,
)
from tts_service.exposure import WeakToken, check_strong_token, is_loopback, secret_value
from tts_service.openai_api import OpenAIErrorShape, openai_router
from tts_service.schema import (
    HEADER_DURATION,
    HEADER_ENGINE,
    HEADER_ENGINE_VERSION,
    HEADER_SYNTHESIS_SECONDS,
    EngineInfo,
    ErrorBody,
    describe_validation_error,
)
from tts_service.settings import TTSSettings
from tts_service.tts_body import TTS_BODY_OPENAPI, read_tts_body

log = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 413, 422, 500, 503)
}


# The ASGI interface the middlewares below speak (a scope is a message-shaped mapping too).
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]


class UnsafeBind(RuntimeError):
    """Refusing to expose an unauthenticated service beyond loopback."""


def check_bind_allowed(host: str, settings: TTSSettings) -> None:
    """With no API token (unset or blank) the service may only listen on loopback; beyond
    it, the token must be a strong one (``check_strong_token``)."""
    if secret_value(settings.api_token) is None and not is_loopback(host):
        raise UnsafeBind(
            f"refusing to listen on {host} without TTS_API_TOKEN; set a token or bind 127.0.0.1"
        )
    try:
        check_strong_token("TTS_API_TOKEN", settings.api_token, host)
    except WeakToken as exc:
        raise UnsafeBind(f"refusing to listen on {host}: {exc}") from exc


class InFlightLimit:
    """At most ``limit`` synthesis requests at once; the next is refused, never queued."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.current = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.current >= self.limit:
            raise ServiceBusy(
                f"the service is busy ({self.limit} requests in progress); try again shortly",
                retry_after_s=self.retry_after_s,
            )
        self.current += 1
        try:
            yield
        finally:
            self.current -= 1


class BodySizeLimit:
    """ASGI middleware: answer 413 before reading more than ``max_bytes`` of a body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(
        self,
        scope: Message,
        receive: Receive,
        send: Send,
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        # Buffer the body (bounded) so the app never sees a partial one.
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    def _message(self) -> str:
        return f"the request body is over the {self.max_bytes / 1e6:.1f} MB limit"

    async def _refuse(
        self,
        scope: Message,
        receive: Receive,
        send: Send,
    ) -> None:
        response = error_response(PayloadTooLarge(self._message()))
        await response(scope, receive, send)


def error_response(error: TTSError) -> JSONResponse:
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after_s)))
    body = {"error": {"code": error.code, "message": error.message}}
    return JSONResponse(body, status_code=error.status_code, headers=headers)


def _error_json(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


# Declared on the router only so OpenAPI shows the scheme; ``BearerAuth`` enforces it.
bearer_scheme = HTTPBearer(auto_error=False, description="TTS_API_TOKEN")

PUBLIC_PATHS = frozenset({"/healthz"})  # the liveness probe; everything else needs the token


class TokenCheck:
    """``TTS_API_TOKEN`` compared in constant time; with none configured, everyone passes.

    No token (unset or blank, as ``secret_value`` says) is only allowed on loopback
    (``check_bind_allowed``).
    """

    def __init__(self, settings: TTSSettings) -> None:
        token = secret_value(settings.api_token)
        self.expected = token.encode() if token is not None else None
        if self.expected is None:
            log.warning("TTS_API_TOKEN is not set: the service accepts unauthenticated requests")

    def allows(self, authorization: bytes | None) -> bool:
        """Whether an ``Authorization`` header value carries the bearer token."""
        if self.expected is None:
            return True
        scheme, _, given = (authorization or b"").partition(b" ")
        if scheme.lower() != b"bearer":
            given = b""
        return hmac.compare_digest(given.strip(), self.expected)


class BearerAuth:
    """ASGI middleware: the token is checked before anything else runs.

    As a FastAPI dependency it would run only after the body is parsed (so a bad
    body got 422 instead of 401) and never on the docs; here it guards every path
    but ``PUBLIC_PATHS``, ``/docs`` and ``/openapi.json`` included.
    """

    def __init__(self, app: ASGIApp, check: TokenCheck) -> None:
        self.app = app
        self.check = check

    async def __call__(
        self,
        scope: Message,
        receive: Receive,
        send: Send,
    ) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        if self.check.allows(dict(scope["headers"]).get(b"authorization")):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # policy violation
            return
        response = error_response(Unauthorized("missing or wrong bearer token"))
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)


class EngineState:
    """Whether the engine is loading, loaded or failed, for /readyz and for requests."""

    def __init__(self, engine: TTSEngine) -> None:
        self.engine = engine
        self.load_error: str | None = None

    def require_ready(self) -> TTSEngine:
        if self.engine.is_loaded:
            return self.engine
        if self.load_error is not None:
            raise EngineNotReady(f"the engine failed to load: {self.load_error}", 30)
        raise EngineNotReady("the voice model is still loading; try again in a few seconds", 5)

    async def load(self) -> None:
        try:
            await anyio.to_thread.run_sync(self.engine.load)
            log.info("engine %s ready", self.engine.info.name)
        except Exception as exc:
            self.load_error = type(exc).__name__
            log.exception("engine %s failed to load", self.engine.info.name)


def create_app(engine: TTSEngine, settings: TTSSettings) -> FastAPI:
    """The service around one engine. Loading starts at startup, in the background."""
    state = EngineState(engine)
    limit = InFlightLimit(settings.max_in_flight, settings.busy_retry_after_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loader = None if engine.is_loaded else asyncio.create_task(state.load())
        yield
        if loader is not None and not loader.done():
            await loader  # a thread cannot be interrupted; let it finish before exit

    app = FastAPI(
        title="saybot TTS service",
        version="1",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.engine_state = state
    app.state.in_flight = limit
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(BearerAuth, check=TokenCheck(settings))
    app.add_middleware(OpenAIErrorShape)  # added last: runs first, so it sees every answer
    _install_error_handlers(app)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Alive: the process answers. Checks no dependency."""
        return {"status": "ok"}

    api = APIRouter(dependencies=[Depends(bearer_scheme)])  # documents the scheme in OpenAPI

    @api.get("/readyz", tags=["health"])
    async def readyz() -> dict[str, Any]:
        """Ready: the engine is loaded and can synthesise."""
        ready = state.require_ready()
        return {"status": "ready", "engine": ready.info.model_dump()}

    @api.get("/v1/engine", tags=["tts"])
    async def engine_info() -> EngineInfo:
        """Name, version, sample rate, capabilities and which parameters are honoured."""
        return state.engine.info

    @api.post(
        "/v1/tts",
        tags=["tts"],
        response_class=Response,
        responses={200: {"content": {"audio/ogg": {}, "audio/wav": {}, "audio/mpeg": {}}}},
        openapi_extra=TTS_BODY_OPENAPI,
    )
    async def tts(request: Request) -> Response:
        """Speak the text; the body is the audio in exactly the requested format. The body is
        JSON (``TTSRequest``) or a form with the clip as a file part (``tts_body``)."""
        params, reference_audio = await read_tts_body(request)
        ready = state.require_ready()
        async with limit.slot():
            # Not abandoned on cancel: the slot stays taken until the engine is free again.
            result = await anyio.to_thread.run_sync(
                synthesis.synthesize, ready, params, reference_audio
            )
        return Response(
            content=result.audio,
            media_type=result.content_type,
            headers={
                HEADER_DURATION: f"{result.duration_s:.3f}",
                HEADER_SYNTHESIS_SECONDS: f"{result.synthesis_s:.3f}",
                HEADER_ENGINE: result.engine.name,
                HEADER_ENGINE_VERSION: result.engine.model_version,
            },
        )

    app.include_router(api)
    app.include_router(openai_router(state, limit), dependencies=[Depends(bearer_scheme)])
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TTSError)
    async def on_tts_error(_: Request, exc: TTSError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        messages = []
        for error in exc.errors():
            loc = tuple(part for part in error.get("loc", ()) if part != "body")
            if error.get("type") == "json_invalid":
                messages.append("the body is not valid JSON")
            elif error.get("type") == "extra_forbidden":
                messages.append(f"unknown field {loc[-1]!s}" if loc else "unknown field")
            elif error.get("type") == "missing":
                messages.append(f"{loc[-1] if loc else 'body'} is required")
            else:
                messages.append(describe_validation_error(loc, str(error.get("msg", ""))))
        unique = list(dict.fromkeys(messages))
        return _error_json(422, "invalid_parameters", "; ".join(unique))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error_json(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error_json(500, "internal_error", "the service hit an unexpected error")
