"""Voice clips attached to a command: refused by their metadata first, then downloaded."""

from __future__ import annotations

import discord

from bots.errors import VoiceClipRejected
from bots.settings import BotSettings

# Discord labels a file by its container; audio-only WebM, MP4 (M4A) and OGG recordings
# often come labelled as video, and the service decodes their audio track.
AUDIO_CONTAINERS = frozenset({"application/ogg", "video/ogg", "video/webm", "video/mp4"})
FORMATS = "OGG, MP3, WAV, FLAC, M4A or WebM"


def check_clip(attachment: discord.Attachment, settings: BotSettings) -> None:
    """``VoiceClipRejected`` unless size, type and (if known) duration are acceptable."""
    limit = settings.max_voice_clip_bytes
    if attachment.size > limit:
        raise VoiceClipRejected(
            f"it is {attachment.size / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB"
        )
    kind = (attachment.content_type or "").split(";")[0].strip().lower()
    if not (kind.startswith("audio/") or kind in AUDIO_CONTAINERS):
        raise VoiceClipRejected(
            f"it is not an audio file ({kind or 'unknown type'}); attach {FORMATS} audio"
        )
    duration_s = attachment.duration  # known for voice messages only
    if duration_s is not None and duration_s > settings.max_voice_clip_seconds:
        raise VoiceClipRejected(
            f"it is {duration_s:.0f} s long; the limit is {settings.max_voice_clip_seconds:.0f} s"
        )


async def download_clip(attachment: discord.Attachment, settings: BotSettings) -> bytes:
    """The clip's bytes from Discord's CDN; nothing is fetched unless ``check_clip`` passes."""
    check_clip(attachment, settings)
    try:
        data = await attachment.read()
    except discord.HTTPException as exc:
        raise VoiceClipRejected("I couldn't download it from Discord; attach it again") from exc
    if len(data) > settings.max_voice_clip_bytes:
        raise VoiceClipRejected(
            f"it is over the {settings.max_voice_clip_bytes / 1e6:.0f} MB limit"
        )
    return data
