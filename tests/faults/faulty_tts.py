"""``FaultyTTS``: the real TTS service behind scripted faults, served on 127.0.0.1.

An ASGI wrapper of the real ``create_app`` (as ``tests.bots.harness.CountingApp`` is): every
request reaches the real service unless a fault was scripted for it. Faults are chosen by
the text a ``POST /v1/tts`` asks for (``script(text, Fault.HTML_200)``: the next request
for that text gets it, the one after is real again), or, for a storm, by count
(``storm(n)``: the next ``n`` syntheses, whatever their text, are answered busy).

The faults are what sits between a bot and its TTS service in production:

* ``HTML_200``: a captive portal or a proxy's page, 200 ``text/html``;
* ``HTML_500``: a proxy's (not the service's) error page;
* ``HANG``: the request is read and never answered, until the client hangs up;
* ``REDIRECT``: Modal's answer to a request that outlives its web endpoint: the synthesis
  is made, then ``303`` to a result URL the client must ``GET``;
* ``BUSY``: ``503`` with ``Retry-After: 1`` and the service's own ``busy`` body.

The server runs on its own thread (``tests.servers.serve_in_thread``); the test reads the
counters and waits on ``hang_started`` from its loop, so every field a request changes is
guarded by one lock.
"""

from __future__ import annotations

import collections
import json
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import anyio

from tests.servers import serve_in_thread
from tests.tts_helpers import make_settings, wait_ready
from tts_service.api import create_app
from tts_service.engines.base import TTSEngine

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]

# A hung request is let go when its client hangs up; this bounds it if the client never does.
HANG_BOUND_S = 60.0
RESULTS_PATH = "/v1/results/"
PORTAL_PAGE = b"<!doctype html><html><body><h1>Please log in to continue</h1></body></html>"
PROXY_ERROR_PAGE = b"<html><body><h1>500 Internal Server Error</h1><hr>nginx</body></html>"


class Fault(StrEnum):
    HTML_200 = "html_200"
    HTML_500 = "html_500"
    HANG = "hang"
    REDIRECT = "redirect"
    BUSY = "busy"


@dataclass
class Answered:
    """One ``POST /v1/tts``: its text, the fault it got (None: passed to the real service)
    and the status the real service answered (None: faulted, or not answered yet)."""

    text: str
    fault: Fault | None
    status: int | None = None


class FaultyTTS:
    """The real service (``inner``) behind scripted faults; see the module docstring."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self._scripts: dict[str, collections.deque[Fault]] = collections.defaultdict(
            collections.deque
        )
        self._storm_left = 0
        self._answered: list[Answered] = []
        self._requests = 0
        self._results: dict[str, list[Message]] = {}
        self._hangs = threading.Semaphore(0)

    # --- what the test sets up ---------------------------------------------------------------

    def script(self, text: str, *faults: Fault) -> None:
        """The next requests for ``text`` get ``faults``, in order; later ones are real."""
        with self._lock:
            self._scripts[text].extend(faults)

    def storm(self, requests: int) -> None:
        """The next ``requests`` syntheses, of any text, are answered 503 busy."""
        with self._lock:
            self._storm_left = requests

    # --- what the test reads -----------------------------------------------------------------

    @property
    def answered(self) -> list[Answered]:
        with self._lock:
            return list(self._answered)

    @property
    def requests(self) -> int:
        """Every HTTP request received (health probes, engine identity, syntheses…)."""
        with self._lock:
            return self._requests

    def posts(self, text: str | None = None) -> int:
        """``POST /v1/tts`` requests received (for ``text``, or all), faulted or not."""
        return sum(1 for a in self.answered if text is None or a.text == text)

    def syntheses(self, text: str | None = None) -> int:
        """Audio the real service made (a redirect's synthesis counts once)."""
        return sum(1 for a in self.answered if a.status == 200 and (text is None or a.text == text))

    def wait_hang_started(self, timeout_s: float) -> bool:
        """Blocks until a ``HANG`` request has arrived (call it in a thread)."""
        return self._hangs.acquire(timeout=timeout_s)

    # --- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        with self._lock:
            self._requests += 1
        if scope["method"] == "GET" and scope["path"].startswith(RESULTS_PATH):
            await self._result(scope["path"].removeprefix(RESULTS_PATH), send)
            return
        if scope["method"] != "POST" or scope["path"] != "/v1/tts":
            await self.inner(scope, receive, send)
            return
        body = await _read_body(receive)
        answered = self._answer_for(_text_of(body))
        replay = _replaying(body, receive)
        match answered.fault:
            case None:
                await self.inner(scope, replay, _noting_status(answered, send))
            case Fault.HTML_200:
                await _respond(send, 200, PORTAL_PAGE, "text/html; charset=utf-8")
            case Fault.HTML_500:
                await _respond(send, 500, PROXY_ERROR_PAGE, "text/html")
            case Fault.BUSY:
                error = {"error": {"code": "busy", "message": "the service is busy"}}
                await _respond(
                    send, 503, json.dumps(error).encode(), "application/json", {"retry-after": "1"}
                )
            case Fault.HANG:
                self._hangs.release()
                await _hang(receive, send)
            case Fault.REDIRECT:
                await self._synthesize_then_redirect(scope, replay, send, answered)

    def _answer_for(self, text: str) -> Answered:
        with self._lock:
            if self._storm_left > 0:
                self._storm_left -= 1
                fault: Fault | None = Fault.BUSY
            else:
                script = self._scripts.get(text)
                fault = script.popleft() if script else None
            answered = Answered(text, fault)
            self._answered.append(answered)
            return answered

    async def _synthesize_then_redirect(
        self, scope: Message, receive: Receive, send: Send, answered: Answered
    ) -> None:
        """As Modal does past its 150 s limit: the work is done; its result is at a URL."""
        messages: list[Message] = []

        async def keep(message: Message) -> None:
            messages.append(message)

        await self.inner(scope, receive, _noting_status(answered, keep))
        result_id = secrets.token_hex(8)
        with self._lock:
            self._results[result_id] = messages
        await _respond(send, 303, b"", "text/plain", {"location": f"{RESULTS_PATH}{result_id}"})

    async def _result(self, result_id: str, send: Send) -> None:
        with self._lock:
            messages = self._results.pop(result_id, None)
        if messages is None:
            error = {"error": {"code": "not_found", "message": "no such result"}}
            await _respond(send, 404, json.dumps(error).encode(), "application/json")
            return
        for message in messages:
            await send(message)


def _noting_status(answered: Answered, send: Send) -> Send:
    async def noting(message: Message) -> None:
        if message["type"] == "http.response.start":
            answered.status = int(message["status"])
        await send(message)

    return noting


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _text_of(body: bytes) -> str:
    try:
        return str(json.loads(body).get("text", ""))
    except (ValueError, AttributeError):
        return ""


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the already-read body once, then the client's own events."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


async def _respond(
    send: Send, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> None:
    raw = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _hang(receive: Receive, send: Send) -> None:
    """No answer until the client hangs up (bounded by ``HANG_BOUND_S``)."""
    with anyio.move_on_after(HANG_BOUND_S):
        while (await receive())["type"] != "http.disconnect":
            pass
        return
    await _respond(send, 504, b"<html>gateway timeout</html>", "text/html")


@contextmanager
def serving(engine: TTSEngine, **overrides: object) -> Iterator[tuple[str, FaultyTTS]]:
    """The real service over ``engine`` behind a ``FaultyTTS`` on a free loopback port."""
    faulty = FaultyTTS(create_app(engine, make_settings(**overrides)))
    with serve_in_thread(faulty) as url:
        wait_ready(url)
        yield url, faulty
