"""Audio in and out of the service, all in memory.

Output: loudness and silence here; the encoders (OGG/Opus, MP3, WAV, each tagged as
AI-generated speech) in ``tts_service.encoding``, re-exported here. Input: reference clips
in whatever a phone or a chat app produces, decoded to mono float32 at the
engine's rate: libsndfile first (OGG/Opus, OGG/Vorbis, WAV, FLAC), PyAV
(FFmpeg inside its wheel) for MP3, m4a/AAC and WebM. A user's clip is decoded within
``clip_limits``: metadata checked first, then a counted budget of frames, block by block.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from tts_service.clip_limits import (
    DECODE_SLOTS,
    FrameBudget,
    check_sample_rate,
    check_stream,
    length_message,
)
from tts_service.clip_limits import MAX_REFERENCE_S as MAX_REFERENCE_S  # re-exported
from tts_service.clip_limits import MIN_REFERENCE_S as MIN_REFERENCE_S
from tts_service.encoding import AI_DISCLOSURE as AI_DISCLOSURE  # re-exported: one module
from tts_service.encoding import MP3_DISCLOSURE_FRAME as MP3_DISCLOSURE_FRAME  # for callers
from tts_service.encoding import OGG_SERIAL as OGG_SERIAL
from tts_service.encoding import OPUS_SAMPLE_RATE as OPUS_SAMPLE_RATE
from tts_service.encoding import disclosure as disclosure
from tts_service.encoding import encode as encode
from tts_service.encoding import encode_ogg_opus as encode_ogg_opus
from tts_service.engines.base import FloatAudio, ReferenceClip
from tts_service.errors import PayloadTooLarge, ReferenceAudioError
from tts_service.schema import MAX_REFERENCE_BYTES

TARGET_RMS_DBFS = -20.0  # a comfortable speech level; peaks are kept below PEAK_CEILING
PEAK_CEILING = 10 ** (-1.0 / 20)  # -1 dBFS leaves room for the lossy encoders' overshoot
# Trimming is relative to the clip's loudest frame, so a quietly recorded voice is
# trimmed like a loud one (loudness is normalised only after trimming); frames below
# the absolute floor are silence whatever the clip: digital zeros, dither, faint hiss.
SILENCE_BELOW_PEAK_DB = 35.0
SILENCE_FLOOR_DBFS = -60.0
BLOCK_FRAMES = 16_384  # decoded per libsndfile read: 512 KB even at 8 channels
_SF_UNKNOWN_FRAMES = 2**63 - 1  # SF_COUNT_MAX: libsndfile cannot tell the length


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


def decode(data: bytes) -> tuple[FloatAudio, int]:
    """Trusted audio (the service's own output) → (mono float32, the rate the decoder reports).

    No limits: a user's clip goes through ``decode_reference`` instead.
    """
    return _decode(data, checked=False, to_rate=None)


def decode_reference(data: bytes, sample_rate: int) -> FloatAudio:
    """A user's clip → mono float32 at ``sample_rate``, within ``clip_limits``.

    The container's metadata is checked before anything is decoded; then at most
    ``MAX_DECODED_S`` of audio is decoded, counted as it comes (the metadata may lie),
    downmixed and resampled a block at a time, so a clip that claims or holds hours
    costs no more memory than one that is just over the limit.
    """
    try:
        samples, _ = _decode(data, checked=True, to_rate=sample_rate)
    except MemoryError as exc:  # a last resort: the budget should leave nothing this large
        raise ReferenceAudioError(
            "the voice clip is too large to decode; send a shorter clip"
        ) from exc
    return samples


def _decode(data: bytes, *, checked: bool, to_rate: int | None) -> tuple[FloatAudio, int]:
    try:
        return _decode_with_libsndfile(data, _MonoAudio(checked, to_rate))
    except (_NotForLibsndfile, sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        pass
    return _decode_with_av(data, _MonoAudio(checked, to_rate))


class _MonoAudio:
    """Decoded blocks as they come, downmixed to mono by the decoder, kept as float32.

    ``checked``: the first block's sample rate must be a voice clip's and a
    ``FrameBudget`` counts each block before it is kept. ``to_rate``: each block is
    resampled on the way in (soxr's stream gives the same samples as one whole-clip
    call), so what is kept is at the engine's rate whatever the clip's.
    """

    def __init__(self, checked: bool, to_rate: int | None) -> None:
        self.checked = checked
        self.to_rate = to_rate
        self.rate = 0  # of the decoded blocks; 0 until the first
        self._budget: FrameBudget | None = None
        self._resampler: Any = None
        self._parts: list[FloatAudio] = []

    def start(self, rate: int) -> None:
        if self.checked:
            check_sample_rate(rate)
            self._budget = FrameBudget(rate)
        if self.to_rate is not None and self.to_rate != rate:
            self._resampler = soxr.ResampleStream(rate, self.to_rate, 1, "float32", "HQ")
        self.rate = rate

    def add(self, block: npt.NDArray[Any]) -> None:
        if self._budget is not None:
            self._budget.take(block.size)
        if self._resampler is not None:
            block = self._resampler.resample_chunk(block)
        self._parts.append(np.asarray(block, dtype=np.float32))

    def result(self) -> tuple[FloatAudio, int]:
        """(all the samples, their rate): ``to_rate`` when one was asked for."""
        if self._resampler is not None:
            self._parts.append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        samples = np.concatenate(self._parts) if self._parts else np.zeros(0, np.float32)
        return samples.astype(np.float32, copy=False), self.to_rate or self.rate


class _NotForLibsndfile(Exception):
    """A file libsndfile opens but should not decode: FFmpeg decodes it instead."""


def _decode_with_libsndfile(data: bytes, mono: _MonoAudio) -> tuple[FloatAudio, int]:
    with sf.SoundFile(io.BytesIO(data)) as file:
        if file.format == "MP3":
            # libsndfile 1.2's MP3 decoder garbles audio read a block at a time
            # (libmpg123 "part2_3_length too large", python-soundfile#402); FFmpeg's does not.
            raise _NotForLibsndfile(file.format)
        if mono.checked:
            known = 0 <= file.frames < _SF_UNKNOWN_FRAMES
            declared_s = file.frames / file.samplerate if known and file.samplerate else None
            check_stream(file.channels, file.samplerate, declared_s)
        mono.start(file.samplerate)
        block = np.empty((BLOCK_FRAMES, file.channels), dtype=np.float32)
        while len(read := file.read(BLOCK_FRAMES, dtype="float32", always_2d=True, out=block)):
            mono.add(np.ascontiguousarray(read.mean(axis=1), dtype=np.float32))
    return mono.result()


def _decode_with_av(data: bytes, mono: _MonoAudio) -> tuple[FloatAudio, int]:
    import av  # FFmpeg is heavy to load; only MP3, m4a and webm clips need it

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = next(iter(container.streams.audio), None)
            if stream is None:
                raise ReferenceAudioError("the file has no audio track")
            if mono.checked:
                codec = stream.codec_context
                check_stream(codec.channels, codec.sample_rate, _declared_s(container, stream))
            resampler = av.AudioResampler(format="flt", layout="mono")
            for frame in container.decode(stream):
                if isinstance(frame, av.AudioFrame):
                    _keep_frames(resampler.resample(frame), mono)
            _keep_frames(resampler.resample(None), mono)
    except av.FFmpegError as exc:
        raise ReferenceAudioError(
            "the voice clip could not be decoded; send OGG, MP3, WAV, FLAC, M4A or WebM audio"
        ) from exc
    if not mono.rate:
        raise ReferenceAudioError("the voice clip contains no audio")
    return mono.result()


def _keep_frames(frames: list[Any], mono: _MonoAudio) -> None:
    """FFmpeg's mono float frames, the first one's rate taken as the clip's."""
    for frame in frames:
        if not mono.rate:
            mono.start(frame.sample_rate)
        mono.add(frame.to_ndarray().reshape(-1))


def _declared_s(container: Any, stream: Any) -> float | None:
    """The length FFmpeg read from the container; None when it has none (a live WebM)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE: microseconds
    return None


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
    """Validate and normalise a reference clip for an engine running at ``sample_rate``.

    Blocking; the decode waits for one of ``DECODE_SLOTS`` (see ``clip_limits``).
    """
    if len(data) > MAX_REFERENCE_BYTES:
        raise PayloadTooLarge(
            f"the voice clip is {len(data) / 1e6:.1f} MB; the limit is "
            f"{MAX_REFERENCE_BYTES / 1e6:.0f} MB"
        )
    if not data:
        raise ReferenceAudioError("the voice clip is empty")
    with DECODE_SLOTS.hold():
        samples = decode_reference(data, sample_rate)
    samples = trim_silence(samples, sample_rate)
    if samples.size == 0:
        raise ReferenceAudioError("the voice clip is silent; record a few seconds of speech")
    duration_s = samples.size / sample_rate
    if not MIN_REFERENCE_S <= duration_s <= MAX_REFERENCE_S:
        raise ReferenceAudioError(length_message(duration_s))
    samples = normalize_loudness(samples)
    return ReferenceClip(samples=samples, sample_rate=sample_rate, sha256=fingerprint(samples))


def encode_reference(reference: ReferenceClip) -> bytes:
    """A prepared clip as lossless FLAC: what the bots store and send to the service."""
    buffer = io.BytesIO()
    sf.write(buffer, reference.samples, reference.sample_rate, format="FLAC", subtype="PCM_24")
    return buffer.getvalue()


def duration_of(samples: FloatAudio, sample_rate: int) -> float:
    return samples.size / sample_rate if sample_rate else 0.0
