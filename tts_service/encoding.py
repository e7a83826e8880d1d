"""Float samples in, one file out: OGG/Opus, MP3 (PyAV: libopus, LAME) or WAV (libsndfile).

An ``Encoder`` takes the engine's samples part by part, as they are spoken (a sentence at a
time), so a synthesis can encode one sentence while the engine speaks the next
(``synthesis`` does that in a ``BackgroundEncoder``). Splitting changes nothing in the
file: soxr's stream resampler keeps its filter's state across parts (the same samples as
resampling the whole at once) and PyAV cuts what it is given into the codec's own frames,
so equal samples give equal bytes however they arrived.

Each format carries ``disclosure(engine)`` in its own metadata: OGG/Opus as the
``DESCRIPTION`` comment of its OpusTags, MP3 as an ID3v2 ``TXXX`` frame named
``MP3_DISCLOSURE_FRAME``, WAV as the ``ICMT`` of a ``LIST``/``INFO`` chunk.
"""

from __future__ import annotations

import io
import queue
import threading
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from tts_service.engines.base import FloatAudio
from tts_service.schema import AudioFormat, EngineInfo

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
MP3_BITRATE = 64_000  # CBR: clear speech in mono at 44.1 kHz
AI_DISCLOSURE = "AI-generated speech"  # how the tag in every answer's metadata begins
MP3_DISCLOSURE_FRAME = "AI generated"  # the description of its ID3v2 TXXX frame
RESAMPLE_QUALITY = "HQ"


def disclosure(engine: EngineInfo | None = None) -> str:
    """The sentence every answer carries in its file metadata: it is synthetic, and by what.

    The EU AI Act (Art. 50) asks for synthetic audio to be marked in a machine-readable
    way; the tag travels with the file wherever the bots send it. Nothing in it changes
    from one call to the next (no time, no request), so equal audio stays equal bytes.
    """
    if engine is None:
        return f"{AI_DISCLOSURE} (saybot)"
    return f"{AI_DISCLOSURE} (saybot; engine {engine.name} {engine.model_version})"


class Encoder:
    """One file being written: ``write`` mono float32 parts at ``sample_rate``, then
    ``finish`` for the bytes (or ``close`` to drop it). Not thread-safe: one writer."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.samples_written = 0  # at the input's rate: the audio's length

    def write(self, samples: FloatAudio) -> None:
        self.samples_written += samples.size
        self._write(np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False))

    def _write(self, samples: FloatAudio) -> None:
        raise NotImplementedError

    def finish(self) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        """Drop the file half-written (after a failure); idempotent."""


def open_encoder(fmt: AudioFormat, sample_rate: int, note: str) -> Encoder:
    """An encoder for exactly ``fmt``, never silently another, tagged with ``note``."""
    if fmt is AudioFormat.WAV:
        return _WavEncoder(sample_rate, note)
    return _PyAVEncoder(fmt, sample_rate, note)


class _WavEncoder(Encoder):
    """PCM16 WAV through libsndfile; the note is the ``ICMT`` of a ``LIST``/``INFO`` chunk."""

    def __init__(self, sample_rate: int, note: str) -> None:
        super().__init__(sample_rate)
        self._buffer = io.BytesIO()
        self._file = sf.SoundFile(self._buffer, "w", sample_rate, 1, "PCM_16", format="WAV")
        # Set before the audio, so the LIST chunk precedes the data chunk: parsers that
        # stop reading at the data (most do) still see it.
        self._file.comment = note

    def _write(self, samples: FloatAudio) -> None:
        self._file.write(samples)

    def finish(self) -> bytes:
        self._file.close()
        return self._buffer.getvalue()

    def close(self) -> None:
        self._file.close()


class _PyAVEncoder(Encoder):
    """OGG/Opus at 48 kHz or MP3 at 44.1 kHz through FFmpeg, resampled in a stream.

    Opus, not libsndfile's: several times faster for speech. FFmpeg's Ogg muxer writes the
    pre-skip and trims the last page's granule to the input, so the decoded length equals
    the input's; its bitexact flag fixes the stream serial (``serial_offset``; otherwise
    random per file) and leaves FFmpeg's version out of the tags, so the bytes depend only
    on the samples and the note, which goes into OpusTags as ``DESCRIPTION`` (FFmpeg's name
    for a stream's ``comment``). MP3: libsndfile's LAME writes a short comment as an ID3v1
    tag at the end; FFmpeg's muxer starts the file with an ID3v2.4 tag, where a key without
    a frame of its own becomes a ``TXXX`` frame; its Xing/LAME header carries the encoder
    delay and padding, so decoders give back the input's length.
    """

    def __init__(self, fmt: AudioFormat, sample_rate: int, note: str) -> None:
        import av  # FFmpeg is heavy to load: the CLI and bots that never encode skip it

        super().__init__(sample_rate)
        self._buffer = io.BytesIO()
        if fmt is AudioFormat.OGG_OPUS:
            self._rate = OPUS_SAMPLE_RATE
            options = {"fflags": "+bitexact", "serial_offset": str(OGG_SERIAL)}
            self._container: Any = av.open(
                self._buffer, "w", format="ogg", container_options=options
            )
            self._stream: Any = self._container.add_stream(
                "libopus",
                rate=OPUS_SAMPLE_RATE,
                options={"application": OPUS_APPLICATION, "frame_duration": OPUS_FRAME_MS},
            )
            self._stream.bit_rate = OPUS_BITRATE
            self._stream.metadata["comment"] = note
        else:
            self._rate = MP3_SAMPLE_RATE
            self._container = av.open(
                self._buffer, "w", format="mp3", container_options={"fflags": "+bitexact"}
            )
            self._container.metadata[MP3_DISCLOSURE_FRAME] = note
            self._stream = self._container.add_stream("libmp3lame", rate=MP3_SAMPLE_RATE)
            self._stream.bit_rate = MP3_BITRATE
        self._stream.layout = "mono"
        self._container.start_encoding()  # headers even for empty input
        self._resampler = (
            None
            if sample_rate == self._rate
            else soxr.ResampleStream(
                sample_rate, self._rate, 1, dtype="float32", quality=RESAMPLE_QUALITY
            )
        )
        self._pts = 0

    def _write(self, samples: FloatAudio) -> None:
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        self._encode(samples)

    def _encode(self, samples: FloatAudio) -> None:
        """One frame of any length: PyAV cuts it into the codec's (20 ms, 1152 samples)."""
        import av

        if not samples.size:
            return
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1),
            format="flt",
            layout="mono",
        )
        frame.sample_rate = self._rate
        frame.pts = self._pts
        self._pts += samples.size
        self._container.mux(self._stream.encode(frame))

    def finish(self) -> bytes:
        if self._resampler is not None:
            self._encode(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        self._container.mux(self._stream.encode(None))
        self._container.close()
        return self._buffer.getvalue()

    def close(self) -> None:
        self._container.close()


def encode(
    samples: FloatAudio, sample_rate: int, fmt: AudioFormat, *, engine: EngineInfo | None = None
) -> bytes:
    """The whole of ``samples`` as one file of ``fmt``, tagged as ``engine``'s speech."""
    return _encode_whole(samples, sample_rate, fmt, disclosure(engine))


def encode_ogg_opus(samples_48k: FloatAudio, description: str) -> bytes:
    """48 kHz mono float32 → Ogg Opus bytes with ``description`` as its note."""
    return _encode_whole(samples_48k, OPUS_SAMPLE_RATE, AudioFormat.OGG_OPUS, description)


def _encode_whole(samples: FloatAudio, sample_rate: int, fmt: AudioFormat, note: str) -> bytes:
    encoder = open_encoder(fmt, sample_rate, note)
    encoder.write(samples)
    return encoder.finish()


class BackgroundEncoder:
    """Feeds an ``Encoder`` from its own thread, so encoding one part overlaps the engine
    speaking the next: onnxruntime and torch release the GIL while they compute, and so do
    libopus, LAME and soxr. ``write`` hands a part over (waiting only when ``MAX_QUEUED``
    parts are ahead); ``finish`` waits for the last and returns the file. A failure of the
    encoder comes back at the next ``write`` or at ``finish``."""

    MAX_QUEUED = 8

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self._parts: queue.Queue[FloatAudio | None] = queue.Queue(self.MAX_QUEUED)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="saybot-encoder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (part := self._parts.get()) is not None:
            if self._error is None:  # after a failure, only drain: the writer never blocks
                try:
                    self.encoder.write(part)
                except BaseException as exc:  # re-raised in the caller's thread
                    self._error = exc

    def write(self, samples: FloatAudio) -> None:
        self._raise_failure()
        self._parts.put(samples)

    def finish(self) -> bytes:
        self._stop()
        self._raise_failure()
        return self.encoder.finish()

    def abandon(self) -> None:
        """Stop after a failure elsewhere; the half-written file is dropped."""
        self._stop()
        self.encoder.close()

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._parts.put(None)
            self._thread.join()

    def _raise_failure(self) -> None:
        if self._error is not None:
            self.encoder.close()
            raise self._error
