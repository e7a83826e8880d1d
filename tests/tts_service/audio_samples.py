"""Real audio clips in every container a chat app produces, made in memory for tests."""

from __future__ import annotations

import io

import av
import numpy as np
import soundfile as sf


def tone(seconds: float, rate: int = 16_000, freq: float = 220.0) -> np.ndarray:
    """A voiced-like signal: a tone with harmonics, loud enough not to count as silence."""
    t = np.arange(round(seconds * rate)) / rate
    wave = sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3))
    return (0.3 * wave / 1.8).astype(np.float32)


def with_silence(samples: np.ndarray, rate: int, lead_s: float, tail_s: float) -> np.ndarray:
    return np.concatenate(
        [
            np.zeros(round(lead_s * rate), np.float32),
            samples,
            np.zeros(round(tail_s * rate), np.float32),
        ]
    )


def encode_sf(samples: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def encode_av(samples: np.ndarray, rate: int, container: str, codec: str) -> bytes:
    """m4a/AAC and webm/Opus as phones record them, through PyAV's bundled FFmpeg."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"  # type: ignore[union-attr]
        frame_size = 960
        pts = 0
        for start in range(0, len(samples), frame_size):
            chunk = samples[start : start + frame_size].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            frame.sample_rate = rate
            frame.pts = pts
            pts += chunk.shape[1]
            for packet in stream.encode(frame):  # type: ignore[union-attr]
                out.mux(packet)
        for packet in stream.encode(None):  # type: ignore[union-attr]
            out.mux(packet)
    return buffer.getvalue()


def clip(fmt: str, seconds: float = 3.0, rate: int = 16_000) -> bytes:
    samples = tone(seconds, rate)
    if fmt == "wav":
        return encode_sf(samples, rate, "WAV", "PCM_16")
    if fmt == "flac":
        return encode_sf(samples, rate, "FLAC", "PCM_16")
    if fmt == "ogg_vorbis":
        return encode_sf(samples, rate, "OGG", "VORBIS")
    if fmt == "ogg_opus":
        return encode_sf(samples, rate, "OGG", "OPUS")  # rate must be 8/12/16/24/48 kHz
    if fmt == "mp3":
        return encode_sf(samples, rate, "MP3", "MPEG_LAYER_III")
    if fmt == "m4a":
        return encode_av(tone(seconds, 44_100), 44_100, "ipod", "aac")
    if fmt == "webm":
        return encode_av(tone(seconds, 48_000), 48_000, "webm", "libopus")
    raise ValueError(fmt)


def disclosure_tag(data: bytes) -> str:
    """The AI-generated tag of one of the service's answers, as FFmpeg reads it back:
    OGG/Opus's DESCRIPTION comment (a stream's ``comment``), MP3's ``TXXX`` frame, WAV's
    ``ICMT`` (the container's ``comment``)."""
    from tts_service.audio import MP3_DISCLOSURE_FRAME

    with av.open(io.BytesIO(data)) as container:
        tags = {**container.metadata, **container.streams.audio[0].metadata}
    return tags.get("comment") or tags[MP3_DISCLOSURE_FRAME]
