"""The flow's first steps: everything that can refuse a ``/say`` before any real work.

    blocked user (the operator's list: one sentence, nothing else happens, nothing is read)
    → the community's settings (one read; none in a private chat or DM), the saved voice
      looked up in the same round trip
    → text and options: blocked words, the defaults filled in, ranges, the longest text
    → a clip: may it be cloned here (bot, community), is it the sender's own, its declared
      metadata — all before any download
    → rate limit (the community's rate where it is lower)

The result, ``Admitted``, carries what the later steps need: the parameters, the community's
settings (for its quota) and the saved voice, or why it may not speak here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bots import clips
from bots.clips import ClipLimits
from bots.community import Community
from bots.consent import check_own_clip
from bots.errors import CloningDisabled, RateLimited
from bots.requests import SayRequest
from storage.chat_settings import ChatSettings
from storage.ratelimit import RateLimiter
from storage.voices import VoiceStore
from tts_service.schema import TTSParams


@dataclass(frozen=True)
class Admitted:
    params: TTSParams
    chat: ChatSettings
    saved_voice_id: str | None = None
    voice_note: str | None = None  # why the user's saved voice may not speak here


async def _none() -> None:
    return None


@dataclass(frozen=True)
class Gate:
    community: Community
    limiter: RateLimiter
    voices: VoiceStore
    clip_limits: ClipLimits

    async def admit(self, request: SayRequest) -> Admitted:
        """The checks above, in that order; raises the first refusal."""
        self.community.operator.check_user(request.platform, request.user_id)
        wants_saved = request.clip is None and request.use_saved_voice
        # Independent reads, one round trip: the saved voice does not depend on the settings.
        chat, saved = await asyncio.gather(
            self.community.settings_of(request.platform, request.server_id),
            self.voices.default_voice(request.platform, request.user_id)
            if wants_saved
            else _none(),
        )
        params = self.check(request, chat)
        limit = await self.limiter.check(
            request.platform, request.user_id, self.community.rate_rule(request.platform, chat)
        )
        if not limit.allowed:
            raise RateLimited(limit.retry_after_s)
        off = self.community.saved_voice_off(chat) if saved is not None else None
        if off is not None:
            return Admitted(params, chat, voice_note=off)
        return Admitted(params, chat, saved)

    def check(self, request: SayRequest, chat: ChatSettings) -> TTSParams:
        """What can be refused without asking anyone but the community's settings."""
        params = self.community.check(request, chat)
        if request.clip is not None:
            check_own_clip(request.clip, request.user_id)
            clips.check_metadata(request.clip, self.clip_limits)
        return params

    async def readmit(self, request: SayRequest) -> Admitted:
        """A request whose clip waited for consent, checked again under the rules of now
        (they may have changed meanwhile); its rate limit was spent when it first came."""
        self.community.operator.check_user(request.platform, request.user_id)
        chat = await self.community.settings_of(request.platform, request.server_id)
        return Admitted(self.community.check(request, chat), chat)

    async def may_save_voice(self, platform: str, user_id: str, server_id: str | None) -> None:
        """``/voice`` with a clip: refused where the user is blocked or cloning (or keeping
        voices) is off, before anything is downloaded."""
        self.community.operator.check_user(platform, user_id)
        chat = await self.community.settings_of(platform, server_id)
        self.community.check_cloning(chat)
        if not chat.saved_voices:
            raise CloningDisabled("here", "saved voices")
