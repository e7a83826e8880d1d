"""Text in, encoded audio out: the pipeline every engine shares.

normalised text → sentence chunks (≤ the engine's ``max_chunk_chars``) → the engine speaks
each chunk, in order, in parts (a sentence each where it can: ``SpeaksInParts``) → each part
loudness-normalised on its own → a short pause between chunks → encoded in exactly the
requested format, tagged as AI-generated speech by the engine that spoke it.

The encoder runs in its own thread (``BackgroundEncoder``) and takes each part as soon as
it is spoken, so encoding overlaps synthesis instead of following it. That is also why
loudness is set per part rather than over the whole: no second pass over the finished
signal, and each sentence (each Chatterbox chunk) lands at the same level. Text that yields
no audio at all (only punctuation, say) is ``NothingToSay``, never an empty file.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import numpy as np

from tts_service import audio, encoding
from tts_service.engines.base import FloatAudio, ReferenceClip, SpeaksInParts, TTSEngine
from tts_service.errors import InvalidRequest, NothingToSay, VoiceCloningUnavailable
from tts_service.schema import (
    CONTENT_TYPES,
    AudioFormat,
    EngineInfo,
    TTSParams,
    language_problem,
)
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


def spoken_parts(
    engine: TTSEngine, params: TTSParams, reference: ReferenceClip | None
) -> Iterator[FloatAudio]:
    """``params.text`` of any length as loudness-normalised parts, in order, with a pause
    between chunks; lazily, so each part can be encoded while the next is spoken. Its
    callers have checked the language (``check_language``) before anything is decoded.

    Raises ``NothingToSay`` when no chunk gives any audio: which text is speakable
    is the engine's call (Piper reads "!!!" as "exclamation" but "..." as nothing).
    """
    info = engine.info
    pause = audio.silence(CHUNK_PAUSE_S, info.sample_rate)
    spoke = False
    for chunk in split_into_chunks(params.text, info.max_chunk_chars):
        first_in_chunk = True
        with contextlib.closing(_engine_parts(engine, chunk, params, reference)) as parts:
            for samples in parts:
                if not samples.size:
                    continue
                if spoke and first_in_chunk:
                    yield pause
                spoke, first_in_chunk = True, False
                yield audio.normalize_loudness(samples.astype(np.float32, copy=False))
    if not spoke:
        raise NothingToSay(
            "the text has nothing to say aloud; give some words, not only punctuation"
        )


def _engine_parts(
    engine: TTSEngine, chunk: str, params: TTSParams, reference: ReferenceClip | None
) -> Generator[FloatAudio, None, None]:
    if isinstance(engine, SpeaksInParts):
        yield from engine.synthesize_parts(chunk, params, reference)
    else:
        yield engine.synthesize(chunk, params, reference)


def synthesize_samples(
    engine: TTSEngine, params: TTSParams, reference: ReferenceClip | None
) -> FloatAudio:
    """The whole signal ``synthesize`` encodes, as one float32 array (the CLI, tests)."""
    check_language(params, engine.info)
    return np.concatenate(list(spoken_parts(engine, params, reference)))


def check_language(params: TTSParams, info: EngineInfo) -> None:
    """``InvalidRequest`` unless the engine lists the requested language."""
    problem = language_problem(params.language, info)
    if problem is not None:
        raise InvalidRequest(problem)


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
    """The whole blocking pipeline; the API runs it in a worker thread (and the encoder in
    one more, beside it)."""
    started = time.perf_counter()
    info = engine.info
    check_language(params, info)  # before a clip is decoded for nothing
    reference = load_reference(engine, reference_audio)
    encoder = encoding.open_encoder(params.format, info.sample_rate, encoding.disclosure(info))
    background = encoding.BackgroundEncoder(encoder)
    try:
        for part in spoken_parts(engine, params, reference):
            background.write(part)
    except BaseException:
        background.abandon()
        raise
    encoded = background.finish()
    return SynthesisResult(
        audio=encoded,
        format=params.format,
        duration_s=encoder.samples_written / info.sample_rate,
        synthesis_s=time.perf_counter() - started,
        engine=info,
    )
