"""Real OGG/Opus bytes for tests that need *some* audio, each tagged so entries stay distinct.

``AudioCache.put`` refuses bytes that are not audio of their format, so test entries start
with the first OGG page (the ``OpusHead`` identification header) of a stream made by the
service's own encoder, followed by a per-test tag: ``ogg(b"made-1")``.
"""

from __future__ import annotations

from tts_service import audio
from tts_service.schema import AudioFormat

_OGG_PAGE_HEADER = 27  # bytes before the segment table (RFC 3533)


def _first_ogg_page(data: bytes) -> bytes:
    segments = data[26]
    body = sum(data[_OGG_PAGE_HEADER : _OGG_PAGE_HEADER + segments])
    return data[: _OGG_PAGE_HEADER + segments + body]


OGG_HEAD_PAGE = _first_ogg_page(
    audio.encode(
        audio.silence(0.1, audio.OPUS_SAMPLE_RATE), audio.OPUS_SAMPLE_RATE, AudioFormat.OGG_OPUS
    )
)
assert OGG_HEAD_PAGE[_OGG_PAGE_HEADER + OGG_HEAD_PAGE[26] :].startswith(b"OpusHead")


def ogg(tag: bytes = b"") -> bytes:
    """The OpusHead page of a real OGG/Opus stream, then ``tag``."""
    return OGG_HEAD_PAGE + tag
