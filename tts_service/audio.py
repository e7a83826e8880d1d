"""Audio in and out of the service, all in memory.

Output: float32 mono → OGG/Opus (48 kHz, what Telegram voice notes and Discord
play) via PyAV's libopus, WAV PCM16 or MP3 via libsndfile (``soundfile``). Input: reference clips
in whatever a phone or a chat app produces, decoded to mono float32 at the
engine's rate: libsndfile first (OGG/Opus, OGG/Vorbis, MP3, WAV, FLAC), PyAV
(FFmpeg inside its wheel) for m4a/AAC and WebM.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from tts_service.engines.base import FloatAudio, ReferenceClip
from tts_service.errors import PayloadTooLarge, ReferenceAudioError
from tts_service.schema import MAX_REFERENCE_BYTES, AudioFormat

OPUS_SAMPLE_RATE = 48_000  # Opus's native rate; what Telegram and Discord voice notes carry
OPUS_BITRATE = 32_000  # clear speech at a tenth of WAV's size (VBR, so a target)
# "audio", not "voip": both code Piper's speech in hybrid SILK+CELT at this bitrate and
# cost the same, but voip's tuning for live microphones (high-pass, intelligibility over
# fidelity) bends the waveform of clean synthetic speech (correlation with the input
# 0.96 vs 0.99); audio keeps the model's voice as it was, as libsndfile's encoder did.
OPUS_APPLICATION = "audio"
OPUS_FRAME_MS = "20"  # libopus's default and what voice-message clients send
OGG_SERIAL = 0x5A7B0701  # one fixed stream serial, so equal audio gives equal bytes
MP3_SAMPLE_RATE = 44_100
TARGET_RMS_DBFS = -20.0  # a comfortable speech level; peaks are kept below PEAK_CEILING
PEAK_CEILING = 10 ** (-1.0 / 20)  # -1 dBFS leaves room for the lossy encoders' overshoot
# Trimming is relative to the clip's loudest frame, so a quietly recorded voice is
# trimmed like a loud one (loudness is normalised only after trimming); frames below
# the absolute floor are silence whatever the clip: digital zeros, dither, faint hiss.
SILENCE_BELOW_PEAK_DB = 35.0
SILENCE_FLOOR_DBFS = -60.0
MIN_REFERENCE_S = 1.0
MAX_REFERENCE_S = 60.0


def resample(samples: FloatAudio, from_rate: int, to_rate: int) -> FloatAudio:
    """High-quality resampling; a no-op when the rates match."""
    if from_rate == to_rate or samples.size == 0:
        return samples
    return np.asarray(soxr.resample(samples, from_rate, to_rate, quality="HQ"), dtype=np.float32)


def normalize_loudness(samples: FloatAudio) -> FloatAudio:
    """Bring speech to ``TARGET_RMS_DBFS`` without letting peaks pass ``PEAK_CEILING``."""
    if samples.size == 0:
        return samples
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    peak = float(np.max(np.abs(samples)))
    if rms < 1e-6 or peak < 1e-6:
        return samples
    gain = min(10 ** (TARGET_RMS_DBFS / 20) / rms, PEAK_CEILING / peak)
    return (samples * gain).astype(np.float32)


def silence(seconds: float, sample_rate: int) -> FloatAudio:
    return np.zeros(round(seconds * sample_rate), dtype=np.float32)


def encode(samples: FloatAudio, sample_rate: int, fmt: AudioFormat) -> bytes:
    """Encode mono float32 audio as the requested format, never silently another."""
    clipped = np.clip(samples, -1.0, 1.0)
    if fmt is AudioFormat.OGG_OPUS:
        return encode_ogg_opus(resample(clipped, sample_rate, OPUS_SAMPLE_RATE))
    buffer = io.BytesIO()
    if fmt is AudioFormat.MP3:
        sf.write(
            buffer,
            resample(clipped, sample_rate, MP3_SAMPLE_RATE),
            MP3_SAMPLE_RATE,
            format="MP3",
            subtype="MPEG_LAYER_III",
        )
    else:
        sf.write(buffer, clipped, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def encode_ogg_opus(samples_48k: FloatAudio) -> bytes:
    """48 kHz mono float32 → Ogg Opus bytes, identical for identical samples.

    libopus through PyAV, not libsndfile: several times faster for speech, which is
    most of what the service adds to the model's time. FFmpeg's Ogg muxer writes the
    pre-skip and trims the last page's granule to the input, so the decoded length
    equals the input length. Its bitexact flag makes the stream serial fixed
    (``serial_offset``; otherwise random per file) and leaves FFmpeg's version out of
    the tags, so the bytes depend only on the samples.
    """
    import av  # FFmpeg is heavy to load: the CLI and bots that never encode skip it

    buffer = io.BytesIO()
    options = {"fflags": "+bitexact", "serial_offset": str(OGG_SERIAL)}
    with av.open(buffer, "w", format="ogg", container_options=options) as container:
        stream = container.add_stream(
            "libopus",
            rate=OPUS_SAMPLE_RATE,
            options={"application": OPUS_APPLICATION, "frame_duration": OPUS_FRAME_MS},
        )
        stream.layout = "mono"
        stream.bit_rate = OPUS_BITRATE
        container.start_encoding()  # headers even for empty input, as libsndfile did
        if samples_48k.size:
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples_48k, dtype=np.float32).reshape(1, -1),
                format="flt",
                layout="mono",
            )
            frame.sample_rate = OPUS_SAMPLE_RATE
            frame.pts = 0
            container.mux(stream.encode(frame))  # PyAV cuts it into 20 ms frames
        container.mux(stream.encode(None))
    return buffer.getvalue()


def decode(data: bytes) -> tuple[FloatAudio, int]:
    """Any supported container/codec → (mono float32, the rate the decoder reports)."""
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return np.ascontiguousarray(samples.mean(axis=1), dtype=np.float32), int(rate)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        pass
    return _decode_with_av(data)


def _decode_with_av(data: bytes) -> tuple[FloatAudio, int]:
    import av  # FFmpeg is heavy to load; only m4a/webm clips need it

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise ReferenceAudioError("the file has no audio track")
            resampler = av.AudioResampler(format="flt", layout="mono")
            parts: list[Any] = []
            rate = 0
            for frame in container.decode(stream):
                if not isinstance(frame, av.AudioFrame):
                    continue
                for out in resampler.resample(frame):
                    rate = out.sample_rate
                    parts.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        raise ReferenceAudioError(
            "the voice clip could not be decoded; send OGG, MP3, WAV, FLAC, M4A or WebM audio"
        ) from exc
    if not parts or rate <= 0:
        raise ReferenceAudioError("the voice clip contains no audio")
    return np.concatenate(parts).astype(np.float32), rate


def trim_silence(samples: FloatAudio, sample_rate: int) -> FloatAudio:
    """Drop leading and trailing 20 ms frames that count as silence; all of them if all are.

    A frame is silence when it is ``SILENCE_BELOW_PEAK_DB`` below the clip's loudest
    frame or under ``SILENCE_FLOOR_DBFS``.
    """
    frame = max(1, sample_rate // 50)  # 20 ms
    count = samples.size // frame
    if count == 0:
        return samples[:0]
    frames = samples[: count * frame].reshape(count, frame)
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    threshold = max(
        float(rms.max()) * 10 ** (-SILENCE_BELOW_PEAK_DB / 20), 10 ** (SILENCE_FLOOR_DBFS / 20)
    )
    loud = np.nonzero(rms > threshold)[0]
    if loud.size == 0:
        return samples[:0]
    return samples[loud[0] * frame : (loud[-1] + 1) * frame]


def fingerprint(samples: FloatAudio) -> str:
    """sha256 of normalised samples: one id per recording across lossless containers."""
    return hashlib.sha256(np.ascontiguousarray(samples, dtype="<f4").tobytes()).hexdigest()


def prepare_reference(data: bytes, sample_rate: int) -> ReferenceClip:
    """Validate and normalise a reference clip for an engine running at ``sample_rate``."""
    if len(data) > MAX_REFERENCE_BYTES:
        raise PayloadTooLarge(
            f"the voice clip is {len(data) / 1e6:.1f} MB; the limit is "
            f"{MAX_REFERENCE_BYTES / 1e6:.0f} MB"
        )
    if not data:
        raise ReferenceAudioError("the voice clip is empty")
    samples, rate = decode(data)
    duration_s = samples.size / rate
    if duration_s > MAX_REFERENCE_S * 2:  # generous before trimming; exact check below
        raise ReferenceAudioError(_length_message(duration_s))
    samples = trim_silence(resample(samples, rate, sample_rate), sample_rate)
    if samples.size == 0:
        raise ReferenceAudioError("the voice clip is silent; record a few seconds of speech")
    duration_s = samples.size / sample_rate
    if not MIN_REFERENCE_S <= duration_s <= MAX_REFERENCE_S:
        raise ReferenceAudioError(_length_message(duration_s))
    samples = normalize_loudness(samples)
    return ReferenceClip(samples=samples, sample_rate=sample_rate, sha256=fingerprint(samples))


def encode_reference(reference: ReferenceClip) -> bytes:
    """A prepared clip as lossless FLAC: what the bots store and send to the service."""
    buffer = io.BytesIO()
    sf.write(buffer, reference.samples, reference.sample_rate, format="FLAC", subtype="PCM_24")
    return buffer.getvalue()


def _length_message(duration_s: float) -> str:
    return (
        f"the voice clip has {duration_s:.1f} s of speech; it needs between "
        f"{MIN_REFERENCE_S:g} and {MAX_REFERENCE_S:g} seconds"
    )


def duration_of(samples: FloatAudio, sample_rate: int) -> float:
    return samples.size / sample_rate if sample_rate else 0.0
