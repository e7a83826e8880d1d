"""The bots' error tree. Each platform turns it into one friendly sentence in one place.

SayError                         something the user should hear about
├── InvalidInput                 empty/over-long text, unknown or out-of-range parameter
├── RateLimited                  too many requests; carries retry_after_s
├── VoiceClipRejected            the clip is too big, too long, silent or undecodable
├── VoiceCloningUnavailable      the running engine cannot clone (Piper)
├── NoSavedVoice                 /voice forget or a saved voice that has expired
└── TTSFailure                   the TTS service could not help
    ├── TTSBusy                  503/429 after the retries; carries retry_after_s
    ├── TTSTimeout               no answer in time (a cold GPU that never warmed)
    └── TTSUnavailable           unreachable, 5xx, or misconfigured (401)
"""

from __future__ import annotations


class SayError(Exception):
    """Base of every error a user may be told about; ``code`` is stable for metrics."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(SayError):
    code = "invalid_input"


class RateLimited(SayError):
    code = "rate_limited"

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limited for {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class VoiceClipRejected(SayError):
    code = "voice_clip_rejected"


class VoiceCloningUnavailable(SayError):
    code = "voice_cloning_unavailable"


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


class TTSUnavailable(TTSFailure):
    code = "tts_unavailable"
