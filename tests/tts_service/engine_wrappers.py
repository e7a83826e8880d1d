"""Thin ``TTSEngine`` wrappers around the real Piper voice, to see what the service does.

Each one delegates the actual speech to a real ``PiperEngine``; the wrapper only
holds the load back (``GatedEngine``), makes it fail (``FailingEngine``) or
records the text each call was given (``RecordingEngine``).
"""

from __future__ import annotations

import threading

from tts_service.engines.base import FloatAudio, ReferenceClip
from tts_service.engines.piper import PiperEngine
from tts_service.schema import EngineInfo, TTSParams


class GatedEngine:
    """A Piper engine whose ``load`` waits until the test opens the gate."""

    def __init__(self, inner: PiperEngine | None = None) -> None:
        self.inner = inner or PiperEngine(onnx_threads=1)
        self.gate = threading.Event()
        self.load_started = threading.Event()

    @property
    def info(self) -> EngineInfo:
        return self.inner.info

    @property
    def is_loaded(self) -> bool:
        return self.inner.is_loaded

    def load(self) -> None:
        self.load_started.set()
        if not self.gate.wait(timeout=60):
            raise TimeoutError("the test never opened the gate")
        self.inner.load()

    def synthesize(
        self, text: str, params: TTSParams, reference: ReferenceClip | None
    ) -> FloatAudio:
        return self.inner.synthesize(text, params, reference)


class FailingEngine(GatedEngine):
    """Loads like ``GatedEngine``, then fails the way a missing voice file does."""

    def load(self) -> None:
        self.load_started.set()
        self.gate.wait(timeout=60)
        raise FileNotFoundError("voice file missing")


class RecordingEngine:
    """A loaded Piper engine that records each chunk of text it is asked to speak.

    ``max_chunk_chars`` is lowered so ordinary test text spans several chunks.
    """

    def __init__(self, inner: PiperEngine, max_chunk_chars: int) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self._info = inner.info.model_copy(update={"max_chunk_chars": max_chunk_chars})

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def is_loaded(self) -> bool:
        return self.inner.is_loaded

    def load(self) -> None:
        self.inner.load()

    def synthesize(
        self, text: str, params: TTSParams, reference: ReferenceClip | None
    ) -> FloatAudio:
        self.calls.append(text)
        return self.inner.synthesize(text, params, reference)
