"""Readiness of the parts ``saybot run`` depends on, checked concurrently and bounded in time.

Every component listed is required: the process is ready only when Redis answers PING,
the TTS service answers its ``/readyz``, and every configured chat platform is connected.
A platform whose token is unset is not listed. While ``run()`` is still starting its parts
(or already stopping them) nothing is probed: the phase is the reason.

Reasons are fixed sentences chosen here, never text from elsewhere: whatever sits between
saybot and its TTS service (a proxy's HTML error page, say) is logged, not served.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from bots.errors import SayError, TTSBusy, TTSMisconfigured, TTSTimeout, TTSUnavailable
from bots.tts_client import TTSClient
from storage.metrics import StorageMetrics
from storage.redis import RedisHandle
from tts_service.schema import EngineInfo

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0  # /readyz must answer a load balancer quickly, even when a part hangs
RUNNING, STARTING, STOPPING = "running", "starting", "stopping"

# The one sentence /readyz shows per TTS error code; the detail goes to the log only.
TTS_REASONS = {
    TTSBusy.code: "the TTS service is busy or still loading its engine",
    TTSTimeout.code: "the TTS service did not answer in time",
    TTSUnavailable.code: "the TTS service is unreachable or failing",
    TTSMisconfigured.code: "the TTS service refused our token: check TTS_API_TOKEN",
}
TTS_OTHER_REASON = "the TTS service refused the readiness check"


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    ok: bool
    reason: str | None = None  # why it is down; short, no secrets
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": self.ok, **self.detail}
        if self.reason is not None:
            body["reason"] = self.reason
        return body


@dataclass(frozen=True)
class Readiness:
    components: list[ComponentStatus]
    phase: str = RUNNING  # STARTING or STOPPING: never ready, whatever the components say

    @classmethod
    def not_running(cls, phase: str, pending: list[str]) -> Readiness:
        """Readiness without probing: ``run()`` is starting (``pending`` parts) or stopping."""
        return cls([ComponentStatus(name, False, phase) for name in pending], phase)

    @property
    def ready(self) -> bool:
        return self.phase == RUNNING and all(component.ok for component in self.components)

    @property
    def reason(self) -> str | None:
        """One line naming each component that is down and why (or the phase, first)."""
        down = [c for c in self.components if not c.ok]
        if self.phase != RUNNING:
            waiting = ", ".join(c.name for c in down)
            return f"{self.phase}: waiting for {waiting}" if waiting else self.phase
        return "; ".join(f"{c.name}: {c.reason or 'down'}" for c in down) or None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": "ready" if self.ready else "not_ready"}
        if not self.ready:
            body["reason"] = self.reason
        body["components"] = {c.name: c.as_json() for c in self.components}
        return body


async def redis_status(redis: RedisHandle) -> ComponentStatus:
    detail: dict[str, Any] = {"embedded": redis.is_embedded}
    if redis.warnings:  # e.g. voice clips stored unencrypted in a shared Redis
        detail["warnings"] = list(redis.warnings)
    if await redis.ping():
        return ComponentStatus("redis", True, detail=detail)
    return ComponentStatus("redis", False, "not answering PING", detail)


def tts_reason(code: str) -> str:
    return TTS_REASONS.get(code, TTS_OTHER_REASON)


async def tts_status(tts: TTSClient, timeout_s: float = PROBE_TIMEOUT_S) -> ComponentStatus:
    """The service's own ``/readyz`` (engine loaded), with its engine's identity."""
    try:
        body = await asyncio.wait_for(tts.ready(), timeout_s)
        engine = EngineInfo.model_validate(body.get("engine"))
    except TimeoutError:
        return ComponentStatus("tts", False, f"no answer within {timeout_s:g} s")
    except SayError as exc:
        # exc.message may quote the answer's body (any upstream text); the code is ours.
        log.warning("the TTS service is not ready: %s (%s)", exc.code, exc.message)
        return ComponentStatus("tts", False, tts_reason(exc.code), {"code": exc.code})
    except (ValidationError, ValueError, AttributeError):
        return ComponentStatus("tts", False, "its /readyz answer is not what saybot expects")
    info = engine.model_dump(include={"name", "model_version", "sample_rate", "can_clone_voice"})
    return ComponentStatus("tts", True, detail={"engine": info})


def platform_status(name: str, connected: Callable[[], bool]) -> ComponentStatus:
    try:
        ok = bool(connected())
    except Exception as exc:  # a broken status callable must not break /readyz
        log.exception("connected-status of %s failed", name)
        return ComponentStatus(name, False, f"status check failed ({type(exc).__name__})")
    return ComponentStatus(name, ok, None if ok else "not connected")


def count_redis_probe(metrics: StorageMetrics | None, redis: ComponentStatus) -> None:
    """The admin's own PING counts in ``saybot_redis_errors`` (and the breaker) like any
    storage call: a failed probe is a failed Redis command."""
    if metrics is None:
        return
    if redis.ok:
        metrics.redis_succeeded()
    else:
        metrics.redis_failed("readiness ping", ConnectionError(redis.reason or "no PONG"))


async def check_readiness(
    redis: RedisHandle,
    tts: TTSClient,
    platforms: Mapping[str, Callable[[], bool]],
    timeout_s: float = PROBE_TIMEOUT_S,
    metrics: StorageMetrics | None = None,
) -> Readiness:
    """Redis and the TTS service probed concurrently; platforms asked in-process."""
    redis_check = asyncio.wait_for(redis_status(redis), timeout_s)
    results = await asyncio.gather(redis_check, tts_status(tts, timeout_s), return_exceptions=True)
    components: list[ComponentStatus] = []
    for name, result in zip(("redis", "tts"), results, strict=True):
        if isinstance(result, ComponentStatus):
            components.append(result)
        elif isinstance(result, TimeoutError):
            components.append(ComponentStatus(name, False, f"no answer within {timeout_s:g} s"))
        else:
            log.error("readiness check of %s failed", name, exc_info=result)
            components.append(
                ComponentStatus(name, False, f"check failed ({type(result).__name__})")
            )
    count_redis_probe(metrics, components[0])
    components += [platform_status(name, status) for name, status in sorted(platforms.items())]
    return Readiness(components)
