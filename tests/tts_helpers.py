"""Helpers to stand up the real TTS service in tests: settings, readiness wait."""

from __future__ import annotations

import time

import httpx
from pydantic import SecretStr

from tts_service.settings import TTSSettings

API_TOKEN = "test-token-not-a-secret-0123456789"  # 32+: it guards non-loopback binds too


def make_settings(**overrides: object) -> TTSSettings:
    """Service settings for tests: a known token, and nothing read from a developer's .env."""
    values: dict[str, object] = {"api_token": SecretStr(API_TOKEN), "_env_file": None}
    values.update(overrides)
    return TTSSettings(**values)  # type: ignore[arg-type]


def wait_ready(base_url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    while time.monotonic() < deadline:
        if httpx.get(f"{base_url}/readyz", headers=headers).status_code == 200:
            return
        time.sleep(0.05)
    raise RuntimeError("service never became ready")
