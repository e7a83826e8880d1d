"""Which voice a request speaks in, and how a clip a user sent becomes one.

A clip is decoded, checked and normalised once, by the bot, at one sample rate: its voice
id (the sha256 of the normalised audio) is then the same whichever container or rate the
user's phone recorded in, and it names the voice in cache keys. A saved voice is known by
its id alone until an answer must really be synthesised: a cache hit never loads the clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import anyio

from bots.errors import VoiceClipRejected
from tts_service import audio
from tts_service.errors import PayloadTooLarge, ReferenceAudioError

REFERENCE_SAMPLE_RATE = 24_000


class VoiceSource(StrEnum):
    BUILT_IN = "built-in voice"
    SAVED = "your saved voice"
    ATTACHED = "the voice you sent"
    STAND_IN = "stand-in voice"  # the fallback's, while the GPU is away


# Why a request did not speak in the user's saved voice (shown in the reply's caption).
CLONING_OFF = "voice cloning is off right now"
SAVED_VOICE_UNREACHABLE = "your saved voice could not be loaded just now"
SAVED_VOICE_EXPIRED = "your saved voice had expired"


@dataclass(frozen=True)
class PreparedVoice:
    voice_id: str
    clip: bytes  # FLAC of the normalised clip


@dataclass(frozen=True)
class ChosenVoice:
    """The voice of one request: ``voice_id`` is None for the built-in voice; ``clip`` is
    None for a saved voice until a miss loads it."""

    source: VoiceSource
    voice_id: str | None = None
    clip: bytes | None = None
    note: str | None = None

    @classmethod
    def built_in(cls, note: str | None = None) -> ChosenVoice:
        return cls(VoiceSource.BUILT_IN, note=note)


async def prepare_voice(clip: bytes) -> PreparedVoice:
    """Decode, check and normalise a clip off the event loop; ``VoiceClipRejected`` if unusable."""
    try:
        reference = await anyio.to_thread.run_sync(
            audio.prepare_reference, clip, REFERENCE_SAMPLE_RATE
        )
    except (ReferenceAudioError, PayloadTooLarge) as exc:
        raise VoiceClipRejected(exc.message) from exc
    flac = await anyio.to_thread.run_sync(audio.encode_reference, reference)
    return PreparedVoice(voice_id=reference.sha256, clip=flac)
