"""The contract between the bots and the TTS service.

Both sides import this module, so it holds pydantic models and constants only:
no numpy, no torch, no I/O. Ranges live in ``PARAM_RANGES`` so that every edge
(HTTP validation, chat ``key=value`` parsing, Discord's slash-command ranges)
quotes the same numbers to the user.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, Base64Bytes, BaseModel, ConfigDict, Field

MAX_TEXT_CHARS = 1000
MAX_REFERENCE_BYTES = 10 * 1024 * 1024  # a minute of WAV at 48 kHz/16 bit is ~5.8 MB


class AudioFormat(StrEnum):
    """Output encodings. ``ogg_opus`` is what Telegram voice notes and Discord want."""

    OGG_OPUS = "ogg_opus"
    WAV = "wav"
    MP3 = "mp3"


CONTENT_TYPES: dict[AudioFormat, str] = {
    AudioFormat.OGG_OPUS: "audio/ogg",
    AudioFormat.WAV: "audio/wav",
    AudioFormat.MP3: "audio/mpeg",
}

FILE_EXTENSIONS: dict[AudioFormat, str] = {
    AudioFormat.OGG_OPUS: "ogg",
    AudioFormat.WAV: "wav",
    AudioFormat.MP3: "mp3",
}


@dataclass(frozen=True)
class ParamRange:
    """Inclusive bounds of one numeric parameter, with its default."""

    minimum: float
    maximum: float | None
    default: float

    def describe(self) -> str:
        """Human wording of the range, used in every validation message."""
        if self.maximum is None:
            return f"a whole number ≥ {self.minimum:g}"
        return f"a number from {self.minimum:g} to {self.maximum:g}"


PARAM_RANGES: dict[str, ParamRange] = {
    "exaggeration": ParamRange(0.25, 2.0, 0.5),
    "temperature": ParamRange(0.05, 5.0, 0.8),
    "cfg_weight": ParamRange(0.0, 1.0, 0.5),
    "seed": ParamRange(0, None, 0),
}

# The ``language`` option: a two-letter code, which the engine's ``languages`` must list.
LANGUAGE_OPTION = "language"
LANGUAGE_PATTERN = r"^[a-z]{2}$"

# Names of the languages engines list (Chatterbox Multilingual's 23), for choosers.
LANGUAGE_NAMES = {
    "ar": "Arabic", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "ms": "Malay", "nl": "Dutch",
    "no": "Norwegian", "pl": "Polish", "pt": "Portuguese", "ru": "Russian", "sv": "Swedish",
    "sw": "Swahili", "tr": "Turkish", "zh": "Chinese",
}  # fmt: skip

_WHITESPACE = re.compile(r"\s+")
# C0 and C1 controls and DEL, except the whitespace ones (tab, line breaks), which collapse.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")


def normalize_text(text: str) -> str:
    """Unicode NFC, C0/C1 control characters removed (tab and line breaks are whitespace),
    every run of whitespace collapsed to one space, trimmed.

    Equivalent inputs must produce one cache key and one synthesis, so this is
    the single definition of "the same text". No engine ever sees a control character
    (Piper refuses a NUL outright).
    """
    visible = _CONTROL.sub("", unicodedata.normalize("NFC", text))
    return _WHITESPACE.sub(" ", visible).strip()


def _checked_text(text: str) -> str:
    normalized = normalize_text(text)
    if not normalized and text.strip():
        raise ValueError("text has nothing to say in it (only control characters)")
    if not normalized:
        raise ValueError("text is empty; give 1 to 1000 characters to speak")
    if len(normalized) > MAX_TEXT_CHARS:
        raise ValueError(
            f"text is {len(normalized)} characters long; the limit is {MAX_TEXT_CHARS}"
        )
    return normalized


def _range_field(name: str) -> Any:
    # Strict: lax mode would read true as 1, 2.0 as seed 2 and "0.5" as a number, so a
    # client's type bug would pass as a different request. Floats still take JSON integers.
    bounds = PARAM_RANGES[name]
    if name == "seed":
        return Field(
            default=0, ge=0, strict=True, description="0 = unseeded; any other value is repeatable"
        )
    return Field(default=bounds.default, ge=bounds.minimum, le=bounds.maximum, strict=True)


SpokenText = Annotated[str, AfterValidator(_checked_text)]


class TTSParams(BaseModel):
    """What to say and how. Text is normalised on validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: SpokenText
    exaggeration: float = _range_field("exaggeration")
    temperature: float = _range_field("temperature")
    cfg_weight: float = _range_field("cfg_weight")
    seed: int = _range_field("seed")
    language: str | None = Field(
        default=None,
        pattern=LANGUAGE_PATTERN,
        description="ISO 639-1 code of the text's language (fr, de, zh…), for an engine that "
        "lists it in /v1/engine's languages; unset: the engine's own language",
    )
    format: AudioFormat = AudioFormat.OGG_OPUS


class TTSRequest(TTSParams):
    """Body of ``POST /v1/tts``: the parameters plus an optional reference clip."""

    reference_audio: Base64Bytes | None = Field(
        default=None,
        description="A short clip (1-60 s) of the voice to clone, base64-encoded. "
        "OGG/Opus, OGG/Vorbis, MP3, WAV, FLAC, M4A/AAC and WebM are accepted.",
    )


class ErrorCode(StrEnum):
    """The stable ``error.code`` values of the service's answers: the service's error tree
    sets them and the bots' client reads them, so both ends name a failure alike."""

    INTERNAL_ERROR = "internal_error"
    INVALID_REQUEST = "invalid_request"
    INVALID_REFERENCE_AUDIO = "invalid_reference_audio"
    VOICE_CLONING_UNAVAILABLE = "voice_cloning_unavailable"
    NOTHING_TO_SAY = "nothing_to_say"
    UNAUTHORIZED = "unauthorized"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    BUSY = "busy"
    ENGINE_NOT_READY = "engine_not_ready"


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every non-2xx answer of the service carries exactly this body."""

    error: ErrorDetail


class EngineInfo(BaseModel):
    """What ``GET /v1/engine`` returns; also the engine's identity in cache keys."""

    name: str
    model_version: str
    sample_rate: int
    can_clone_voice: bool
    honoured_params: list[str]
    max_chunk_chars: int
    languages: list[str] = Field(
        default_factory=list,
        description="What the language parameter may be (ISO 639-1 codes); empty: the "
        "engine speaks one language and takes no language parameter",
    )
    # Defaults to False so an answer from an older service (or a bot's remembered copy)
    # still parses and never claims a watermark it did not promise.
    watermarked: bool = Field(
        default=False,
        description="Every answer carries the model's own inaudible watermark (Chatterbox's "
        "Perth); the engine refuses to load rather than speak without it. Piper has none. "
        "Every answer, watermarked or not, is tagged as AI-generated in its file metadata.",
    )


# Response headers of a successful synthesis.
HEADER_DURATION = "X-Audio-Duration"
HEADER_SYNTHESIS_SECONDS = "X-Synthesis-Seconds"
HEADER_ENGINE = "X-Engine"
HEADER_ENGINE_VERSION = "X-Engine-Version"


def describe_validation_error(loc: tuple[int | str, ...], pydantic_msg: str) -> str:
    """One sentence naming the field and its allowed values, from a pydantic error."""
    field = str(loc[-1]) if loc else "body"
    if field in PARAM_RANGES:
        return f"{field} must be {PARAM_RANGES[field].describe()}"
    if field == "format":
        allowed = ", ".join(f.value for f in AudioFormat)
        return f"format must be one of: {allowed}"
    if field == "text" and pydantic_msg.startswith("Value error, "):
        return pydantic_msg.removeprefix("Value error, ")
    if field == LANGUAGE_OPTION:
        return "language must be a two-letter language code, such as fr or de"
    if field == "reference_audio":
        return "reference_audio must be base64-encoded audio bytes"
    return f"{field}: {pydantic_msg}"


def language_problem(language: str | None, engine: EngineInfo) -> str | None:
    """Why ``engine`` cannot speak ``language`` (one sentence), or None when it can.

    Both the service and the bots ask, so a chat user and an HTTP client hear the same."""
    if language is None or language in engine.languages:
        return None
    if not engine.languages:
        return (
            f"this service's engine ({engine.name}) speaks one language and takes no "
            "language option; the multilingual Chatterbox model does"
        )
    return f"language {language} is not one of this engine's: {', '.join(engine.languages)}"


def ignored_params(given: Iterable[str], engine: EngineInfo) -> list[str]:
    """The options among ``given`` that make no difference on ``engine`` (its
    ``honoured_params`` leave them out), in the order given."""
    honoured = {*engine.honoured_params, LANGUAGE_OPTION, "text", "format"}
    return [name for name in given if name not in honoured]
