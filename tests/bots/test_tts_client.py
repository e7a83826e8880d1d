"""The bots' TTS client against the real service app over loopback HTTP."""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import soundfile as sf
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from bots.engine_identity import EngineIdentity
from bots.errors import (
    InvalidInput,
    TTSBusy,
    TTSMisconfigured,
    TTSServerError,
    TTSTimeout,
    TTSUnavailable,
    VoiceCloningUnavailable,
)
from bots.tts_client import RetryPolicy, TTSClient
from tests.audio_bytes import ogg
from tests.bots.harness import Canned, CannedAnswers, Service, running_service
from tests.servers import serve_in_thread
from tests.tts_helpers import API_TOKEN, make_settings, wait_ready
from tests.tts_service.audio_samples import clip
from tests.tts_service.engine_wrappers import HeldSynthesis
from tts_service import audio
from tts_service.api import create_app
from tts_service.engines.piper import PiperEngine
from tts_service.schema import AudioFormat, TTSParams

FAST_RETRY = RetryPolicy(max_attempts=3, backoff_base_s=0.01, max_wait_s=5)
RETRY_AFTER_SLACK_S = 0.5  # a shared 2-core test machine; the wait itself is exact
LONG_TEXT = ("A long sentence that keeps the engine busy for a while, on purpose. " * 14).strip()


@dataclass
class Exchange:
    sent_at: float
    answered_at: float | None = None
    status: int | None = None


class CountingTransport(httpx.AsyncBaseTransport):
    """The real HTTP transport, counting the requests that went out and timing their answers."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[str] = []
        self.exchanges: list[Exchange] = []
        self._answered = asyncio.Condition()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        exchange = Exchange(time.monotonic())
        self.exchanges.append(exchange)
        response = await self.inner.handle_async_request(request)
        exchange.answered_at, exchange.status = time.monotonic(), response.status_code
        async with self._answered:
            self._answered.notify_all()
        return response

    def statuses(self) -> list[int | None]:
        return [exchange.status for exchange in self.exchanges]

    async def answered(self, status: int, count: int, timeout_s: float = 30.0) -> None:
        """Until ``count`` answers with ``status`` have come back."""
        async with asyncio.timeout(timeout_s), self._answered:
            await self._answered.wait_for(lambda: self.statuses().count(status) >= count)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(scope="module")
def service(piper_engine: PiperEngine) -> Iterator[str]:
    with serve_in_thread(create_app(piper_engine, make_settings(max_in_flight=1))) as url:
        wait_ready(url)
        yield url


@pytest.fixture()
async def counted(service: str) -> AsyncIterator[tuple[TTSClient, CountingTransport]]:
    transport = CountingTransport()
    client = TTSClient(service, API_TOKEN, retry=FAST_RETRY, transport=transport)
    yield client, transport
    await client.aclose()


async def test_synthesize_returns_audio_and_metadata(
    counted: tuple[TTSClient, CountingTransport],
) -> None:
    client, _ = counted
    result = await client.synthesize(TTSParams(text="Hello from the client."), None)
    assert result.format is AudioFormat.OGG_OPUS
    assert result.engine == "piper"
    info = sf.info(io.BytesIO(result.audio))
    assert info.subtype == "OPUS"
    assert result.duration_s == pytest.approx(info.duration, abs=0.1)
    engine = await client.fetch_engine_info()
    assert engine.name == "piper"
    assert result.engine_version == engine.model_version
    assert (await client.ready())["status"] == "ready"


async def test_cloning_with_piper_maps_to_its_own_error(
    counted: tuple[TTSClient, CountingTransport],
) -> None:
    client, transport = counted
    with pytest.raises(VoiceCloningUnavailable, match="Chatterbox"):
        await client.synthesize(TTSParams(text="Clone me."), clip("wav"))
    assert len(transport.requests) == 1  # a 4xx is never retried


async def test_invalid_parameters_are_not_retried(
    counted: tuple[TTSClient, CountingTransport],
) -> None:
    client, transport = counted
    params = TTSParams(text="hi").model_copy(update={"exaggeration": 9.0})  # bypass validation
    with pytest.raises(InvalidInput, match=r"exaggeration must be a number from 0\.25 to 2"):
        await client.synthesize(params, None)
    assert transport.requests == ["POST /v1/tts"]


async def test_wrong_token_is_unavailable_not_retried(service: str) -> None:
    transport = CountingTransport()
    client = TTSClient(service, "wrong", retry=FAST_RETRY, transport=transport)
    try:
        with pytest.raises(TTSUnavailable, match="401"):
            await client.synthesize(TTSParams(text="hi"), None)
    finally:
        await client.aclose()
    assert len(transport.requests) == 1


async def test_busy_service_is_retried_then_reported(service: str) -> None:
    transport = CountingTransport()
    retry = RetryPolicy(max_attempts=2, backoff_base_s=0.01, max_wait_s=1)  # Retry-After 2 > 1
    client = TTSClient(service, API_TOKEN, retry=retry, transport=transport)
    blocker = TTSClient(service, API_TOKEN)
    try:
        long_call = asyncio.create_task(blocker.synthesize(TTSParams(text=LONG_TEXT), None))
        await asyncio.sleep(0.3)
        with pytest.raises(TTSBusy) as caught:
            await client.synthesize(TTSParams(text="hi"), None)
        assert caught.value.retry_after_s == 2
        assert len(transport.requests) == 1  # Retry-After over max_wait_s: not worth waiting
        await long_call
    finally:
        await client.aclose()
        await blocker.aclose()


async def test_busy_service_retry_honours_retry_after(piper_engine: PiperEngine) -> None:
    settings = make_settings(max_in_flight=1, busy_retry_after_s=1)
    with serve_in_thread(create_app(piper_engine, settings)) as service:
        wait_ready(service)
        transport = CountingTransport()
        # Enough attempts to outlast the blocker however loaded the machine is.
        retry = RetryPolicy(max_attempts=60, backoff_base_s=0.01, max_wait_s=5)
        client = TTSClient(service, API_TOKEN, retry=retry, transport=transport)
        blocker = TTSClient(service, API_TOKEN)
        blocking_text = LONG_TEXT[: len(LONG_TEXT) // 3]  # a few seconds: a few refusals
        try:
            long_call = asyncio.create_task(blocker.synthesize(TTSParams(text=blocking_text), None))
            await asyncio.sleep(0.3)
            result = await client.synthesize(TTSParams(text="hi"), None)
            await long_call
        finally:
            await client.aclose()
            await blocker.aclose()
    assert result.audio
    exchanges = transport.exchanges
    assert [e.status for e in exchanges[:-1]] == [503] * (len(exchanges) - 1)
    assert exchanges[-1].status == 200 and len(exchanges) >= 2  # refused, then served
    for refused, retried in itertools.pairwise(exchanges):
        assert refused.answered_at is not None
        waited = retried.sent_at - refused.answered_at
        assert 1.0 <= waited < 1.0 + RETRY_AFTER_SLACK_S, waited  # Retry-After: 1, no backoff


async def test_unreachable_service_is_retried_then_unavailable() -> None:
    with serve_in_thread(FastAPI()) as url:
        pass  # the port is free again: connections are refused
    transport = CountingTransport()
    client = TTSClient(url, API_TOKEN, retry=FAST_RETRY, transport=transport)
    try:
        with pytest.raises(TTSUnavailable, match="unreachable"):
            await client.synthesize(TTSParams(text="hi"), None)
    finally:
        await client.aclose()
    assert len(transport.requests) == 3


class DroppedMidAnswer(Exception):
    """Raised inside the ASGI app after its headers went out: uvicorn drops the connection."""


class DropsConnection:
    """The real service, but ``POST /v1/tts`` loses its connection once the work is done:
    what a crashed proxy or a network blip looks like to the client. ``GET /v1/engine``
    loses it while ``drop_engine_requests`` is above zero."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.syntheses = 0
        self.drop_engine_requests = 0
        self.engine_gate = threading.Event()  # cleared: GET /v1/engine waits (a cold start)
        self.engine_gate.set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path")
        if scope["type"] == "http" and path == "/v1/engine":
            await asyncio.to_thread(self.engine_gate.wait, 30)
        drop = scope["type"] == "http" and path == "/v1/tts"
        if drop:
            self.syntheses += 1
        elif scope["type"] == "http" and path == "/v1/engine" and self.drop_engine_requests:
            self.drop_engine_requests -= 1
            drop = True

        async def dropping_send(message: Any) -> None:
            await send(message)
            if drop and message["type"] == "http.response.start":
                raise DroppedMidAnswer(path)

        await self.app(scope, receive, dropping_send)


async def test_connection_lost_mid_synthesis_is_not_resent(piper_engine: PiperEngine) -> None:
    flaky = DropsConnection(create_app(piper_engine, make_settings()))
    with serve_in_thread(flaky) as url:
        wait_ready(url)
        transport = CountingTransport()
        client = TTSClient(url, API_TOKEN, retry=FAST_RETRY, transport=transport)
        try:
            with pytest.raises(TTSUnavailable, match="broke before it answered") as caught:
                await client.synthesize(TTSParams(text="Only once, please."), None)
        finally:
            await client.aclose()
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError | httpx.ReadError)
    assert transport.requests == ["POST /v1/tts"]
    assert flaky.syntheses == 1  # the engine's work was paid for once


async def eventually(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


async def test_engine_identity_is_asked_again_once_stale_without_making_anyone_wait(
    piper_engine: PiperEngine, caplog: pytest.LogCaptureFixture
) -> None:
    service = DropsConnection(create_app(piper_engine, make_settings()))
    with serve_in_thread(service) as url:
        wait_ready(url)
        transport = CountingTransport()
        client = TTSClient(url, API_TOKEN, retry=FAST_RETRY, transport=transport)
        identity = EngineIdentity(client.fetch_engine_info, max_age_s=0.5)
        try:
            first = await identity.current()
            assert await identity.current() == first
            assert transport.requests == ["GET /v1/engine"]  # remembered while fresh
            await asyncio.sleep(0.6)
            service.engine_gate.clear()  # the service is slow to answer now (a cold start)
            # Stale: answered at once with what is known, and asked again in the background.
            assert await asyncio.wait_for(identity.current(), 5) == first
            await eventually(lambda: len(transport.requests) == 2)
            assert await identity.current() == first
            assert len(transport.requests) == 2  # one question at a time
            service.engine_gate.set()
            await eventually(lambda: transport.exchanges[1].status == 200)
            await asyncio.sleep(0.6)
            service.drop_engine_requests = 1  # the service cannot answer just now
            assert await identity.current() == first
            await eventually(lambda: "keeping the TTS engine's last known identity" in caplog.text)
            assert identity.known == first  # the last answer keeps serving
            assert transport.requests == ["GET /v1/engine"] * 3
        finally:
            service.engine_gate.set()
            await identity.aclose()
            await client.aclose()


async def test_read_timeout_is_reported_and_not_retried(service: str) -> None:
    transport = CountingTransport()
    client = TTSClient(
        service, API_TOKEN, read_timeout_s=0.2, retry=FAST_RETRY, transport=transport
    )
    try:
        with pytest.raises(TTSTimeout):
            await client.synthesize(TTSParams(text=LONG_TEXT), None)
    finally:
        await client.aclose()
    assert len(transport.requests) == 1
    await asyncio.sleep(4)  # let the abandoned synthesis free the service's only slot


def modal_like_gateway(upstream: str) -> FastAPI:
    """Modal's web-endpoint behaviour: a long request is answered 303 → poll with GET."""
    app = FastAPI()
    results: dict[str, httpx.Response] = {}

    @app.post("/v1/tts")
    async def accept(request: Request) -> Response:
        async with httpx.AsyncClient(base_url=upstream) as http:
            results["call-1"] = await http.post(
                "/v1/tts", content=await request.body(), headers=dict(request.headers)
            )
        return RedirectResponse("/__modal/poll?call=call-1", status_code=303)

    @app.get("/__modal/poll")
    async def poll(call: str) -> Response:
        upstream_response = results.pop(call)
        return Response(
            upstream_response.content,
            status_code=upstream_response.status_code,
            headers=dict(upstream_response.headers),
        )

    return app


async def test_follows_modal_style_redirects(service: str) -> None:
    with serve_in_thread(modal_like_gateway(service)) as gateway:
        client = TTSClient(gateway, API_TOKEN, retry=FAST_RETRY)
        try:
            result = await client.synthesize(TTSParams(text="Redirected and back."), None)
        finally:
            await client.aclose()
    assert sf.info(io.BytesIO(result.audio)).subtype == "OPUS"


# --- a 200 is audio only if it is audio ------------------------------------------------------

HTML_PAGE = b"<html><body><h1>Please sign in to the Wi-Fi</h1></body></html>"
WAV_BYTES = audio.encode(audio.silence(0.5, 22_050), 22_050, AudioFormat.WAV)


@pytest.fixture(scope="module")
def fronted(piper_engine: PiperEngine) -> Iterator[tuple[Service, CannedAnswers]]:
    """The real service behind something that answers ``POST /v1/tts`` itself when told."""
    canned = CannedAnswers()
    with running_service(piper_engine, wrap=canned.around) as service:
        yield service, canned


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (
            Canned(200, "audio/ogg", HTML_PAGE, {"X-Audio-Duration": "1.000"}),
            "the bytes are not ogg_opus audio",
        ),
        (
            Canned(200, "audio/ogg", ogg(b"no audio after the head"), {"X-Audio-Duration": "0"}),
            "it holds no audio (duration 0)",
        ),
        (Canned(200, "audio/ogg", ogg(b"no duration header")), "it holds no audio (duration 0)"),
        (
            Canned(200, "audio/wav", WAV_BYTES, {"X-Audio-Duration": "0.500"}),
            "its content type is audio/wav",
        ),
        (Canned(200, "text/html", HTML_PAGE), "its content type is text/html"),
    ],
    ids=["html-bytes-as-ogg", "duration-0", "no-duration", "wav-for-ogg", "html-page"],
)
async def test_a_200_that_is_not_audio_of_the_format_is_unavailable(
    fronted: tuple[Service, CannedAnswers],
    answer: Canned,
    problem: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service, canned = fronted
    canned.queue.append(answer)
    before, served = service.counter.tts_requests, canned.served
    transport = CountingTransport()
    client = TTSClient(service.url, API_TOKEN, retry=FAST_RETRY, transport=transport)
    params = TTSParams(text="Is this audio?")
    try:
        with pytest.raises(TTSUnavailable, match=re.escape(problem)):
            await client.synthesize(params, None)
        assert transport.requests == ["POST /v1/tts"]  # not sent again: it did answer
        assert canned.served == served + 1 and not canned.queue
        assert service.counter.tts_requests == before  # the service never saw it
        assert f"answered 200 with no usable audio: {problem}" in caplog.text
        spoken = await client.synthesize(params, None)  # the real service's answer passes
    finally:
        await client.aclose()
    assert sf.info(io.BytesIO(spoken.audio)).subtype == "OPUS" and spoken.duration_s > 0


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (
            Canned(
                500,
                "application/json",
                b'{"error": {"code": "internal_error", '
                b'"message": "the service hit an unexpected error"}}',
            ),
            TTSServerError,
        ),
        (Canned(502, "text/html", b"<html><h1>502 Bad Gateway</h1></html>"), TTSUnavailable),
    ],
    ids=["service-500", "proxy-502"],
)
async def test_the_services_own_500_is_a_server_error_a_proxys_page_is_unavailable(
    fronted: tuple[Service, CannedAnswers], answer: Canned, error: type[Exception]
) -> None:
    service, canned = fronted
    canned.queue.append(answer)
    transport = CountingTransport()
    client = TTSClient(service.url, API_TOKEN, retry=FAST_RETRY, transport=transport)
    try:
        with pytest.raises(error) as caught:
            await client.synthesize(TTSParams(text="Who failed?"), None)
    finally:
        await client.aclose()
    assert type(caught.value) is error  # TTSServerError is not a kind of TTSUnavailable
    assert transport.requests == ["POST /v1/tts"]
    assert "Bad Gateway" not in str(caught.value)  # upstream text is never quoted


# --- a refused token -------------------------------------------------------------------------


async def test_a_refused_token_is_logged_once_however_many_requests_fail(
    service: str, caplog: pytest.LogCaptureFixture
) -> None:
    transport = CountingTransport()
    client = TTSClient(service, "not-the-token", retry=FAST_RETRY, transport=transport)
    try:
        with caplog.at_level(logging.ERROR, logger="bots.tts_client"):
            for n in range(3):
                with pytest.raises(TTSMisconfigured):
                    await client.synthesize(TTSParams(text=f"Try number {n}."), None)
            with pytest.raises(TTSMisconfigured):
                await client.ready()
            with pytest.raises(TTSMisconfigured):
                await client.fetch_engine_info()
    finally:
        await client.aclose()
    assert transport.statuses() == [401] * 5  # each asked once, none retried
    said = [r.getMessage() for r in caplog.records if r.name == "bots.tts_client"]
    assert said == ["the TTS service refused our token: check TTS_API_TOKEN"]


# --- busy: the client's own limit, and retries until the deadline ----------------------------


async def test_a_burst_waits_its_turn_in_the_client_instead_of_being_refused(
    piper_engine: PiperEngine,
) -> None:
    """With the client's limit at the service's, a burst queues here: never a 503."""
    with running_service(piper_engine, max_in_flight=1) as lone:
        transport = CountingTransport()
        client = TTSClient(
            lone.url, API_TOKEN, retry=FAST_RETRY, max_in_flight=1, transport=transport
        )
        try:
            results = await asyncio.gather(
                *(client.synthesize(TTSParams(text=f"Burst number {n}."), None) for n in range(6))
            )
        finally:
            await client.aclose()
    assert all(result.duration_s > 0 for result in results)
    assert len({result.audio for result in results}) == 6
    assert transport.statuses() == [200] * 6
    assert lone.counter.tts_requests == 6


async def test_busy_answers_are_waited_out_until_the_deadline(piper_engine: PiperEngine) -> None:
    """Four sent at once to a service with room for one: three refused (503), and retried
    (Retry-After: 1) as often as it takes, far more than ``max_attempts``, until served."""
    engine = HeldSynthesis(piper_engine)
    with running_service(engine, max_in_flight=1, busy_retry_after_s=1) as lone:
        transport = CountingTransport()
        retry = RetryPolicy(max_attempts=2, backoff_base_s=0.01, max_wait_s=5, deadline_s=120)
        client = TTSClient(lone.url, API_TOKEN, retry=retry, max_in_flight=4, transport=transport)
        try:
            burst = asyncio.gather(
                *(client.synthesize(TTSParams(text=f"Busy number {n}."), None) for n in range(6))
            )
            await transport.answered(503, count=3)  # one holds the service's only place
            await transport.answered(503, count=6)  # and each of the others was refused twice
            engine.gate.set()
            results = await burst
        finally:
            engine.gate.set()
            await client.aclose()
    assert all(result.duration_s > 0 for result in results)
    statuses = transport.statuses()
    assert statuses.count(200) == 6 and set(statuses) == {200, 503}
    assert lone.counter.tts_requests == len(statuses)


async def test_a_retry_after_past_the_deadline_is_busy_at_once(piper_engine: PiperEngine) -> None:
    engine = HeldSynthesis(piper_engine)
    with running_service(engine, max_in_flight=1, busy_retry_after_s=2) as lone:
        blocker = TTSClient(lone.url, API_TOKEN)
        transport = CountingTransport()
        retry = RetryPolicy(max_attempts=5, max_wait_s=30, deadline_s=1)
        client = TTSClient(lone.url, API_TOKEN, retry=retry, transport=transport)
        try:
            held = asyncio.create_task(blocker.synthesize(TTSParams(text="Mine for now."), None))
            assert await asyncio.to_thread(engine.wait_entered, 1), "never reached the engine"
            async with asyncio.timeout(10):  # at once: no Retry-After is waited for
                with pytest.raises(TTSBusy) as caught:
                    await client.synthesize(TTSParams(text="Any room?"), None)
            assert caught.value.retry_after_s == 2
            assert transport.statuses() == [503]  # 2 s would end past the 1 s deadline
            engine.gate.set()
            assert (await held).duration_s > 0
        finally:
            engine.gate.set()
            await client.aclose()
            await blocker.aclose()


async def test_no_place_of_its_own_before_the_deadline_is_busy(piper_engine: PiperEngine) -> None:
    """The client's own limit is waited for until the deadline too, and nothing is sent."""
    engine = HeldSynthesis(piper_engine)
    with running_service(engine) as service:
        transport = CountingTransport()
        retry = RetryPolicy(deadline_s=0.5)
        client = TTSClient(
            service.url, API_TOKEN, retry=retry, max_in_flight=1, transport=transport
        )
        try:
            first = asyncio.create_task(client.synthesize(TTSParams(text="First."), None))
            assert await asyncio.to_thread(engine.wait_entered, 1), "never reached the engine"
            async with asyncio.timeout(10):
                with pytest.raises(TTSBusy, match=r"no room at the TTS service within 0\.5 s"):
                    await client.synthesize(TTSParams(text="Second."), None)
            assert transport.requests == ["POST /v1/tts"]  # the second never left
            engine.gate.set()
            assert (await first).duration_s > 0
        finally:
            engine.gate.set()
            await client.aclose()
