"""The body of ``POST /v1/tts``: JSON (the bots' way) or a form (a web page's, as
``multipart/form-data``, or url-encoded without a clip).

JSON is ``TTSRequest``, the clip base64 inside. A form has the same field names; the clip
is a file part named ``reference_audio`` (its bytes as they are), the numbers are text, read
as JSON numbers are, so ``seed=7.0`` is refused as it is in JSON. Both raise FastAPI's
``RequestValidationError`` with pydantic's errors, so one handler says what was wrong.
The body was already bounded by ``BodySizeLimit``.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from tts_service.errors import InvalidRequest
from tts_service.schema import PARAM_RANGES, TTSParams, TTSRequest

MAX_FORM_FIELDS = 16  # the contract has seven; a form with hundreds is not a client of ours
MAX_FORM_FIELD_BYTES = 64 * 1024  # text is at most 1000 characters
CLIP_FIELD = "reference_audio"
FORM_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})

# Declared by hand: the route reads its body itself, so FastAPI cannot infer it.
TTS_BODY_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": TTSRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["text"],
                    "properties": {
                        **{
                            name: schema
                            for name, schema in TTSParams.model_json_schema()["properties"].items()
                        },
                        CLIP_FIELD: {"type": "string", "format": "binary"},
                    },
                }
            },
        },
    }
}


async def read_tts_body(request: Request) -> tuple[TTSParams, bytes | None]:
    """The parameters and the optional clip, from either kind of body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in FORM_TYPES:
        return await _read_form(request)
    try:
        parsed = TTSRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    return parsed.model_copy(update={"reference_audio": None}), parsed.reference_audio


async def _read_form(request: Request) -> tuple[TTSParams, bytes | None]:
    try:
        form = await request.form(
            max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FORM_FIELD_BYTES
        )
    except HTTPException as exc:  # what Starlette makes of the parser's refusals
        reason = str(exc.detail).rstrip(".")
        raise InvalidRequest(f"the form could not be read: {reason}") from exc
    try:
        fields: dict[str, Any] = {}
        clip: bytes | None = None
        for name, value in form.multi_items():
            if name in fields or (name == CLIP_FIELD and clip is not None):
                raise InvalidRequest(f"the form has {name} more than once")
            if isinstance(value, UploadFile):
                if name != CLIP_FIELD:
                    raise InvalidRequest(
                        f"{name} must be a plain field; only {CLIP_FIELD} is a file"
                    )
                clip = await value.read()
            elif name == CLIP_FIELD:
                raise InvalidRequest(f"{CLIP_FIELD} must be a file part (the clip's bytes)")
            else:
                fields[name] = _form_value(name, value)
    finally:
        await form.close()
    try:
        return TTSParams.model_validate(fields), clip
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


def _form_value(name: str, text: str) -> Any:
    """A number field's text as the JSON number it spells (else the text, which the strict
    model refuses with the field's range); every other field as text."""
    if name not in PARAM_RANGES:
        return text
    try:
        number = json.loads(text)
    except ValueError:
        return text
    return number if isinstance(number, int | float) and not isinstance(number, bool) else text
