"""Fixtures: one loaded Piper voice per session and the real service over loopback HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from tests.servers import serve_in_thread
from tts_service.api import create_app
from tts_service.engines.piper import PiperEngine
from tts_service.settings import TTSSettings

API_TOKEN = "test-token-not-a-secret"


@pytest.fixture(scope="session")
def piper_engine() -> PiperEngine:
    engine = PiperEngine(onnx_threads=1)
    engine.load()
    return engine


def make_settings(**overrides: object) -> TTSSettings:
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


@pytest.fixture(scope="module")
def service_url(piper_engine: PiperEngine) -> Iterator[str]:
    with serve_in_thread(create_app(piper_engine, make_settings())) as url:
        wait_ready(url)
        yield url


@pytest.fixture()
def client(service_url: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with httpx.Client(base_url=service_url, headers=headers, timeout=60) as http:
        yield http
