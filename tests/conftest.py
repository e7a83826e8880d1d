"""Fixtures every test package shares."""

from __future__ import annotations

import pytest

from tts_service.engines.piper import PiperEngine


@pytest.fixture(scope="session")
def piper_engine() -> PiperEngine:
    """One loaded Piper voice per session (loading takes ~0.4 s)."""
    engine = PiperEngine(onnx_threads=1)
    engine.load()
    return engine
