"""The bots' error tree. Each platform turns it into one friendly sentence in one place.

SayError                         something the user should hear about
├── InvalidInput                 empty/over-long text, unknown or out-of-range parameter
├── UserBlocked                  the operator blocked this user (BLOCKED_USERS)
├── TextBlocked                  the text has a blocked word (the operator's or the community's)
├── CloningDisabled              cloning is off: on this bot, or in this community
├── QuotaExceeded                a GPU-time limit is spent; carries its scope and reset time
├── InvalidSetting               a /settings value the bot cannot take
├── NotAnAdmin                   /settings changed by someone who does not run the community
├── RateLimited                  too many requests; carries retry_after_s
├── VoiceClipRejected            the clip is too big, too long, silent or undecodable
├── ClipDownloadFailed           the platform or the clip's host failed or hung
├── NotYourClip                  someone else's (or a forwarded) voice note: never cloned
├── ConsentNeeded                not an error: the sender must confirm the clip first
├── ConsentLapsed                a consent button pressed after its clip was dropped
├── VoiceCloningUnavailable      the running engine cannot clone (Piper)
├── NoSavedVoice                 /voice forget or a saved voice that has expired
└── TTSFailure                   the TTS service could not help
    ├── TTSBusy                  503/429 after the retries; carries retry_after_s
    ├── TTSTimeout               no answer in time (a cold GPU that never warmed)
    ├── TTSServerError           the service's own 500: a bug there, not an outage
    └── TTSUnavailable           unreachable, 5xx, or a 200 that is not audio
        └── TTSMisconfigured     the service refused our token (401): TTS_API_TOKEN
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Literal

from storage.errors import (
    SingleFlightFailed,
    SingleFlightTimeout,
    StorageError,
    StorageUnavailable,
    VoiceTooLarge,
)
from tts_service.schema import ErrorCode


class SayError(Exception):
    """Base of every error a user may be told about; ``code`` is stable for metrics."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(SayError):
    code = "invalid_input"


class UserBlocked(SayError):
    code = "user_blocked"


Where = Literal["bot", "here"]  # the operator's rule (every chat) or the community's own


def _on(where: Where) -> str:
    return "on this bot" if where == "bot" else "here"


class TextBlocked(SayError):
    code = "text_blocked"

    def __init__(self, where: Where) -> None:
        super().__init__(f"the text has a word that is blocked {_on(where)}")
        self.where = where


class CloningDisabled(SayError):
    """Voice cloning (or, in a community, keeping saved voices) is off."""

    code = "cloning_disabled"

    def __init__(
        self, where: Where, what: Literal["voice cloning", "saved voices"] = "voice cloning"
    ) -> None:
        super().__init__(f"{what} is off {_on(where)}")
        self.where = where
        self.what = what


QuotaScope = Literal["user", "server", "budget"]


class QuotaExceeded(SayError):
    """A GPU-time limit is spent until ``resets_at``: the user's or the community's for the
    day, or the bot's monthly budget. Only cached audio (and the stand-in voice) answers."""

    code = "quota_exceeded"

    def __init__(self, scope: QuotaScope, resets_at: dt.datetime) -> None:
        super().__init__(f"the {scope} GPU-time limit is spent until {resets_at.isoformat()}")
        self.scope = scope
        self.resets_at = resets_at


class InvalidSetting(SayError):
    code = "invalid_setting"


class NotAnAdmin(SayError):
    code = "not_an_admin"


class RateLimited(SayError):
    code = "rate_limited"

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limited for {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class VoiceClipRejected(SayError):
    code = "voice_clip_rejected"


class ClipDownloadFailed(SayError):
    code = "clip_download_failed"


class NotYourClip(SayError):
    code = "not_your_clip"


class ConsentNeeded(SayError):
    """The clip waits (``bots.consent.PendingConsents``) for its sender to confirm it."""

    code = "consent_needed"

    def __init__(self, pending_id: str) -> None:
        super().__init__("the sender has not confirmed this voice yet")
        self.pending_id = pending_id


class ConsentLapsed(SayError):
    code = "consent_lapsed"


class VoiceCloningUnavailable(SayError):
    """The bot side of the service's error of the same name (one code, ``ErrorCode``)."""

    code = ErrorCode.VOICE_CLONING_UNAVAILABLE


class NoSavedVoice(SayError):
    code = "no_saved_voice"


class StorageProblem(SayError):
    code = "storage_unavailable"


class TTSFailure(SayError):
    code = "tts_failure"


class TTSBusy(TTSFailure):
    code = "tts_busy"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TTSTimeout(TTSFailure):
    code = "tts_timeout"


class TTSServerError(TTSFailure):
    code = "tts_server_error"


class TTSUnavailable(TTSFailure):
    code = "tts_unavailable"


class TTSMisconfigured(TTSUnavailable):
    """Not going to fix itself: start-up does not wait for it, and it is logged once."""

    code = "tts_misconfigured"


def as_say_error(error: StorageError) -> SayError:
    """Storage failures that could not degrade, in the bots' terms."""
    if isinstance(error, VoiceTooLarge):
        return VoiceClipRejected("it is too large to keep; send a shorter clip")
    if isinstance(error, SingleFlightTimeout):
        return TTSTimeout("waited too long for the same request to finish")
    if isinstance(error, SingleFlightFailed):
        return TTSUnavailable(f"the shared synthesis failed ({error.code})")
    if isinstance(error, StorageUnavailable):
        return StorageProblem("storage is unavailable right now")
    return StorageProblem(str(error))


@contextlib.contextmanager
def storage_errors_as_say_errors() -> Iterator[None]:
    try:
        yield
    except StorageError as exc:
        raise as_say_error(exc) from exc


def is_transient(error: BaseException) -> bool:
    """Whether the TTS service may well succeed if asked again soon (busy, slow, away),
    as opposed to a refusal of this request or a misconfiguration."""
    return isinstance(error, TTSBusy | TTSTimeout | TTSUnavailable) and not isinstance(
        error, TTSMisconfigured
    )
