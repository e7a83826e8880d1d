"""The six encodings of OpenAI's speech API, made from the service's float32 speech.

``mp3``, ``opus`` (Ogg Opus) and ``wav`` are the service's own formats (``OWN_FORMATS``):
the route makes them through ``synthesis.synthesize``, encoding beside the engine as
``/v1/tts`` does, so they carry the AI disclosure tag as every answer does. ``flac``
carries it as a Vorbis comment (libsndfile). ``aac`` is raw ADTS frames (FFmpeg's native
encoder through PyAV), which is what OpenAI sends and what players stream, and ``pcm`` is
headerless 16-bit little-endian mono at 24 kHz, OpenAI's definition: neither has anywhere
to put a tag.
"""

from __future__ import annotations

import io
from enum import StrEnum

import numpy as np
import soundfile as sf

from tts_service import audio
from tts_service.engines.base import FloatAudio
from tts_service.schema import AudioFormat, EngineInfo

PCM_SAMPLE_RATE = 24_000  # OpenAI's pcm: 24 kHz, signed 16-bit little-endian, no header
AAC_SAMPLE_RATE = 24_000
AAC_BITRATE = 64_000


class SpeechFormat(StrEnum):
    """``response_format`` of ``POST /v1/audio/speech``; OpenAI's default is mp3."""

    MP3 = "mp3"
    OPUS = "opus"
    AAC = "aac"
    FLAC = "flac"
    WAV = "wav"
    PCM = "pcm"


MEDIA_TYPES: dict[SpeechFormat, str] = {
    SpeechFormat.MP3: "audio/mpeg",
    SpeechFormat.OPUS: "audio/ogg",
    SpeechFormat.AAC: "audio/aac",
    SpeechFormat.FLAC: "audio/flac",
    SpeechFormat.WAV: "audio/wav",
    SpeechFormat.PCM: "audio/pcm",
}

# The formats the service's own pipeline makes, tag included.
OWN_FORMATS: dict[SpeechFormat, AudioFormat] = {
    SpeechFormat.MP3: AudioFormat.MP3,
    SpeechFormat.OPUS: AudioFormat.OGG_OPUS,
    SpeechFormat.WAV: AudioFormat.WAV,
}


def encode_other(
    samples: FloatAudio, sample_rate: int, fmt: SpeechFormat, engine: EngineInfo
) -> bytes:
    """Mono float32 speech as ``fmt`` (one not in ``OWN_FORMATS``); the same samples give
    the same bytes."""
    clipped = np.clip(samples, -1.0, 1.0)
    if fmt is SpeechFormat.FLAC:
        return encode_flac(clipped, sample_rate, audio.disclosure(engine))
    if fmt is SpeechFormat.AAC:
        return encode_aac(audio.resample(clipped, sample_rate, AAC_SAMPLE_RATE))
    return encode_pcm(audio.resample(clipped, sample_rate, PCM_SAMPLE_RATE))


def encode_flac(samples: FloatAudio, sample_rate: int, comment: str) -> bytes:
    """16-bit FLAC; ``comment`` becomes the Vorbis comment ``COMMENT``."""
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", sample_rate, 1, "PCM_16", format="FLAC") as file:
        file.comment = comment
        file.write(samples)
    return buffer.getvalue()


def encode_aac(samples_24k: FloatAudio) -> bytes:
    """AAC-LC in ADTS frames at 24 kHz: a stream any player can start from its first byte."""
    import av  # FFmpeg: only when asked for

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="adts", container_options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream("aac", rate=AAC_SAMPLE_RATE)
        stream.layout = "mono"
        stream.bit_rate = AAC_BITRATE
        out.start_encoding()
        if samples_24k.size:
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples_24k, dtype=np.float32).reshape(1, -1),
                format="flt",
                layout="mono",
            )
            frame.sample_rate = AAC_SAMPLE_RATE
            frame.pts = 0
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def encode_pcm(samples_24k: FloatAudio) -> bytes:
    """Signed 16-bit little-endian samples, nothing else."""
    scaled = np.round(np.clip(samples_24k, -1.0, 1.0) * 32767.0)
    return scaled.astype("<i2").tobytes()
