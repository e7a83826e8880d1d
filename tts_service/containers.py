"""Is this really audio in the format that was asked for? By its first bytes, without decoding.

A 200 from the TTS service (or from a proxy or captive portal in front of it) is only
audio if its bytes are the container of the requested format: the bots check each answer
before sending or caching it, and the cache refuses anything else. Pure and cheap: a few
bytes are read, nothing is decoded.
"""

from __future__ import annotations

from tts_service.schema import AudioFormat

# The first OGG page of an Opus stream carries the identification header (RFC 7845).
_OGG_FIRST_PAGE_HEADER = 27
_MP3_FRAME_SYNC = 0xFFE0


def _is_ogg_opus(data: bytes) -> bool:
    if len(data) < _OGG_FIRST_PAGE_HEADER or not data.startswith(b"OggS"):
        return False
    segments = data[26]
    body_start = _OGG_FIRST_PAGE_HEADER + segments
    return data[body_start : body_start + 8] == b"OpusHead"


def _is_wav(data: bytes) -> bool:
    return len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE"


def _is_mp3(data: bytes) -> bool:
    if data.startswith(b"ID3"):
        return len(data) > 10
    return len(data) >= 4 and int.from_bytes(data[:2], "big") & _MP3_FRAME_SYNC == _MP3_FRAME_SYNC


_CHECKS = {
    AudioFormat.OGG_OPUS: _is_ogg_opus,
    AudioFormat.WAV: _is_wav,
    AudioFormat.MP3: _is_mp3,
}


def is_container_of(fmt: AudioFormat, data: bytes) -> bool:
    """Whether ``data`` starts as ``fmt``'s container does (OGG with an Opus head,
    RIFF/WAVE, MP3 frames or an ID3 tag)."""
    return _CHECKS[fmt](data)


def problem_with(fmt: AudioFormat, data: bytes, duration_s: float) -> str | None:
    """Why ``data`` is not a playable answer in ``fmt`` lasting ``duration_s``; None if it is."""
    if not is_container_of(fmt, data):
        return f"the bytes are not {fmt.value} audio"
    if not duration_s > 0:  # also refuses NaN
        return "it holds no audio (duration 0)"
    return None
