"""OpenAI's speech dialect on the TTS service, so any OpenAI-compatible app can use its voice.

    POST /v1/audio/speech   {model, input, voice, response_format, speed} plus saybot's
                            exaggeration, temperature, cfg_weight and seed → the audio
    GET  /v1/models         the model names this route accepts (all speak with the one engine)
    GET  /v1/models/{id}    one of them

The same bearer token as every route (the SDK sends its API key as one). Errors on these
paths come in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, which
keeps the service's own ``code`` and ``message``: ``OpenAIErrorShape`` reshapes the answers
of the service's middlewares and handlers (401, 413, 503…) on the way out. A value outside
its range is 400 (``openai.BadRequestError``), as OpenAI answers it; a valid ``speed`` the
engine does not honour is 422. OpenAI's voice names all map to the built-in voice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tts_service import synthesis
from tts_service.schema import (
    HEADER_DURATION,
    HEADER_ENGINE,
    HEADER_ENGINE_VERSION,
    HEADER_SYNTHESIS_SECONDS,
    LANGUAGE_PATTERN,
    PARAM_RANGES,
    EngineInfo,
    SpokenText,
    TTSParams,
    describe_validation_error,
    language_problem,
)
from tts_service.speech_formats import MEDIA_TYPES, OWN_FORMATS, SpeechFormat, encode_other

if TYPE_CHECKING:
    from tts_service.api import ASGIApp, EngineState, InFlightLimit, Message, Receive, Send
    from tts_service.engines.base import TTSEngine

MODEL_NAMES = ("chatterbox", "tts-1", "tts-1-hd")  # plus the running engine's own name
OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer"}
    | {"verse", "marin", "cedar"}
)
BUILT_IN_VOICES = frozenset({"default", "built-in"})  # and the engine's name
SPEED_MIN, SPEED_MAX = 0.25, 4.0
OPENAI_PATHS = ("/v1/audio/", "/v1/models")
_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def _saybot_field(name: str) -> Any:
    bounds = PARAM_RANGES[name]
    if name == "seed":
        return Field(default=0, ge=0, strict=True)
    return Field(default=bounds.default, ge=bounds.minimum, le=bounds.maximum, strict=True)


class VoiceId(BaseModel):
    """OpenAI's custom-voice form, ``{"id": "..."}``; read as the name it holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str


class SpeechRequest(BaseModel):
    """The body of ``POST /v1/audio/speech``: OpenAI's fields, then saybot's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    input: SpokenText
    voice: str | VoiceId = "default"
    response_format: SpeechFormat = SpeechFormat.MP3
    speed: Annotated[float, Field(ge=SPEED_MIN, le=SPEED_MAX, strict=True)] = 1.0
    stream_format: Literal["audio"] = "audio"  # OpenAI's "sse" events are not offered
    exaggeration: float = _saybot_field("exaggeration")
    temperature: float = _saybot_field("temperature")
    cfg_weight: float = _saybot_field("cfg_weight")
    seed: int = _saybot_field("seed")
    language: str | None = Field(default=None, pattern=LANGUAGE_PATTERN)  # Multilingual's

    @property
    def voice_name(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceId) else self.voice

    def params(self) -> TTSParams:
        return TTSParams(
            text=self.input,
            exaggeration=self.exaggeration,
            temperature=self.temperature,
            cfg_weight=self.cfg_weight,
            seed=self.seed,
            language=self.language,
        )


def openai_error(
    status: int, code: str, message: str, param: str | None = None, **headers: str
) -> JSONResponse:
    """An error in OpenAI's shape, carrying the service's own ``code``."""
    return JSONResponse(_shaped(status, code, message, param), status_code=status, headers=headers)


def _shaped(status: int, code: str, message: str, param: str | None) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def model_names(engine: EngineInfo) -> list[str]:
    return list(dict.fromkeys((*MODEL_NAMES, engine.name)))


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "saybot"}


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    """(param, one sentence) for a pydantic error of ``SpeechRequest``."""
    loc = tuple(part for part in error.get("loc", ()) if isinstance(part, str))
    param = loc[0] if loc else "body"
    kind = error.get("type")
    if kind == "json_invalid":
        return "body", "the body is not valid JSON"
    if kind == "extra_forbidden":
        return param, f"unknown field {param}"
    if kind == "missing":
        return param, f"{param} is required"
    if param == "speed":
        return param, f"speed must be a number from {SPEED_MIN:g} to {SPEED_MAX:g}"
    if param == "response_format":
        return param, f"response_format must be one of: {', '.join(f.value for f in SpeechFormat)}"
    if param == "stream_format":
        return param, "stream_format must be audio; server-sent events are not offered"
    if param == "voice":
        return param, "voice must be a voice name, or an object with its id"
    if param == "input":
        message = describe_validation_error(("text",), str(error.get("msg", "")))
        return param, message.replace("text", "input", 1)
    return param, describe_validation_error(loc, str(error.get("msg", "")))


@dataclass(frozen=True)
class Spoken:
    audio: bytes
    duration_s: float
    synthesis_s: float
    engine: EngineInfo


def speak(engine: TTSEngine, params: TTSParams, fmt: SpeechFormat) -> Spoken:
    """The blocking part: the shared pipeline, in OpenAI's format."""
    own = OWN_FORMATS.get(fmt)
    if own is not None:  # the service's own formats: encoded beside the engine
        made = synthesis.synthesize(engine, params.model_copy(update={"format": own}))
        return Spoken(made.audio, made.duration_s, made.synthesis_s, made.engine)
    started = time.perf_counter()
    samples = synthesis.synthesize_samples(engine, params, None)
    info = engine.info
    encoded = encode_other(samples, info.sample_rate, fmt, info)
    return Spoken(encoded, samples.size / info.sample_rate, time.perf_counter() - started, info)


def openai_router(state: EngineState, limit: InFlightLimit) -> APIRouter:
    """The routes, over the service's engine and in-flight limit."""
    router = APIRouter(tags=["openai"])

    @router.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        """The names ``model`` accepts; each speaks with this service's engine."""
        names = model_names(state.engine.info)
        return {"object": "list", "data": [_model_entry(name) for name in names]}

    @router.get("/v1/models/{model_id}", response_model=None)
    async def get_model(model_id: str) -> dict[str, Any] | JSONResponse:
        if model_id not in model_names(state.engine.info):
            return openai_error(404, "model_not_found", f"no model {model_id} here", "model")
        return _model_entry(model_id)

    @router.post(
        "/v1/audio/speech",
        response_class=Response,
        responses={200: {"content": {media: {} for media in MEDIA_TYPES.values()}}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": SpeechRequest.model_json_schema()}},
            }
        },
    )
    async def speech(request: Request) -> Response:
        """Speak ``input``; the body is the audio in ``response_format``."""
        try:
            asked = SpeechRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            described = [_describe(dict(error)) for error in exc.errors()]
            message = "; ".join(dict.fromkeys(sentence for _, sentence in described))
            return openai_error(400, "invalid_parameters", message, described[0][0])
        info = state.engine.info
        refused = _refusal(asked, info)
        if refused is not None:
            return refused
        ready = state.require_ready()
        async with limit.slot():
            spoken = await anyio.to_thread.run_sync(
                speak, ready, asked.params(), asked.response_format
            )
        return Response(
            content=spoken.audio,
            media_type=MEDIA_TYPES[asked.response_format],
            headers={
                HEADER_DURATION: f"{spoken.duration_s:.3f}",
                HEADER_SYNTHESIS_SECONDS: f"{spoken.synthesis_s:.3f}",
                HEADER_ENGINE: spoken.engine.name,
                HEADER_ENGINE_VERSION: spoken.engine.model_version,
            },
        )

    return router


def _refusal(asked: SpeechRequest, info: EngineInfo) -> JSONResponse | None:
    """Valid fields this service cannot do as asked: a model or voice it does not have, a
    language or speed its engine does not speak."""
    models = model_names(info)
    if asked.model not in models:
        return openai_error(
            400,
            "model_not_found",
            f"model {asked.model} is not served here; the models are {', '.join(models)}",
            "model",
        )
    voice = asked.voice_name
    if voice not in OPENAI_VOICES | BUILT_IN_VOICES | {info.name}:
        return openai_error(
            400,
            "voice_not_found",
            f"voice {voice} is not known here; use default (the built-in voice) or one of "
            f"OpenAI's names ({', '.join(sorted(OPENAI_VOICES))}), which all speak in it",
            "voice",
        )
    unspoken = language_problem(asked.language, info)
    if unspoken is not None:
        return openai_error(400, "unsupported_language", unspoken, "language")
    if asked.speed != 1.0 and "speed" not in info.honoured_params:
        return openai_error(
            422,
            "unsupported_parameter",
            f"the {info.name} engine speaks at one speed only; leave speed at 1.0",
            "speed",
        )
    return None


def is_openai_path(path: str) -> bool:
    return path.startswith(OPENAI_PATHS) or path == "/v1/audio"


class OpenAIErrorShape:
    """ASGI middleware: on the OpenAI paths, every JSON error leaves in OpenAI's shape.

    Outermost, so the bearer check's 401 and the body limit's 413 are reshaped too. Answers
    already in that shape (they have a ``type``) and successes pass untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_openai_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        parts: list[bytes] = []

        async def reshaping(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = _reshape(b"".join(parts), start["status"])
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, reshaping)


def _reshape(body: bytes, status: int) -> bytes:
    """``{"error": {"code", "message"}}`` → OpenAI's shape; anything else as it was."""
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return body
    if "type" in error:
        return body
    return json.dumps(_shaped(status, code, message, error.get("param"))).encode()
