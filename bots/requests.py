"""What a ``/say`` is and what it answers, as every platform and the flow see them.

``parse_params`` turns a request's text and options into the service's contract
(``TTSParams``), or one ``InvalidInput`` sentence naming the option and its range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from bots.chosen_voice import VoiceSource
from bots.clips import ClipSource
from bots.errors import InvalidInput
from storage.consents import Consent
from storage.voices import ForgetReport
from tts_service.schema import (
    LANGUAGE_OPTION,
    PARAM_RANGES,
    AudioFormat,
    EngineInfo,
    TTSParams,
    describe_validation_error,
    ignored_params,
    language_problem,
)

OPTIONS = (*PARAM_RANGES, LANGUAGE_OPTION)
OptionValue = float | int | str


@dataclass(frozen=True)
class SayRequest:
    """One ``/say``, as any platform delivers it."""

    platform: str
    user_id: str
    chat_id: str  # where to answer: a Telegram chat, a Discord channel
    text: str
    params: Mapping[str, OptionValue] = field(default_factory=dict)
    clip: ClipSource | None = None  # a clip sent with this request: clone it this once
    use_saved_voice: bool = True
    format: AudioFormat = AudioFormat.OGG_OPUS
    # The community whose settings and quota apply (``bots.community``): a Telegram group's
    # chat id, a Discord server's guild id; None in a private chat or a DM.
    server_id: str | None = None
    # Who sends the answer, when it keeps files it was sent before (Telegram: "telegram:<bot
    # id>"): its id for a cached answer comes back with it (``SayResult.held_as``).
    sender: str | None = None


@dataclass(frozen=True)
class SayResult:
    audio: bytes
    format: AudioFormat
    duration_s: float
    voice: VoiceSource
    from_cache: bool
    engine: str
    note: str | None = None  # e.g. why a saved voice was not used
    audio_key: str | None = None  # the cache's key for the answer (None: a stand-in's)
    held_as: str | None = None  # the request's sender holds these bytes under this id


@dataclass(frozen=True)
class SavedVoice:
    voice_id: str
    usable_now: bool  # False: the engine cannot clone right now; it is used once it can


def parse_params(request: SayRequest) -> TTSParams:
    """The request's text and options as the service's contract, or ``InvalidInput``."""
    unknown = sorted(set(request.params) - set(OPTIONS))
    if unknown:
        allowed = ", ".join(f"{name} ({r.describe()})" for name, r in PARAM_RANGES.items())
        allowed += f", {LANGUAGE_OPTION} (a two-letter code such as fr)"
        raise InvalidInput(f"unknown option {', '.join(unknown)}; the options are {allowed}")
    try:
        return TTSParams.model_validate(
            {**request.params, "text": request.text, "format": request.format}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(describe_validation_error(tuple(first["loc"]), first["msg"])) from exc


def options_note(request: SayRequest, params: TTSParams, engine: EngineInfo) -> str | None:
    """``InvalidInput`` when the engine cannot speak the requested language; else what to
    tell the user about options they set that make no difference on this engine."""
    problem = language_problem(params.language, engine)
    if problem is not None:
        raise InvalidInput(problem)
    ignored = ignored_params(request.params, engine)
    if not ignored:
        return None
    verb = "has" if len(ignored) == 1 else "have"
    return f"{' and '.join(ignored)} {verb} no effect on this engine"


@dataclass(frozen=True)
class Erased:
    """What "forget everything of mine" removed."""

    voices: ForgetReport  # clips, the default, and every cached answer made with them
    consents: int  # consent records
    usage_counters: int  # per-user usage counts (the anonymous daily totals stay)
    waiting_clips: int  # clips that were waiting for consent

    @property
    def anything_removed(self) -> bool:
        return bool(
            self.voices.anything_removed
            or self.consents
            or self.usage_counters
            or self.waiting_clips
        )


@dataclass(frozen=True)
class VoiceStatus:
    """What is kept of a user's voice, for ``/voice``."""

    default_voice_id: str | None  # None: the built-in voice
    consents: list[Consent]  # oldest first
