"""Fixtures: the real service over loopback HTTP around the session's Piper voice."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.servers import serve_in_thread
from tests.tts_helpers import API_TOKEN, make_settings, wait_ready
from tts_service.api import create_app
from tts_service.engines.piper import PiperEngine

__all__ = ["API_TOKEN", "make_settings", "wait_ready"]


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
