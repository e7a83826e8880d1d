"""The TTS service's error tree. The API turns each into its HTTP status and JSON body.

TTSError                      500  a bug; never expected
├── InvalidRequest            400  bad input the schema could not catch
│   ├── ReferenceAudioError   400  the reference clip cannot be used (undecodable, too short…)
│   ├── VoiceCloningUnavailable 400  the engine has no voice cloning (Piper)
│   └── NothingToSay          422  the text has nothing speakable ("...", "-"): no audio at all
├── Unauthorized              401  missing or wrong bearer token
├── PayloadTooLarge           413  body or reference clip over the limit
├── ServiceBusy               503  the bounded in-flight limit is reached (Retry-After)
└── EngineNotReady            503  the model is still loading or failed to load (Retry-After)
"""

from __future__ import annotations

from tts_service.schema import ErrorCode


class TTSError(Exception):
    """Base of every error the service answers with; ``code`` is stable, ``str()`` is for users."""

    status_code = 500
    code: str = ErrorCode.INTERNAL_ERROR
    retry_after_s: float | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(TTSError):
    status_code = 400
    code: str = ErrorCode.INVALID_REQUEST


class ReferenceAudioError(InvalidRequest):
    code: str = ErrorCode.INVALID_REFERENCE_AUDIO


class VoiceCloningUnavailable(InvalidRequest):
    code: str = ErrorCode.VOICE_CLONING_UNAVAILABLE


class NothingToSay(InvalidRequest):
    """Valid text the engine turns into no sound at all; an empty file would look like success."""

    status_code = 422
    code: str = ErrorCode.NOTHING_TO_SAY


class Unauthorized(TTSError):
    status_code = 401
    code: str = ErrorCode.UNAUTHORIZED


class PayloadTooLarge(TTSError):
    status_code = 413
    code: str = ErrorCode.PAYLOAD_TOO_LARGE


class ServiceBusy(TTSError):
    status_code = 503
    code: str = ErrorCode.BUSY

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class EngineNotReady(ServiceBusy):
    code: str = ErrorCode.ENGINE_NOT_READY
