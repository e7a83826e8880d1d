"""The playground's form, read within bounds: what the page sent, as a ``SayRequest``.

The body is read whole up to ``max_bytes`` (a clip at the clip limit plus the fields), so a
larger upload is refused after that much, whatever it declared; then parsed as
``multipart/form-data`` with one file part at most. Numbers arrive as text and are read as
the chat adapters read ``key=value`` options: a number that is not one is an ``InvalidInput``
naming the option and its range, in the bots' words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from bots.clips import BytesClip, check_size
from bots.errors import InvalidInput, VoiceClipRejected
from bots.requests import SayRequest
from tts_service.schema import PARAM_RANGES, AudioFormat

PLATFORM = "web"
MAX_FIELDS = 16
MAX_FIELD_BYTES = 16 * 1024  # the text is at most 1000 characters
FIELD_ALLOWANCE_BYTES = 64 * 1024  # the form's fields and part headers beside the clip
VOICES = ("builtin", "saved", "upload", "record")
Voice = Literal["builtin", "saved", "upload", "record"]


@dataclass(frozen=True)
class PlayForm:
    """One Generate (or Save) from the page."""

    text: str
    params: dict[str, float | int]
    voice: Voice
    format: AudioFormat
    clip: BytesClip | None

    def say_request(self, user_id: str) -> SayRequest:
        return SayRequest(
            platform=PLATFORM,
            user_id=user_id,
            chat_id=user_id,
            text=self.text,
            params=self.params,
            clip=self.clip if self.voice in ("upload", "record") else None,
            use_saved_voice=self.voice == "saved",
            format=self.format,
        )


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused (``InvalidInput``) once more than ``max_bytes`` have arrived or are
    declared."""
    declared = request.headers.get("content-length", "")
    too_big = InvalidInput("the request is larger than this page ever sends")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_big
    return bytes(body)


async def read_upload(request: Request, clip_max_bytes: int) -> bytes:
    """A form's body: a clip at the clip limit and the fields; more is the clip's fault."""
    try:
        return await read_body(request, clip_max_bytes + FIELD_ALLOWANCE_BYTES)
    except InvalidInput:
        check_size(clip_max_bytes + 1, clip_max_bytes)  # says the limit, as for any clip
        raise


async def read_form(request: Request, body: bytes, user_id: str) -> PlayForm:
    """The page's fields from a body already read (``read_body``)."""

    async def replay() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    buffered = Request(request.scope, replay)
    try:
        form = await buffered.form(
            max_files=1, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES
        )
    except HTTPException as exc:  # Starlette's wording of the parser's refusals
        raise InvalidInput(f"the form could not be read ({str(exc.detail).rstrip('.')})") from exc
    try:
        fields: dict[str, str] = {}
        clip: BytesClip | None = None
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                if data:
                    clip = BytesClip(data, sender_id=user_id, content_type=_declared(value))
            else:
                fields[name] = value
    finally:
        await form.close()
    return _play_form(fields, clip)


def _declared(upload: UploadFile) -> str | None:
    """The part's type, if the browser knew it: for a file it cannot name it says
    ``application/octet-stream``, which is no claim (the decoder decides)."""
    kind = (upload.content_type or "").split(";")[0].strip().lower()
    return None if kind in ("", "application/octet-stream") else upload.content_type


def _play_form(fields: dict[str, str], clip: BytesClip | None) -> PlayForm:
    voice = fields.get("voice", "builtin")
    if voice not in VOICES:
        raise InvalidInput(f"voice must be one of: {', '.join(VOICES)}")
    fmt = fields.get("format", AudioFormat.OGG_OPUS.value)
    if fmt not in {f.value for f in AudioFormat}:
        raise InvalidInput(f"format must be one of: {', '.join(f.value for f in AudioFormat)}")
    if voice in ("upload", "record") and clip is None:
        what = "choose a clip to upload" if voice == "upload" else "record a clip first"
        raise VoiceClipRejected(f"there is none; {what}")
    params = {
        name: _number(name, fields[name])
        for name in PARAM_RANGES
        if fields.get(name, "").strip() != ""
    }
    return PlayForm(
        text=fields.get("text", ""),
        params=params,
        voice=voice,  # type: ignore[arg-type]  # checked against VOICES above
        format=AudioFormat(fmt),
        clip=clip,
    )


def _number(name: str, text: str) -> float | int:
    """``seed`` a whole number, the others any finite number; else the option's sentence."""
    wrong = InvalidInput(f"{name} must be {PARAM_RANGES[name].describe()}")
    try:
        value = float(text)
    except ValueError:
        raise wrong from None
    if not math.isfinite(value):
        raise wrong
    if name == "seed":
        if not value.is_integer():
            raise wrong
        return int(value)
    return value
