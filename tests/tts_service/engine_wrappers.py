"""Thin ``TTSEngine`` wrappers around the real Piper voice, to see what the service does.

Each one delegates the actual speech to a real ``PiperEngine`` (``PiperWrapper``); the
wrapper only holds the load back (``GatedEngine``), makes it fail (``FailingEngine``),
records the text each call was given (``RecordingEngine``) or, in the bot tests, claims
it can clone (``CloningPiper``).
"""

from __future__ import annotations

import threading

from tts_service.engines.base import FloatAudio, ReferenceClip
from tts_service.engines.piper import PiperEngine
from tts_service.schema import EngineInfo, TTSParams


class PiperWrapper:
    """Delegates everything to a real ``PiperEngine``; subclasses change one thing."""

    def __init__(self, inner: PiperEngine) -> None:
        self.inner = inner

    @property
    def info(self) -> EngineInfo:
        return self.inner.info

    @property
    def is_loaded(self) -> bool:
        return self.inner.is_loaded

    def load(self) -> None:
        self.inner.load()

    def synthesize(
        self, text: str, params: TTSParams, reference: ReferenceClip | None
    ) -> FloatAudio:
        return self.inner.synthesize(text, params, reference)


class GatedEngine(PiperWrapper):
    """A Piper engine whose ``load`` waits until the test opens the gate."""

    def __init__(self, inner: PiperEngine | None = None) -> None:
        super().__init__(inner or PiperEngine(onnx_threads=1))
        self.gate = threading.Event()
        self.load_started = threading.Event()

    def load(self) -> None:
        self.load_started.set()
        if not self.gate.wait(timeout=60):
            raise TimeoutError("the test never opened the gate")
        self.inner.load()


class FailingEngine(GatedEngine):
    """Loads like ``GatedEngine``, then fails the way a missing voice file does."""

    def load(self) -> None:
        self.load_started.set()
        self.gate.wait(timeout=60)
        raise FileNotFoundError("voice file missing")


class RecordingEngine(PiperWrapper):
    """A loaded Piper engine that records each chunk of text it is asked to speak.

    ``max_chunk_chars`` is lowered so ordinary test text spans several chunks.
    """

    def __init__(self, inner: PiperEngine, max_chunk_chars: int) -> None:
        super().__init__(inner)
        self.calls: list[str] = []
        self._info = inner.info.model_copy(update={"max_chunk_chars": max_chunk_chars})

    @property
    def info(self) -> EngineInfo:
        return self._info

    def synthesize(
        self, text: str, params: TTSParams, reference: ReferenceClip | None
    ) -> FloatAudio:
        self.calls.append(text)
        return self.inner.synthesize(text, params, reference)
