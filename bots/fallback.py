"""A stand-in voice for when the GPU is away (``TTS_FALLBACK=local``, an operator's choice).

Users of GPU-backed bots mostly read "try again later" while the GPU is cold or down. With
the fallback on, a request the TTS service has not answered within ``after_s`` (or could
not answer at all: unreachable, busy past its deadline, timed out) is answered by the
bundled Piper voice, served by the bot process itself. Its audio is cached under Piper's
own identity, never under the GPU engine's key, so the GPU's answer replaces it as soon as
the service is back; the GPU's synthesis goes on in the background and lands in the cache.

A request that clones a clip sent with it is never faked: it gets the failure. Someone
whose saved voice would have spoken hears the stand-in voice, and is told once (per
process) that their own voice will be back. A request past a GPU-time limit
(``bots.quotas``) that the cache cannot answer hears the stand-in voice too (it runs on the
bot's CPU), captioned with when the usual voice is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from bots.chosen_voice import ChosenVoice, VoiceSource
from bots.engine_identity import EngineIdentity
from bots.errors import QuotaExceeded, is_transient
from bots.quotas import quota_note
from bots.requests import SayRequest
from bots.synthesis import Made, Synthesizer, audio_key
from bots.tts_client import TTSClient
from tts_service.schema import TTSParams

T = TypeVar("T")

STAND_IN_NOTE = "the usual voice is back soon"
OWN_VOICE_NOTE = "your own voice is back as soon as the GPU is"


@dataclass(frozen=True)
class StandIn:
    """The primary did not answer in time, or cannot: the stand-in voice answers instead."""

    note: str | None = None  # why, where the caption should say more than "back soon"


@dataclass
class Fallback:
    tts: TTSClient  # the local Piper service's client
    engine: EngineIdentity  # Piper's identity: its answers' cache keys name it
    after_s: float = 20.0  # a primary answer not here by then is not waited for
    _told: set[tuple[str, str]] = field(default_factory=set)

    async def within_budget(self, primary: Awaitable[T]) -> T | StandIn:
        """``primary``'s answer if it comes within ``after_s``; ``StandIn`` if it does not,
        fails in a way that may pass, or is past a GPU-time limit. Other errors propagate."""
        task = asyncio.ensure_future(primary)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.after_s)
        except BaseException:
            task.cancel()
            raise
        if not done:
            task.cancel()  # its shielded single-flight synthesis goes on, into the cache
            return StandIn()
        error = task.exception()
        if error is None:
            return task.result()
        if is_transient(error):
            return StandIn()
        if isinstance(error, QuotaExceeded):
            return StandIn(quota_note(error))
        raise error

    async def stand_in(
        self,
        params: TTSParams,
        request: SayRequest,
        had_saved_voice: bool,
        synthesizer: Synthesizer,
        why: StandIn,
    ) -> tuple[ChosenVoice, Made]:
        """The bundled voice's answer, from the cache or made, under its own engine's keys."""
        note = why.note or self._note(request.platform, request.user_id, had_saved_voice)
        voice = ChosenVoice(VoiceSource.STAND_IN, note=note)
        engine = await self.engine.current()
        key = audio_key(params, None, engine)
        entry = await synthesizer.cache.get(key)
        if entry is not None:
            return voice, Made(entry, True, 0.0)
        return voice, await synthesizer.make(key, params, voice, self.tts, self.engine)

    def _note(self, platform: str, user_id: str, had_saved_voice: bool) -> str:
        """That this is a stand-in, and (once) that the user's own voice comes back."""
        if had_saved_voice and (platform, user_id) not in self._told:
            self._told.add((platform, user_id))
            return OWN_VOICE_NOTE
        return STAND_IN_NOTE
