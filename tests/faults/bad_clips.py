"""Voice clips a hostile or broken client might send, made in memory.

Each is real data for the real decoders: files cut short, lying headers, containers with
the wrong thing inside, and decode bombs (a few hundred KB that decode to gigabytes).
Ogg pages are written by hand where a lie is the point (a granule claiming hours, Opus
packets that decode to silence), with real CRCs, so the decoders read them as valid.
"""

from __future__ import annotations

import functools
import io
import struct

import numpy as np
import soundfile as sf

from tests.tts_service.audio_samples import clip, encode_sf, tone
from tts_service import audio

OPUS_RATE = 48_000
PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02"


# --- Ogg pages -------------------------------------------------------------------------------


def _crc_table() -> list[int]:
    table = []
    for index in range(256):
        value = index << 24
        for _ in range(8):
            value = ((value << 1) ^ 0x04C11DB7) if value & 0x80000000 else value << 1
        table.append(value & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def ogg_crc(data: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, no reflection, initial value 0)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) ^ byte) & 0xFF]
    return crc


def ogg_page(serial: int, sequence: int, granule: int, flags: int, packets: list[bytes]) -> bytes:
    """One Ogg page holding whole ``packets``, with its CRC."""
    lacing = bytearray()
    for packet in packets:
        lacing += b"\xff" * (len(packet) // 255) + bytes([len(packet) % 255])
    assert len(lacing) <= 255, "too many packets for one page"
    header = b"OggS\x00" + bytes([flags]) + struct.pack("<qIII", granule, serial, sequence, 0)
    page = bytearray(header + bytes([len(lacing)]) + lacing + b"".join(packets))
    page[22:26] = struct.pack("<I", ogg_crc(bytes(page)))
    return bytes(page)


def ogg_pages(data: bytes) -> list[bytes]:
    pages = []
    at = 0
    while at < len(data):
        assert data[at : at + 4] == b"OggS", f"no page at {at}"
        count = data[at + 26]
        size = 27 + count + sum(data[at + 27 : at + 27 + count])
        pages.append(data[at : at + size])
        at += size
    return pages


def with_granule(page: bytes, granule: int) -> bytes:
    changed = bytearray(page)
    changed[6:14] = struct.pack("<q", granule)
    changed[22:26] = b"\0\0\0\0"
    changed[22:26] = struct.pack("<I", ogg_crc(bytes(changed)))
    return bytes(changed)


def _opus_headers(serial: int) -> list[bytes]:
    head = b"OpusHead" + bytes([1, 1]) + struct.pack("<HIhB", 312, OPUS_RATE, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", 6) + b"faults" + struct.pack("<I", 0)
    return [ogg_page(serial, 0, 0, 0x02, [head]), ogg_page(serial, 1, 0, 0x00, [tags])]


# --- ordinary clips, good and bad -----------------------------------------------------------


def speech_like(seconds: float = 3.0) -> bytes:
    """A good clip (WAV of a voiced-like tone): the positive control."""
    return clip("wav", seconds)


def real_opus(seconds: float = 3.0) -> bytes:
    """OGG/Opus of a voiced-like tone, by the service's own encoder."""
    return audio.encode_ogg_opus(tone(seconds, OPUS_RATE), audio.disclosure(None))


def truncated_ogg() -> bytes:
    """A real OGG/Opus cut in the middle of a page."""
    data = real_opus(3.0)
    return data[: len(data) // 2 + 17]


def ogg_head_only() -> bytes:
    """Only the first page of an OGG/Opus stream: headers, no audio."""
    return ogg_pages(real_opus(1.0))[0]


def corrupt_bytes(size: int = 6_000) -> bytes:
    return np.random.default_rng(13).integers(0, 256, size, dtype=np.uint8).tobytes()


def ogg_magic_then_garbage() -> bytes:
    return b"OggS" + corrupt_bytes(4_000)


def text_file() -> bytes:
    return b"This is a shopping list, not audio.\nmilk\neggs\n" * 20


def png_image() -> bytes:
    return PNG_HEADER + corrupt_bytes(500)


def silent_wav(seconds: float = 5.0) -> bytes:
    return encode_sf(np.zeros(round(seconds * 16_000), np.float32), 16_000, "WAV", "PCM_16")


def float_wav(value: float, seconds: float = 3.0) -> bytes:
    """IEEE-float WAV whose samples are all ``value`` (NaN, inf…)."""
    samples = np.full(round(seconds * 16_000), value, dtype=np.float32)
    return encode_sf(samples, 16_000, "WAV", "FLOAT")


def wav_at_rate(rate: int, seconds: float) -> bytes:
    """A tone at an odd sample rate (1 Hz, 384 kHz…), honestly labelled."""
    samples = tone(seconds, rate) if rate >= 1_000 else np.full(round(seconds * rate), 0.3)
    return encode_sf(np.asarray(samples, np.float32), rate, "WAV", "PCM_16")


def wav_claiming_gigabytes() -> bytes:
    """Two seconds of WAV whose RIFF and data chunk sizes say almost 4 GB."""
    data = bytearray(speech_like(2.0))
    data[4:8] = struct.pack("<I", 0xFFFFFFF0)
    at = data.find(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", 0xFFFFFFE0)
    return bytes(data)


def opus_claiming_hours(hours: float = 3.0) -> bytes:
    """A few hundred bytes of OGG/Opus (one second) whose last granule claims ``hours``."""
    pages = ogg_pages(
        audio.encode_ogg_opus(np.zeros(OPUS_RATE, np.float32), audio.disclosure(None))
    )
    pages[-1] = with_granule(pages[-1], round(hours * 3600 * OPUS_RATE))
    return b"".join(pages)


def header_then_garbage(kind: str) -> bytes:
    """The real first bytes of a ``kind`` file (``flac``, ``mp3``, ``wav``), then noise."""
    real = clip(kind, 1.0)
    return real[:64] + corrupt_bytes(3_000)


# --- decode bombs ----------------------------------------------------------------------------


@functools.cache  # ~4 s to encode: made once per session
def flac_8ch_silence(minutes: float = 30.0, rate: int = 48_000) -> bytes:
    """Eight channels of digital silence at 48 kHz: ~0.7 MB that decode to ~2.8 GB of float32."""
    buffer = io.BytesIO()
    block = np.zeros((rate * 10, 8), dtype=np.int16)
    with sf.SoundFile(buffer, "w", rate, 8, format="FLAC", subtype="PCM_16") as out:
        for _ in range(round(minutes * 6)):
            out.write(block)
    return buffer.getvalue()


def opus_hours_of_dtx(hours: float = 2.0) -> bytes:
    """A real OGG/Opus stream of ``hours``: every packet is two empty 60 ms SILK frames
    (discontinuous transmission), so each 120 ms costs 3 bytes; ~90 KB per hour, which
    decodes to 48 kHz float32 (~0.7 GB per hour) before any length check."""
    serial = 0x0FA17
    packet = bytes([(3 << 3) | 3, 0x02])  # TOC: SILK NB 60 ms, code 3; 2 frames of 0 bytes
    samples_per_packet = OPUS_RATE * 120 // 1000
    count = round(hours * 3600 / 0.12)
    pages = _opus_headers(serial)
    granule = 0
    for start in range(0, count, 255):
        in_page = min(255, count - start)
        granule += in_page * samples_per_packet
        last = start + in_page >= count
        pages.append(ogg_page(serial, len(pages), granule, 0x04 if last else 0, [packet] * in_page))
    return b"".join(pages)
