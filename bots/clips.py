"""Voice clips users send, before they are downloaded: one protocol, one source per platform.

A ``ClipSource`` says what the platform declared about a clip (size, duration, content
type, who sent it) and can fetch its bytes. The flow (``bots.say``) decides when: the
declared metadata is checked first, then the rate limit and whether the engine can clone
at all, and only then is anything downloaded, within a size and a time budget. The
implementations live beside their adapters (``bots.telegram_bot.clips``,
``bots.discord_bot.attachments``), as python-telegram-bot keeps ``HTTPXRequest`` beside
its ``BaseRequest``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from bots.errors import ClipDownloadFailed, VoiceClipRejected
from tts_service.schema import MAX_REFERENCE_BYTES

# Platforms label some audio-only recordings by their container: WebM, MP4 (M4A) and OGG
# often arrive as video, and the service decodes their audio track.
AUDIO_CONTAINERS = frozenset({"application/ogg", "video/ogg", "video/webm", "video/mp4"})
FORMATS = "OGG, MP3, WAV, FLAC, M4A or WebM"


@dataclass(frozen=True)
class ClipLimits:
    """What a clip may be: refused by its declared metadata, then by what arrives."""

    max_bytes: int = MAX_REFERENCE_BYTES
    max_seconds: float = 60.0
    download_timeout_s: float = 15.0  # a clip host that hangs must not hold the request


class ClipSource(Protocol):
    """A clip a user sent with a message or command, not downloaded yet."""

    @property
    def declared_bytes(self) -> int | None:
        """The size the platform declared, if any."""
        ...

    @property
    def declared_seconds(self) -> float | None:
        """The duration the platform (that is, the sender) declared, if any."""
        ...

    @property
    def content_type(self) -> str | None:
        """The declared MIME type, if any."""
        ...

    @property
    def sender_id(self) -> str:
        """The platform's id of whoever sent the clip (not always who asks to use it)."""
        ...

    @property
    def forwarded(self) -> bool:
        """Passed on from someone else's message: not the sender's own recording."""
        ...

    async def read(self, max_bytes: int, timeout_s: float) -> bytes:
        """The clip's bytes. Raises ``ClipDownloadFailed`` when the platform or the clip's
        host fails, ``VoiceClipRejected`` when more than ``max_bytes`` arrive; the caller
        bounds the time."""
        ...


def check_metadata(clip: ClipSource, limits: ClipLimits) -> None:
    """``VoiceClipRejected`` unless the declared size, type and duration are acceptable."""
    size = clip.declared_bytes
    if size is not None and size > limits.max_bytes:
        raise VoiceClipRejected(
            f"it is {size / 1e6:.1f} MB; the limit is {limits.max_bytes / 1e6:.0f} MB"
        )
    if clip.content_type is not None:
        kind = clip.content_type.split(";")[0].strip().lower()
        if not (kind.startswith("audio/") or kind in AUDIO_CONTAINERS):
            raise VoiceClipRejected(
                f"it is not an audio file ({kind or 'unknown type'}); attach {FORMATS} audio"
            )
    seconds = clip.declared_seconds
    if seconds is not None and seconds > limits.max_seconds:
        raise VoiceClipRejected(
            f"it is {seconds:.0f} s long; the limit is {limits.max_seconds:.0f} s"
        )


async def download(clip: ClipSource, limits: ClipLimits) -> bytes:
    """The clip's bytes, within the size and time budgets (metadata checked first)."""
    check_metadata(clip, limits)
    try:
        async with asyncio.timeout(limits.download_timeout_s):
            data = await clip.read(limits.max_bytes, limits.download_timeout_s)
    except TimeoutError as exc:
        raise ClipDownloadFailed(
            f"it did not arrive within {limits.download_timeout_s:g} s"
        ) from exc
    check_size(len(data), limits.max_bytes)
    return data


def check_size(size: int, max_bytes: int) -> None:
    """Refuse what turns out bigger than the limit, whatever was declared before."""
    if size > max_bytes:
        raise VoiceClipRejected(f"it is over the {max_bytes / 1e6:.0f} MB limit")


@dataclass(frozen=True)
class BytesClip:
    """A clip already in memory (an upload the web page received, a test's clip): nothing
    is declared but its size, and reading it costs nothing."""

    data: bytes
    sender_id: str
    content_type: str | None = None
    declared_seconds: float | None = None
    forwarded: bool = False

    @property
    def declared_bytes(self) -> int:
        return len(self.data)

    async def read(self, max_bytes: int, timeout_s: float) -> bytes:
        check_size(len(self.data), max_bytes)
        return self.data
