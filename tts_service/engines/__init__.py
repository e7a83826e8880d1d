"""Engines behind the ``TTSEngine`` protocol; heavy ones are imported only when chosen."""

from __future__ import annotations

from tts_service.engines.base import FloatAudio, ReferenceClip, TTSEngine
from tts_service.settings import TTSSettings

__all__ = ["FloatAudio", "ReferenceClip", "TTSEngine", "build_engine"]


def build_engine(settings: TTSSettings) -> TTSEngine:
    """The engine the settings name, not yet loaded (call ``load()``)."""
    if settings.engine == "chatterbox":
        from tts_service.engines.chatterbox import ChatterboxEngine

        return ChatterboxEngine.from_settings(settings)
    from tts_service.engines.piper import PiperEngine

    return PiperEngine(
        onnx_threads=settings.onnx_threads,
        parallel=settings.parallel_syntheses,
        idle_release_s=settings.idle_release_s,
    )
