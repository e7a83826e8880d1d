"""Audio as a Discord voice message: the IS_VOICE_MESSAGE flag plus a waveform and duration.

discord.py 2.x cannot send one (``discord.File`` has no waveform or duration, and
``Webhook.send`` sets no such flag), so the followup is assembled here from
discord.py's own pieces: ``handle_message_parameters`` builds the multipart body,
the interaction webhook adapter sends it (with its 429 handling). Discord honours
the waveform and duration only on a part labelled as audio, so the part gets
``audio/ogg`` instead of discord.py's ``application/octet-stream``.
"""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import discord
import numpy as np
from discord.http import handle_message_parameters
from discord.webhook.async_ import async_context

from tts_service import audio

WAVEFORM_MAX_POINTS = 256  # Discord's limit
WAVEFORM_STEP_S = 0.1  # clients sample a recording at most every 100 ms
WAVEFORM_FLOOR_DBFS = -60.0  # drawn as silence


def voice_metadata(ogg: bytes) -> tuple[str, float]:
    """(base64 waveform, duration in seconds) of an audio file.

    One byte per point, at most 256 points and one per 100 ms: each point is the
    loudness of its stretch, WAVEFORM_FLOOR_DBFS…0 dBFS mapped onto 0…255 (absolute,
    so silence stays flat instead of being scaled up to the codec's noise).
    """
    samples, rate = audio.decode(ogg)
    duration_s = samples.size / rate if rate else 0.0
    points = max(1, min(WAVEFORM_MAX_POINTS, int(duration_s / WAVEFORM_STEP_S)))
    if samples.size < points:
        samples = np.pad(samples, (0, points - samples.size))
    chunks = np.array_split(samples.astype(np.float64), points)
    rms = np.array([np.sqrt(np.mean(np.square(chunk))) for chunk in chunks])
    dbfs = 20 * np.log10(np.maximum(rms, 1e-9))
    level = np.clip(1 - dbfs / WAVEFORM_FLOOR_DBFS, 0, 1)
    waveform = np.round(level * 255).astype(np.uint8).tobytes()
    return base64.b64encode(waveform).decode("ascii"), round(duration_s, 2)


class VoiceMessageFile(discord.File):
    """A ``discord.File`` whose attachment entry carries the voice-message metadata."""

    def __init__(self, data: bytes, filename: str, *, waveform: str, duration_s: float) -> None:
        super().__init__(io.BytesIO(data), filename)
        self.waveform = waveform
        self.duration_s = duration_s

    def to_dict(self, index: int) -> dict[str, Any]:
        entry = super().to_dict(index)
        entry.update(waveform=self.waveform, duration_secs=self.duration_s)
        return entry


async def send_voice_message(
    followup: discord.Webhook, ogg: bytes, *, filename: str = "say.ogg"
) -> None:
    """Post ``ogg`` (OGG/Opus) as a voice message; a voice message carries no text."""
    if followup.token is None:
        raise ValueError("the followup webhook has no token")
    waveform, duration_s = await asyncio.to_thread(voice_metadata, ogg)
    file = VoiceMessageFile(ogg, filename, waveform=waveform, duration_s=duration_s)
    with handle_message_parameters(file=file, flags=discord.MessageFlags(voice=True)) as params:
        for part in params.multipart or []:
            if str(part.get("name", "")).startswith("files["):
                part["content_type"] = "audio/ogg"
        await async_context.get().execute_webhook(
            followup.id,
            followup.token,
            session=followup.session,
            proxy=followup.proxy,
            proxy_auth=followup.proxy_auth,
            payload=params.payload,
            multipart=params.multipart,
            files=params.files,
            wait=True,
        )
