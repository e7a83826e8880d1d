"""HTTP client of the TTS service: one ``httpx.AsyncClient``, opened once and passed in.

Timeouts are sized for a cold GPU (loading Chatterbox takes tens of seconds).
Redirects are followed because Modal answers requests that outlive its
web-endpoint limit with a 303 to a URL to poll. Retries are bounded, jittered
and only for failures where trying again can help: 429 and 503 (honouring
``Retry-After``) and errors before the request went out (connect errors and
timeouts, no free pooled connection). Never 4xx, and never once the request may
have reached the service (a read timeout, a connection dropped mid-answer): it
may still be synthesising, and a retry would pay for the GPU twice.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bots.errors import (
    InvalidInput,
    SayError,
    TTSBusy,
    TTSFailure,
    TTSTimeout,
    TTSUnavailable,
    VoiceClipRejected,
    VoiceCloningUnavailable,
)
from tts_service.schema import (
    HEADER_DURATION,
    HEADER_ENGINE,
    HEADER_ENGINE_VERSION,
    HEADER_SYNTHESIS_SECONDS,
    AudioFormat,
    EngineInfo,
    TTSParams,
)

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 503})
# Failures before a byte of the request left: retrying them cannot cause a second synthesis.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# While the service cannot say which engine it runs, keep the stale answer this long at most
# between tries, so cache hits go on being served without each one waiting for the retries.
ENGINE_INFO_RETRY_S = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_base_s: float = 0.5
    max_wait_s: float = 30.0  # a Retry-After longer than this is not worth waiting for

    def delay(self, attempt: int, retry_after_s: float | None) -> float:
        """Full jitter on an exponential base, or the server's Retry-After when given."""
        if retry_after_s is not None:
            return retry_after_s
        return random.uniform(0, self.backoff_base_s * 2**attempt)


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
        engine_info_max_age_s: float = 300.0,
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
        self._engine_info: EngineInfo | None = None
        self._engine_info_expires = 0.0  # time.monotonic() after which it is asked again
        self._engine_info_max_age_s = engine_info_max_age_s
        self._engine_info_lock = asyncio.Lock()
        self._engine_info_refresh: asyncio.Task[None] | None = None

    async def aclose(self) -> None:
        if self._engine_info_refresh is not None:
            self._engine_info_refresh.cancel()
            await asyncio.wait([self._engine_info_refresh])
        await self._http.aclose()

    @property
    def known_engine_info(self) -> EngineInfo | None:
        """The last answer of ``engine_info``, stale or not, without asking."""
        return self._engine_info

    def assume_engine_info(self, info: EngineInfo) -> None:
        """Start from an identity seen earlier (by any bot): used at once, and asked again
        in the background on the next ``engine_info``."""
        if self._engine_info is None:
            self._engine_info = info
            self._engine_info_expires = 0.0

    async def engine_info(self) -> EngineInfo:
        """The engine's identity (part of every cache key).

        Asked once; from then on answered at once, so a cache hit never waits on the
        service (on Modal, asking may wake a GPU container). Older than
        ``engine_info_max_age_s``, it is asked again in the background, so a redeployed
        service is noticed even by a bot that only serves cache hits; if the service
        cannot answer, the last answer stays.
        """
        known = self._engine_info
        if known is None:
            async with self._engine_info_lock:  # many requests, one question
                return self._engine_info or await self._ask_engine_info()
        if time.monotonic() >= self._engine_info_expires and self._engine_info_refresh is None:
            self._engine_info_refresh = asyncio.create_task(self._refresh_engine_info())
        return known

    async def _refresh_engine_info(self) -> None:
        try:
            await self._ask_engine_info()
        except TTSFailure as exc:
            log.warning("keeping the TTS engine's last known identity: %s", exc.message)
            self._engine_info_expires = time.monotonic() + min(
                ENGINE_INFO_RETRY_S, self._engine_info_max_age_s
            )
        except Exception:
            log.exception("asking the TTS engine's identity failed")
        finally:
            self._engine_info_refresh = None

    async def _ask_engine_info(self) -> EngineInfo:
        response = await self._request("GET", "/v1/engine")
        info = self._engine_info = EngineInfo.model_validate_json(response.content)
        self._engine_info_expires = time.monotonic() + self._engine_info_max_age_s
        return info

    async def ready(self) -> dict[str, Any]:
        """The service's /readyz body; raises ``TTSFailure`` when it is not ready."""
        response = await self._request("GET", "/readyz", retry=False)
        body: dict[str, Any] = response.json()
        return body

    async def synthesize(self, params: TTSParams, reference: bytes | None) -> SynthesizedAudio:
        body: dict[str, Any] = params.model_dump(mode="json")
        if reference is not None:
            body["reference_audio"] = base64.b64encode(reference).decode("ascii")
        response = await self._request("POST", "/v1/tts", json=body)
        headers = response.headers
        engine = headers.get(HEADER_ENGINE, "unknown")
        version = headers.get(HEADER_ENGINE_VERSION, "")
        if self._engine_info is not None and (
            (engine, version) != (self._engine_info.name, self._engine_info.model_version)
        ):
            self._engine_info = None  # the service was redeployed: re-ask before keying again
        return SynthesizedAudio(
            audio=response.content,
            format=params.format,
            duration_s=float(headers.get(HEADER_DURATION, 0.0)),
            synthesis_s=float(headers.get(HEADER_SYNTHESIS_SECONDS, 0.0)),
            engine=engine,
            engine_version=version,
        )

    async def _request(
        self, method: str, path: str, *, retry: bool = True, json: Any = None
    ) -> httpx.Response:
        attempts = self._retry.max_attempts if retry else 1
        for attempt in range(attempts):
            last_attempt = attempt == attempts - 1
            try:
                response = await self._http.request(method, path, json=json)
            except NOT_SENT as exc:
                if not last_attempt:
                    await asyncio.sleep(self._retry.delay(attempt, None))
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
            if (
                response.status_code in RETRYABLE_STATUSES
                and not last_attempt
                and (retry_after is None or retry_after <= self._retry.max_wait_s)
            ):
                await asyncio.sleep(self._retry.delay(attempt, retry_after))
                continue
            raise _error_from_response(response, retry_after)
        raise AssertionError("unreachable: the loop returns or raises")


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _error_from_response(response: httpx.Response, retry_after: float | None) -> SayError:
    """The service's ``{"error": {"code", "message"}}`` → the bots' typed error."""
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "unknown", response.text[:200]
    status = response.status_code
    if code == "voice_cloning_unavailable":
        return VoiceCloningUnavailable(message)
    if code in ("invalid_reference_audio", "payload_too_large"):
        return VoiceClipRejected(message)
    if status in (400, 422):
        return InvalidInput(message)
    if status in RETRYABLE_STATUSES:
        return TTSBusy(message, retry_after)
    if status == 401:
        log.error("the TTS service refused our token: check TTS_API_TOKEN")
    else:
        log.error("TTS service answered %s %s: %s", status, code, message)
    return TTSUnavailable(f"the TTS service failed ({status} {code})")
