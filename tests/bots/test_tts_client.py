"""The bots' TTS client against the real service app over loopback HTTP."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import soundfile as sf
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from bots.errors import (
    InvalidInput,
    TTSBusy,
    TTSTimeout,
    TTSUnavailable,
    VoiceCloningUnavailable,
)
from bots.tts_client import RetryPolicy, TTSClient
from tests.servers import serve_in_thread
from tests.tts_helpers import API_TOKEN, make_settings, wait_ready
from tests.tts_service.audio_samples import clip
from tts_service.api import create_app
from tts_service.engines.piper import PiperEngine
from tts_service.schema import AudioFormat, TTSParams

FAST_RETRY = RetryPolicy(max_attempts=3, backoff_base_s=0.01, max_wait_s=5)
LONG_TEXT = ("A long sentence that keeps the engine busy for a while, on purpose. " * 14).strip()


class CountingTransport(httpx.AsyncBaseTransport):
    """The real HTTP transport, counting the requests that went out."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        return await self.inner.handle_async_request(request)

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
    engine = await client.engine_info()
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


async def test_busy_service_retry_honours_retry_after(service: str) -> None:
    transport = CountingTransport()
    retry = RetryPolicy(max_attempts=5, backoff_base_s=0.01, max_wait_s=5)
    client = TTSClient(service, API_TOKEN, retry=retry, transport=transport)
    blocker = TTSClient(service, API_TOKEN)
    try:
        long_call = asyncio.create_task(blocker.synthesize(TTSParams(text=LONG_TEXT), None))
        await asyncio.sleep(0.3)
        result = await client.synthesize(TTSParams(text="hi"), None)
        assert result.audio
        assert len(transport.requests) >= 2  # refused at least once, then served
        await long_call
    finally:
        await client.aclose()
        await blocker.aclose()


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
