"""The playground's routes on the admin app, each a thin edge over ``SayFlow``.

    GET  /                the page; ``/?token=`` logs the browser in first (the login link
                          ``saybot run`` prints), then sends it back to ``/`` without it
    GET  /play/static/    the page's script and stylesheet (nothing else, nothing external)
    GET  /play/info       engine name, readiness, whether this browser has a saved voice
    POST /play/say        the form → audio; a clip waiting for consent → 202 and the question
    POST /play/consent    {"id", "accepted"} → the waiting clip's answer, or the clip dropped
    POST /play/voice      the form's clip → this browser's saved voice (with consent)
    POST /play/forget     everything kept of this browser's voice

Behind the admin login like the dashboard. Each browser session is one web user (its id is a
hash of the session's, never the session id itself, since user ids show on the dashboard), so
the rate limit, saved voice and consents are per session; a bearer request is one user,
``operator``. POSTs naming another site's ``Origin`` are refused, as the login form's are.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from bots.admin.auth import SESSION_COOKIE, AdminAuth, AdminUnauthorized
from bots.admin.context import AdminContext, AdminLifecycle
from bots.admin.login import foreign_origin, start_session
from bots.admin.login_link import LOGIN_QUERY
from bots.errors import ConsentNeeded, SayError
from bots.messages import CONSENT_DECLINED, error_text, forget_text
from bots.playground.answers import audio_answer, consent_answer, error_answer, sentence
from bots.playground.form import PLATFORM, read_body, read_form, read_upload
from bots.playground.page import render_playground
from bots.requests import SavedVoice, SayResult
from bots.say import SayFlow

log = logging.getLogger(__name__)

STATIC_FILES = {
    "playground.js": "text/javascript; charset=utf-8",
    "playground.css": "text/css; charset=utf-8",
}
# The page's own script, stylesheet and fetches; audio plays from blob: URLs it makes.
PLAYGROUND_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self' blob:; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
INFO_TIMEOUT_S = 5.0
MAX_CONSENT_BODY_BYTES = 1024
OPERATOR = "operator"  # the web user of a bearer request (a script, not a browser)

# The admin app's login check (``RequireAdmin``): passes, or raises ``AdminUnauthorized``.
Require = Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[None]]
# One POST's work: the request, the flow, the web user → the answer (or a ``SayError``).
Action = Callable[[Request, SayFlow, str], Awaitable[Response]]


def is_playground_path(path: str) -> bool:
    return path == "/" or path.startswith("/play/")


def web_user_id(request: Request) -> str:
    """This browser session's web user (``operator`` for a bearer request)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    return session_user_id(cookie) if cookie else OPERATOR


def session_user_id(session: str) -> str:
    """The web user of a session: stable for it, and not the session id (which logs in)."""
    return hashlib.sha256(f"saybot web user {session}".encode()).hexdigest()[:16]


def _load_static() -> dict[str, bytes]:
    folder = resources.files("bots.playground") / "static"
    return {name: (folder / name).read_bytes() for name in STATIC_FILES}


class Running:
    """The flow of a running ``saybot run``, or the 503 saying it is starting or stopping."""

    def __init__(self, lifecycle: AdminLifecycle) -> None:
        self.lifecycle = lifecycle

    def context(self) -> AdminContext | JSONResponse:
        running = self.lifecycle.context
        if running is None or running.flow is None:
            phase = self.lifecycle.phase
            return sentence(phase, f"saybot is {phase}; try again in a moment.", 503)
        return running


def install_playground(
    app: FastAPI, lifecycle: AdminLifecycle, auth: AdminAuth, require: Require
) -> None:
    """Add the routes to the admin ``app``; ``require`` is its admin-login dependency."""
    static = _load_static()
    running = Running(lifecycle)
    guarded = [Depends(require)]

    @app.get("/", response_class=HTMLResponse)
    async def playground(request: Request) -> Response:
        given = request.query_params.get(LOGIN_QUERY)
        if given is not None:
            return await start_session(auth, request, given, RedirectResponse("/", 303))
        try:
            await require(request, None)
        except AdminUnauthorized:
            return RedirectResponse("/admin/login", status_code=303)
        return HTMLResponse(render_playground())

    @app.get("/play/static/{name}")
    async def static_file(name: str) -> Response:
        if name not in static:
            return sentence("not_found", "no such file", 404)
        return Response(static[name], media_type=STATIC_FILES[name])

    @app.get("/play/info", dependencies=guarded)
    async def info(request: Request) -> JSONResponse:
        context = running.context()
        if isinstance(context, JSONResponse):
            return context
        return JSONResponse(await _info(context, web_user_id(request)))

    @app.post("/play/say", dependencies=guarded)
    async def say(request: Request) -> Response:
        return await _answer(request, _say)

    @app.post("/play/consent", dependencies=guarded)
    async def consent(request: Request) -> Response:
        return await _answer(request, _consent)

    @app.post("/play/voice", dependencies=guarded)
    async def save_voice(request: Request) -> Response:
        return await _answer(request, _save_voice)

    @app.post("/play/forget", dependencies=guarded)
    async def forget(request: Request) -> Response:
        return await _answer(request, _forget)

    async def _answer(request: Request, action: Action) -> Response:
        """One POST: same-site only, while running; every outcome one answer."""
        if foreign_origin(request):
            return sentence("foreign_origin", "This was sent from another site.", 403)
        context = running.context()
        if isinstance(context, JSONResponse):
            return context
        assert context.flow is not None
        try:
            return await action(request, context.flow, web_user_id(request))
        except ConsentNeeded as question:
            return consent_answer(question)
        except Exception as exc:  # every failure is one sentence; the bug ones logged there
            return error_answer(exc)


async def _say(request: Request, flow: SayFlow, user_id: str) -> Response:
    body = await read_upload(request, flow.clip_limits.max_bytes)
    form = await read_form(request, body, user_id)
    return audio_answer(await flow.say(form.say_request(user_id)))


async def _consent(request: Request, flow: SayFlow, user_id: str) -> Response:
    body = await read_body(request, MAX_CONSENT_BODY_BYTES)
    try:
        answer = json.loads(body)
        pending_id, accepted = str(answer["id"]), answer["accepted"] is True
    except (ValueError, KeyError, TypeError):
        return sentence("invalid_input", "The answer could not be read; send it again.", 400)
    outcome = await flow.answer_consent(PLATFORM, user_id, pending_id, accepted)
    if isinstance(outcome, SayResult):
        return audio_answer(outcome)
    if isinstance(outcome, SavedVoice):
        return _saved(outcome)
    return JSONResponse({"message": CONSENT_DECLINED})


async def _save_voice(request: Request, flow: SayFlow, user_id: str) -> Response:
    body = await read_upload(request, flow.clip_limits.max_bytes)
    form = await read_form(request, body, user_id)
    if form.clip is None:
        return sentence("no_clip", "Choose or record a clip to save first.", 400)
    return _saved(await flow.save_voice(PLATFORM, user_id, form.clip))


async def _forget(request: Request, flow: SayFlow, user_id: str) -> Response:
    return JSONResponse({"message": forget_text(await flow.forget_voice(PLATFORM, user_id))})


def _saved(saved: SavedVoice) -> JSONResponse:
    later = "" if saved.usable_now else " It is used once the GPU engine is running."
    return JSONResponse(
        {"message": f"Saved: “your saved voice” now speaks in this clip's voice.{later}"}
    )


async def _info(context: AdminContext, user_id: str) -> dict[str, Any]:
    """What the page shows about the engine; each part bounded in time, none fatal."""
    flow = context.flow
    assert flow is not None
    answer: dict[str, Any] = {"engine": None, "ready": False, "saved_voice": None}
    try:
        async with asyncio.timeout(INFO_TIMEOUT_S):
            engine = await flow.engine.current()
        answer["engine"] = {
            "name": engine.name,
            "model_version": engine.model_version,
            "can_clone_voice": engine.can_clone_voice,
            "honoured_params": engine.honoured_params,
            "watermarked": engine.watermarked,
        }
        async with asyncio.timeout(INFO_TIMEOUT_S):
            await context.tts.ready()
        answer["ready"] = True
    except (SayError, TimeoutError) as exc:
        answer["reason"] = error_text(exc, context="playground info")
    try:
        async with asyncio.timeout(INFO_TIMEOUT_S):
            status = await flow.voice_status(PLATFORM, user_id)
        answer["saved_voice"] = status.default_voice_id is not None
    except Exception:  # storage away: the page just does not offer the saved voice
        log.info("playground: the saved voice could not be looked up", exc_info=True)
    return answer
