"""Thin ``TTSEngine`` wrappers around the real Piper voice, to see what the service does.

Each one delegates the actual speech to a real ``PiperEngine`` (``PiperWrapper``); the
wrapper only holds the load back (``GatedEngine``), makes it fail (``FailingEngine``),
holds every synthesis back (``HeldSynthesis``), records the text each call was given
(``RecordingEngine``) or, in the bot tests, claims it can clone (``CloningPiper``).
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


class HeldSynthesis(PiperWrapper):
    """A loaded Piper engine whose every synthesis waits until the test opens ``gate``:
    a synthesis as long as the test needs, on any machine. ``wait_entered(n)`` returns once
    ``n`` engine calls (one per chunk of text) have begun."""

    def __init__(self, inner: PiperEngine) -> None:
        super().__init__(inner)
        self.gate = threading.Event()
        self.entered = 0
        self._changed = threading.Condition()

    def synthesize(
        self, text: str, params: TTSParams, reference: ReferenceClip | None
    ) -> FloatAudio:
        with self._changed:
            self.entered += 1
            self._changed.notify_all()
        if not self.gate.wait(timeout=60):
            raise TimeoutError("the test never opened the gate")
        return self.inner.synthesize(text, params, reference)

    def wait_entered(self, count: int, timeout_s: float = 30.0) -> bool:
        """Blocking: call it with ``asyncio.to_thread`` from a test's event loop."""
        with self._changed:
            return self._changed.wait_for(lambda: self.entered >= count, timeout_s)


class CloningPiper(PiperWrapper):
    """Piper behind a cloning engine's face; ``gate``, when given, holds every synthesis
    until it is set, so a test can act while one is in progress."""

    def __init__(self, piper: PiperEngine, gate: threading.Event | None = None) -> None:
        super().__init__(piper)
        self._info = piper.info.model_copy(
            update={"name": "cloning-piper", "can_clone_voice": True}
        )
        self.gate = gate
        self.entered = threading.Event()

    @property
    def info(self) -> EngineInfo:
        return self._info

    def synthesize(
        self, text: str, params: TTSParams, reference: ReferenceClip | None
    ) -> FloatAudio:
        self.entered.set()
        if self.gate is not None and not self.gate.wait(timeout=30):
            raise RuntimeError("the test never opened the gate")
        return self.inner.synthesize(text, params, None)
