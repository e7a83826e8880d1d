"""What the playground's routes answer: audio with its facts, or one sentence as JSON.

The sentences are the bots' own (``bots.messages.error_text``), so a web user reads what a
Telegram or Discord user reads for the same failure; the status says what kind it was.
A clip waiting for its sender's confirmation is not an error: 202 with the consent wording.
"""

from __future__ import annotations

import math
from urllib.parse import quote

from fastapi.responses import JSONResponse, Response

from bots.errors import (
    ConsentNeeded,
    NotYourClip,
    QuotaExceeded,
    RateLimited,
    SayError,
    StorageProblem,
    TTSBusy,
    TTSServerError,
    TTSTimeout,
    TTSUnavailable,
    UserBlocked,
)
from bots.messages import CONSENT_NO, CONSENT_PROMPT, CONSENT_RECORDED, CONSENT_YES, error_text
from bots.requests import SayResult
from tts_service.schema import CONTENT_TYPES, FILE_EXTENSIONS

# Checked in order: the first class an error is an instance of gives its status.
_STATUSES: tuple[tuple[type[SayError], int], ...] = (
    (RateLimited, 429),
    (QuotaExceeded, 429),
    (UserBlocked, 403),
    (NotYourClip, 403),
    (TTSTimeout, 504),
    (TTSServerError, 502),
    (TTSBusy, 503),
    (TTSUnavailable, 503),
    (StorageProblem, 503),
)

HEADER_CACHED = "X-Saybot-Cached"  # "1": answered from the cache, no synthesis
HEADER_VOICE = "X-Saybot-Voice"  # which voice spoke (``VoiceSource``)
HEADER_NOTE = "X-Saybot-Note"  # why a saved voice was not used, percent-encoded
HEADER_DURATION = "X-Audio-Duration"
HEADER_ENGINE = "X-Engine"


def sentence(code: str, message: str, status: int, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def error_answer(error: Exception) -> JSONResponse:
    """The bots' sentence for ``error``; an unexpected one is logged there, not shown."""
    text = error_text(error, context="playground")
    if not isinstance(error, SayError):
        return sentence("internal_error", text, 500)
    status = next((code for kind, code in _STATUSES if isinstance(error, kind)), 400)
    headers = {}
    wait = getattr(error, "retry_after_s", None)
    if isinstance(wait, int | float) and wait > 0:
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return sentence(error.code, text, status, **headers)


def consent_answer(question: ConsentNeeded) -> JSONResponse:
    """The clip waits: the page asks its uploader the bots' question, with their buttons."""
    return JSONResponse(
        {
            "consent": {
                "id": question.pending_id,
                "prompt": CONSENT_PROMPT,
                "yes": CONSENT_YES,
                "no": CONSENT_NO,
                "recorded": CONSENT_RECORDED,
            }
        },
        status_code=202,
    )


def audio_answer(result: SayResult) -> Response:
    headers = {
        HEADER_CACHED: "1" if result.from_cache else "0",
        HEADER_VOICE: result.voice.value,
        HEADER_DURATION: f"{result.duration_s:.3f}",
        HEADER_ENGINE: result.engine,
        "Content-Disposition": f'inline; filename="saybot.{FILE_EXTENSIONS[result.format]}"',
    }
    if result.note:
        headers[HEADER_NOTE] = quote(result.note)
    return Response(result.audio, media_type=CONTENT_TYPES[result.format], headers=headers)
