"""An answer's Opus packets for a voice channel: taken as they are, or refused before playing."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from bots.discord_bot.voice.errors import NotPlayable
from bots.discord_bot.voice.opus_source import OpusPackets, opus_packets, packet_duration_us
from tts_service import audio
from tts_service.schema import AudioFormat

TONE = (0.3 * np.sin(np.arange(48_000) * 2 * np.pi * 220 / 48_000)).astype(np.float32)


def ogg_opus(frame_ms: str) -> bytes:
    """One second of a tone, Ogg/Opus in ``frame_ms`` frames (PyAV's libopus)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48_000, options={"frame_duration": frame_ms})
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(TONE[np.newaxis, :], format="flt", layout="mono")
        frame.sample_rate = 48_000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def test_an_answer_gives_its_packets_unchanged_and_in_order() -> None:
    answer = audio.encode(TONE, 48_000, AudioFormat.OGG_OPUS)
    with av.open(io.BytesIO(answer), format="ogg") as container:
        demuxed = [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]
    source = OpusPackets.of_ogg(answer)
    assert source.is_opus()
    read = []
    while packet := source.read():
        read.append(packet)
    assert read == demuxed and len(read) >= 50  # a second: fifty 20 ms frames (+ pre-skip)
    assert source.read() == b""  # stays at its end


@pytest.mark.parametrize("frame_ms", ["10", "60"])
def test_frames_other_than_20_ms_are_refused(frame_ms: str) -> None:
    with pytest.raises(NotPlayable, match="other than 20 ms"):
        opus_packets(ogg_opus(frame_ms))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"OggS not really",
        audio.encode(TONE, 48_000, AudioFormat.WAV),
        audio.encode(TONE, 48_000, AudioFormat.MP3),
    ],
)
def test_what_is_not_ogg_opus_is_refused(data: bytes) -> None:
    with pytest.raises(NotPlayable):
        opus_packets(data)


@pytest.mark.parametrize(
    ("toc", "duration_us"),
    [
        (bytes([(1 << 3) | 0]), 20_000),  # SILK, 20 ms, one frame
        (bytes([(15 << 3) | 0]), 20_000),  # hybrid, 20 ms
        (bytes([(31 << 3) | 0]), 20_000),  # CELT, 20 ms
        (bytes([(29 << 3) | 1]), 10_000),  # CELT 5 ms, two frames
        (bytes([(3 << 3) | 3, 2]), 120_000),  # SILK 60 ms, code 3 with two frames
    ],
)
def test_packet_duration_from_the_toc(toc: bytes, duration_us: int) -> None:
    assert packet_duration_us(toc) == duration_us
