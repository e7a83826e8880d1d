"""HTTP client of the TTS service: one ``httpx.AsyncClient``, opened once and passed in.

Timeouts are sized for a cold GPU (loading Chatterbox takes tens of seconds).
Redirects are followed because Modal answers requests that outlive its
web-endpoint limit with a 303 to a URL to poll.

A burst must not turn users away: at most ``max_in_flight`` syntheses go to the service
at once from this process (the rest wait their turn), and a 429 or 503 is tried again,
honouring ``Retry-After``, until the request's deadline (``RetryPolicy.deadline_s``);
only past it is the user told the engine is busy. Errors before the request went out
(connect errors and timeouts, no free pooled connection) are retried a bounded number of
times. Never 4xx, and never once the request may have reached the service (a read
timeout, a connection dropped mid-answer): it may still be synthesising, and a retry
would pay for the GPU twice.

A 200 is audio only if it is audio: the requested format's content type, that container's
bytes and a positive duration. Anything else (a proxy's or captive portal's HTML page) is
an upstream failure, never sent and never cached.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from bots.errors import (
    InvalidInput,
    SayError,
    TTSBusy,
    TTSMisconfigured,
    TTSServerError,
    TTSTimeout,
    TTSUnavailable,
    VoiceClipRejected,
    VoiceCloningUnavailable,
)
from tts_service import containers
from tts_service.schema import (
    CONTENT_TYPES,
    HEADER_DURATION,
    HEADER_ENGINE,
    HEADER_ENGINE_VERSION,
    HEADER_SYNTHESIS_SECONDS,
    AudioFormat,
    EngineInfo,
    ErrorCode,
    TTSParams,
)

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 503})
# Failures before a byte of the request left: retrying them cannot cause a second synthesis.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3  # for failures before the request went out
    backoff_base_s: float = 0.5
    max_backoff_s: float = 2.0
    max_wait_s: float = 30.0  # a Retry-After longer than this is not worth waiting for
    # A synthesis waits this long at most for the service to have room (busy answers,
    # this process's own in-flight limit); Discord's 15-minute token is the outer bound.
    deadline_s: float = 120.0

    def delay(self, attempt: int, retry_after_s: float | None) -> float:
        """Full jitter on a capped exponential base, or the server's Retry-After when given."""
        if retry_after_s is not None:
            return retry_after_s
        return random.uniform(0, min(self.max_backoff_s, self.backoff_base_s * 2**attempt))


@dataclass(frozen=True)
class SynthesizedAudio:
    audio: bytes
    format: AudioFormat
    duration_s: float
    synthesis_s: float
    engine: str
    engine_version: str


class TTSClient:
    """Talks to ``POST /v1/tts`` and friends; turns every failure into a ``SayError``."""

    def __init__(
        self,
        base_url: str,
        api_token: str | None,
        *,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 180.0,
        retry: RetryPolicy | None = None,
        max_in_flight: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_token}"} if api_token else {}
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            follow_redirects=True,
            transport=transport,
        )
        self._retry = retry or RetryPolicy()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._token_refused_logged = False

    async def aclose(self) -> None:
        await self._http.aclose()

    async def fetch_engine_info(self) -> EngineInfo:
        """Ask the service which engine it runs (``bots.engine_identity`` decides when)."""
        response = await self._request("GET", "/v1/engine")
        return EngineInfo.model_validate_json(response.content)

    async def ready(self) -> dict[str, Any]:
        """The service's /readyz body; raises ``TTSFailure`` when it is not ready."""
        response = await self._request("GET", "/readyz", retry=False)
        body: dict[str, Any] = response.json()
        return body

    async def synthesize(self, params: TTSParams, reference: bytes | None) -> SynthesizedAudio:
        """The audio, checked to be audio; waits (until the deadline) for the service's room."""
        # No language: the field left out, as a service older than it expects.
        body: dict[str, Any] = params.model_dump(mode="json", exclude_none=True)
        if reference is not None:
            body["reference_audio"] = base64.b64encode(reference).decode("ascii")
        deadline = asyncio.get_running_loop().time() + self._retry.deadline_s
        async with self._slot(deadline):
            response = await self._request("POST", "/v1/tts", json=body, deadline=deadline)
        return _audio_of(response, params.format)

    @contextlib.asynccontextmanager
    async def _slot(self, deadline: float) -> AsyncIterator[None]:
        """One of this process's ``max_in_flight`` places at the service, waited for."""
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            raise TTSBusy(
                f"no room at the TTS service within {self._retry.deadline_s:g} s"
            ) from None
        try:
            yield
        finally:
            self._slots.release()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        retry: bool = True,
        json: Any = None,
        deadline: float | None = None,
    ) -> httpx.Response:
        """One answer, retried where that can help: ``NOT_SENT`` failures up to
        ``max_attempts``; busy answers until ``deadline`` (or ``max_attempts`` without one)."""
        loop = asyncio.get_running_loop()
        attempts = self._retry.max_attempts if retry else 1
        not_sent = busy = 0
        while True:
            try:
                response = await self._http.request(method, path, json=json)
            except NOT_SENT as exc:
                not_sent += 1
                if not_sent < attempts:
                    await asyncio.sleep(self._retry.delay(not_sent - 1, None))
                    continue
                if isinstance(exc, httpx.TimeoutException):
                    raise TTSTimeout("the TTS service did not answer in time") from exc
                raise TTSUnavailable(
                    f"the TTS service is unreachable ({type(exc).__name__})"
                ) from exc
            except httpx.TimeoutException as exc:  # sent: it may still be working on it
                raise TTSTimeout("the TTS service did not answer in time") from exc
            except httpx.TransportError as exc:  # sent, then the connection broke
                raise TTSUnavailable(
                    f"the connection to the TTS service broke before it answered "
                    f"({type(exc).__name__}); not resent, as it may have done the work"
                ) from exc
            if response.is_success:
                return response
            retry_after = _retry_after_s(response)
            if response.status_code in RETRYABLE_STATUSES and retry:
                wait = self._retry.delay(busy, retry_after)
                busy += 1
                in_time = loop.time() + wait < deadline if deadline is not None else busy < attempts
                if in_time and (retry_after is None or retry_after <= self._retry.max_wait_s):
                    await asyncio.sleep(wait)
                    continue
            raise self._error_from_response(response, retry_after)

    def _error_from_response(self, response: httpx.Response, retry_after: float | None) -> SayError:
        """The service's ``{"error": {"code", "message"}}`` → the bots' typed error. Upstream
        text never reaches a user: a body that is not the service's own is not quoted."""
        try:
            error = response.json()["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            code = "unknown"
            message = f"an answer that is not the service's ({response.status_code})"
            log.warning(  # for the operator only: upstream text never reaches a user
                "the TTS service answered %s with a body that is not its own: %r",
                response.status_code,
                response.text[:200],
            )
        status = response.status_code
        if code == ErrorCode.VOICE_CLONING_UNAVAILABLE:
            return VoiceCloningUnavailable(message)
        if code in (ErrorCode.INVALID_REFERENCE_AUDIO, ErrorCode.PAYLOAD_TOO_LARGE):
            return VoiceClipRejected(message)
        if status in (400, 422):
            return InvalidInput(message)
        if status in RETRYABLE_STATUSES:
            return TTSBusy(message, retry_after)
        if status == 401:
            if not self._token_refused_logged:  # a configuration error: once is enough
                self._token_refused_logged = True
                log.error("the TTS service refused our token: check TTS_API_TOKEN")
            return TTSMisconfigured("the TTS service refused our token (401; TTS_API_TOKEN)")
        log.error("TTS service answered %s %s: %s", status, code, message)
        if code == ErrorCode.INTERNAL_ERROR:  # its own answer: it is up, and failed
            return TTSServerError(f"the TTS service failed ({status} {code})")
        return TTSUnavailable(f"the TTS service failed ({status} {code})")


def _audio_of(response: httpx.Response, fmt: AudioFormat) -> SynthesizedAudio:
    """The answer as audio, or ``TTSUnavailable`` when a 200 is not audio of that format."""
    headers = response.headers
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        duration_s = float(headers.get(HEADER_DURATION, "0"))
    except ValueError:
        duration_s = 0.0
    problem = (
        f"its content type is {content_type or 'missing'}"
        if content_type != CONTENT_TYPES[fmt]
        else containers.problem_with(fmt, response.content, duration_s)
    )
    if problem is not None:
        log.error("the TTS service answered 200 with no usable audio: %s", problem)
        raise TTSUnavailable(f"the TTS service's answer is not audio ({problem})")
    return SynthesizedAudio(
        audio=response.content,
        format=fmt,
        duration_s=duration_s,
        synthesis_s=float(headers.get(HEADER_SYNTHESIS_SECONDS, 0.0)),
        engine=headers.get(HEADER_ENGINE, "unknown"),
        engine_version=headers.get(HEADER_ENGINE_VERSION, ""),
    )


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
