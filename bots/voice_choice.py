"""Which voice a request speaks in: a clip sent with it (its sender's own, with consent),
the user's saved voice, or the built-in one.

A clip sent now is downloaded only once the engine is known to clone, and used only with
its sender's consent to that recording (``bots.consent``); a saved voice is named by its id
alone until a cache miss needs its clip.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Literal

from bots import clips
from bots.chosen_voice import (
    CLONING_OFF,
    SAVED_VOICE_EXPIRED,
    SAVED_VOICE_UNREACHABLE,
    ChosenVoice,
    PreparedVoice,
    VoiceSource,
    prepare_voice,
)
from bots.clips import ClipLimits
from bots.consent import PendingConsents
from bots.errors import ConsentNeeded
from bots.requests import SayRequest
from storage.consents import ConsentStore
from storage.errors import StorageUnavailable
from storage.voices import VoiceStore
from tts_service.schema import EngineInfo


@dataclass(frozen=True)
class VoiceChooser:
    voices: VoiceStore
    consents: ConsentStore
    pending: PendingConsents
    clip_limits: ClipLimits

    async def choose(
        self,
        request: SayRequest,
        engine: EngineInfo,
        saved_voice_id: str | None,
        not_saved: str | None = None,
    ) -> ChosenVoice:
        """The voice to speak in (a saved one without its clip yet); ``not_saved``: why the
        user's saved voice may not speak here (the caption says so)."""
        if request.clip is not None:
            voice = await prepare_voice(await clips.download(request.clip, self.clip_limits))
            await self.consented(request.platform, request.user_id, voice, "say", request)
            return await self.attached(request, voice)
        if saved_voice_id is None:
            return ChosenVoice.built_in(not_saved)
        if not engine.can_clone_voice:
            return ChosenVoice.built_in(CLONING_OFF)
        return ChosenVoice(VoiceSource.SAVED, saved_voice_id)

    async def attached(self, request: SayRequest, voice: PreparedVoice) -> ChosenVoice:
        """A clip sent for this request. Not the clip is noted, only its id, so "forget my
        voice" finds the audio cached with it."""
        await self.voices.note_attached(request.platform, request.user_id, voice.voice_id)
        return ChosenVoice(VoiceSource.ATTACHED, voice.voice_id, voice.clip)

    async def consented(
        self,
        platform: str,
        user_id: str,
        voice: PreparedVoice,
        action: Literal["say", "save"],
        request: SayRequest | None = None,
    ) -> None:
        """Go on only with the sender's consent to this recording; else keep the clip (in
        memory) for their answer and raise ``ConsentNeeded``."""
        if not await self.consents.given(platform, user_id, voice.voice_id):
            pending = self.pending.add(platform, user_id, action, voice, request)
            raise ConsentNeeded(pending.id)

    async def with_saved_clip(self, request: SayRequest, voice: ChosenVoice) -> ChosenVoice:
        """The saved voice with its clip, or the built-in voice saying why not."""
        assert voice.voice_id is not None
        found = await self.voices.lookup_clip(voice.voice_id, request.platform, request.user_id)
        if found.clip is not None:
            return replace(voice, clip=found.clip)
        if found.unavailable:
            # Storage blinked after the pointer was read: the voice is fine, keep the pointer.
            return ChosenVoice.built_in(SAVED_VOICE_UNREACHABLE)
        # If storage fails now, the next request finds the dangling pointer and tries again.
        with contextlib.suppress(StorageUnavailable):
            await self.voices.clear_default(request.platform, request.user_id)
        return ChosenVoice.built_in(SAVED_VOICE_EXPIRED)
