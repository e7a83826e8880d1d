"""Decode bombs: small files that hold or claim far more audio than a voice clip, made here.

Each one is written by the real encoders (libsndfile, PyAV's libopus and AAC); where a
bomb is a lie, one header field is then rewritten the way a crafted upload would be,
with its checksum fixed so the libraries read it as a valid file.
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction

import av
import numpy as np
import soundfile as sf

from tests.tts_service.audio_samples import encode_av, encode_sf, tone

OPUS_RATE = 48_000
OPUS_PACKET_FRAMES = 5_760  # 120 ms, libopus's longest frame: the fewest bytes per second


def flac_of_silence(seconds: float, rate: int = 48_000, channels: int = 8) -> bytes:
    """Digital silence as 16-bit FLAC: a few bytes a frame, whatever the channel count."""
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", rate, channels, "PCM_16", format="FLAC") as out:
        block = np.zeros((rate * 10, channels), dtype=np.int16)
        left = round(seconds * rate)
        while left > 0:
            out.write(block[: min(left, len(block))])
            left -= len(block)
    return buffer.getvalue()


def without_sample_count(flac: bytes) -> bytes:
    """The same FLAC with STREAMINFO's total sample count 0: "unknown", as a stream writes it."""
    data = bytearray(flac)
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0, "STREAMINFO must come first"
    # STREAMINFO starts at byte 8; its 36-bit sample count at bit 108 (bytes 21..25 here),
    # right after rate (20 bits), channels (3) and bits per sample (5).
    fields = int.from_bytes(data[21:26], "big")
    data[21:26] = (fields & ~((1 << 36) - 1)).to_bytes(5, "big")
    data[26:42] = bytes(16)  # an MD5 of zeros means "not computed"
    return bytes(data)


def wav_of_tone(seconds: float, rate: int, channels: int = 1) -> bytes:
    samples = tone(seconds, rate)
    return encode_sf(np.repeat(samples[:, None], channels, axis=1), rate, "WAV", "PCM_16")


def wav_claiming(data_bytes: int, payload: bytes, rate: int = 16_000) -> bytes:
    """A PCM16 mono WAV whose RIFF and data chunk sizes claim ``data_bytes``; ``payload`` follows."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_bytes)
    riff_size = min(0xFFFF_FFFF, 4 + len(chunks) + data_bytes)
    return b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + chunks + payload


def opus_of_silence(seconds: float, container: str = "ogg", **options: str) -> bytes:
    """``seconds`` of Opus silence: one silent 120 ms libopus packet, muxed again and again.

    ~14 bytes a packet, so an hour is about half a megabyte of Ogg. ``options`` go to
    the muxer (``live="1"`` makes a WebM with no duration, as a browser records one).
    """
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = OPUS_RATE
    encoder.layout = "mono"
    encoder.format = "flt"
    encoder.options = {"frame_duration": "120", "application": "audio"}
    encoder.open()
    packets: list[bytes] = []
    while len(packets) < 4:  # past the encoder's start-up, its packets are all alike
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, OPUS_PACKET_FRAMES), np.float32), format="flt", layout="mono"
        )
        frame.sample_rate = OPUS_RATE
        packets += [bytes(packet) for packet in encoder.encode(frame)]
    silent = packets[-1]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container, container_options=options) as out:
        stream = out.add_stream("libopus", rate=OPUS_RATE)
        stream.layout = "mono"
        stream.codec_context.extradata = encoder.extradata
        stream.time_base = Fraction(1, OPUS_RATE)
        out.start_encoding()
        for index in range(round(seconds * OPUS_RATE / OPUS_PACKET_FRAMES)):
            packet = av.Packet(silent)
            packet.stream = stream
            packet.pts = packet.dts = index * OPUS_PACKET_FRAMES
            packet.duration = OPUS_PACKET_FRAMES
            packet.time_base = Fraction(1, OPUS_RATE)
            out.mux(packet)
    return buffer.getvalue()


def with_last_granule(ogg: bytes, granule: int) -> bytes:
    """The Ogg file with its last page's granule position (its claimed end) set to ``granule``."""
    last = 0
    offset = 0
    while offset < len(ogg):
        assert ogg[offset : offset + 4] == b"OggS", f"no Ogg page at byte {offset}"
        segments = ogg[offset + 26]
        body = offset + 27 + segments
        last, offset = offset, body + sum(ogg[offset + 27 : body])
    page = bytearray(ogg[last:])
    page[6:14] = struct.pack("<q", granule)
    page[22:26] = bytes(4)  # the CRC is computed with its own field zeroed
    page[22:26] = struct.pack("<I", _ogg_crc(bytes(page)))
    return ogg[:last] + bytes(page)


def _ogg_crc(data: bytes) -> int:
    """Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial 0, no final xor."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x8000_0000 else crc << 1
            crc &= 0xFFFF_FFFF
    return crc


def m4a_cut_short(seconds: float = 30.0, keep: float = 0.9) -> bytes:
    """An AAC m4a cut off before its index (the ``moov`` box the muxer writes last)."""
    data = encode_av(tone(seconds, 44_100), 44_100, "ipod", "aac")
    return data[: round(len(data) * keep)]
