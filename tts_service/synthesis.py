"""Text in, encoded audio out: the pipeline every engine shares.

normalised text → sentence chunks (≤ the engine's ``max_chunk_chars``) → one
engine call per chunk, in order → joined with a short pause → loudness
normalised → encoded in exactly the requested format, tagged as AI-generated
speech by the engine that spoke it. Text that yields no
audio at all (only punctuation, say) is ``NothingToSay``, never an empty file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from tts_service import audio
from tts_service.engines.base import FloatAudio, ReferenceClip, TTSEngine
from tts_service.errors import NothingToSay, VoiceCloningUnavailable
from tts_service.schema import CONTENT_TYPES, AudioFormat, EngineInfo, TTSParams
from tts_service.text import split_into_chunks

CHUNK_PAUSE_S = 0.2  # between chunks: a natural breath, not an audible gap


@dataclass(frozen=True)
class SynthesisResult:
    audio: bytes
    format: AudioFormat
    duration_s: float
    synthesis_s: float
    engine: EngineInfo

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


def synthesize_samples(
    engine: TTSEngine, params: TTSParams, reference: ReferenceClip | None
) -> FloatAudio:
    """Speak ``params.text`` of any length, chunk by chunk, as one float32 signal.

    Raises ``NothingToSay`` when no chunk gives any audio: which text is speakable
    is the engine's call (Piper reads "!!!" as "exclamation" but "..." as nothing).
    """
    info = engine.info
    pause = audio.silence(CHUNK_PAUSE_S, info.sample_rate)
    parts: list[FloatAudio] = []
    for chunk in split_into_chunks(params.text, info.max_chunk_chars):
        samples = engine.synthesize(chunk, params, reference)
        if samples.size:
            if parts:
                parts.append(pause)
            parts.append(samples.astype(np.float32, copy=False))
    if not parts:
        raise NothingToSay(
            "the text has nothing to say aloud; give some words, not only punctuation"
        )
    return audio.normalize_loudness(np.concatenate(parts))


def load_reference(engine: TTSEngine, reference_audio: bytes | None) -> ReferenceClip | None:
    """Decode a reference clip for this engine, refusing early when it cannot clone."""
    if reference_audio is None:
        return None
    info = engine.info
    if not info.can_clone_voice:
        raise VoiceCloningUnavailable(
            f"voice cloning needs the Chatterbox engine; this service runs {info.name}, "
            "which speaks only in its own voice"
        )
    return audio.prepare_reference(reference_audio, info.sample_rate)


def synthesize(
    engine: TTSEngine, params: TTSParams, reference_audio: bytes | None = None
) -> SynthesisResult:
    """The whole blocking pipeline; the API runs it in a worker thread."""
    started = time.perf_counter()
    reference = load_reference(engine, reference_audio)
    samples = synthesize_samples(engine, params, reference)
    info = engine.info
    encoded = audio.encode(samples, info.sample_rate, params.format, engine=info)
    return SynthesisResult(
        audio=encoded,
        format=params.format,
        duration_s=audio.duration_of(samples, info.sample_rate),
        synthesis_s=time.perf_counter() - started,
        engine=info,
    )
