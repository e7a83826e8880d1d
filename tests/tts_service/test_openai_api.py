"""OpenAI's speech dialect, driven by the official ``openai`` package against the real
service over loopback HTTP, speaking with the real Piper voice."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from tests.tts_helpers import API_TOKEN
from tts_service import audio
from tts_service.speech_formats import PCM_SAMPLE_RATE

HELLO = "Hello from saybot, in OpenAI's dialect."
# The arguments of ``speech.create`` itself; saybot's own go in ``extra_body``.
SDK_FIELDS = {"model", "voice", "input", "response_format", "speed", "stream_format"}
SDK_FIELDS |= {"instructions"}


@pytest.fixture()
def oai(service_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{service_url}/v1", api_key=API_TOKEN, max_retries=0) as client:
        yield client


def openai_error(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]  # type: ignore[no-any-return]


def decoded_seconds(fmt: str, data: bytes) -> float:
    """The audio's length, decoded back by a decoder that knows the container."""
    if fmt == "pcm":
        assert len(data) % 2 == 0
        samples = np.frombuffer(data, "<i2").astype(np.float32) / 32768
        rate = PCM_SAMPLE_RATE
    elif fmt in ("wav", "flac"):
        samples, rate = sf.read(io.BytesIO(data), dtype="float32")
        assert sf.info(io.BytesIO(data)).format == fmt.upper()
    else:
        samples, rate = audio.decode(data)  # mp3, Ogg Opus, ADTS AAC through FFmpeg
    rms = float(np.sqrt(np.mean(np.square(samples))))
    assert rms > 0.01, f"{fmt}: silence"
    return len(samples) / rate


def test_models_lists_every_accepted_name(oai: openai.OpenAI) -> None:
    names = [model.id for model in oai.models.list()]
    assert names == ["chatterbox", "tts-1", "tts-1-hd", "piper"]
    assert oai.models.retrieve("tts-1-hd").id == "tts-1-hd"
    with pytest.raises(openai.NotFoundError, match="no model gpt-5 here"):
        oai.models.retrieve("gpt-5")


@pytest.mark.parametrize(
    ("fmt", "media_type", "magic"),
    [
        ("mp3", "audio/mpeg", b"ID3"),
        ("opus", "audio/ogg", b"OggS"),
        ("aac", "audio/aac", b"\xff\xf1"),
        ("flac", "audio/flac", b"fLaC"),
        ("wav", "audio/wav", b"RIFF"),
        ("pcm", "audio/pcm", b""),
    ],
)
def test_each_format_decodes_back(
    oai: openai.OpenAI, fmt: str, media_type: str, magic: bytes
) -> None:
    spoken = oai.audio.speech.create(
        model="tts-1",
        voice="alloy",
        input=HELLO,
        response_format=fmt,  # type: ignore[arg-type]
    )
    assert spoken.response.headers["content-type"] == media_type
    assert spoken.content.startswith(magic)
    seconds = decoded_seconds(fmt, spoken.content)
    declared = float(spoken.response.headers["x-audio-duration"])
    # Lossy codecs add their priming and padding: a frame or two, never a different text.
    assert abs(seconds - declared) < 0.1, (fmt, seconds, declared)
    assert declared > 1.0


def test_mp3_is_the_default_format(oai: openai.OpenAI) -> None:
    spoken = oai.audio.speech.create(model="chatterbox", voice="nova", input=HELLO)
    assert spoken.response.headers["content-type"] == "audio/mpeg"
    decoded_seconds("mp3", spoken.content)


def test_streaming_response_gives_the_whole_file(oai: openai.OpenAI) -> None:
    with oai.audio.speech.with_streaming_response.create(
        model="tts-1-hd", voice="shimmer", input=HELLO, response_format="wav"
    ) as response:
        assert response.headers["x-engine"] == "piper"
        data = b"".join(response.iter_bytes(chunk_size=1024))
    assert decoded_seconds("wav", data) > 1.0


def test_saybot_parameters_ride_in_the_body(oai: openai.OpenAI) -> None:
    def seeded(seed: int) -> bytes:
        return oai.audio.speech.create(
            model="tts-1",
            voice="alloy",
            input=HELLO,
            response_format="wav",
            extra_body={"seed": seed, "temperature": 0.5, "exaggeration": 1.0, "cfg_weight": 0.3},
        ).content

    assert seeded(7) == seeded(7), "a seed is repeatable through this route too"
    unseeded = {seeded(0) for _ in range(3)}
    assert len(unseeded) > 1, "seed 0 keeps Piper's natural variation"


def test_voices_map_to_the_built_in_voice(oai: openai.OpenAI) -> None:
    def wav(voice: object) -> bytes:
        return oai.audio.speech.create(
            model="tts-1",
            voice=voice,  # type: ignore[arg-type]
            input=HELLO,
            response_format="wav",
            extra_body={"seed": 3},
        ).content

    first = wav("alloy")
    assert wav("onyx") == first == wav("default") == wav("piper") == wav({"id": "echo"})
    with pytest.raises(openai.BadRequestError, match="voice morgan is not known") as refused:
        wav("morgan")
    assert refused.value.param == "voice"


def test_a_wrong_key_is_an_authentication_error(service_url: str) -> None:
    with openai.OpenAI(base_url=f"{service_url}/v1", api_key="wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as refused:
            client.audio.speech.create(model="tts-1", voice="alloy", input=HELLO)
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    assert refused.value.status_code == 401
    assert refused.value.code == "unauthorized"
    assert refused.value.type == "authentication_error"
    assert refused.value.response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("extra", "param", "sentence"),
    [
        ({"temperature": 9}, "temperature", "temperature must be a number from 0.05 to 5"),
        ({"seed": -1}, "seed", "seed must be a whole number ≥ 0"),
        ({"speed": 5.0}, "speed", "speed must be a number from 0.25 to 4"),
        ({"response_format": "ogg"}, "response_format", "response_format must be one of: mp3"),
        ({"stream_format": "sse"}, "stream_format", "server-sent events are not offered"),
        ({"instructions": "whisper"}, "instructions", "unknown field instructions"),
        ({"model": "gpt-5"}, "model", "model gpt-5 is not served here"),
        ({"input": "x" * 1001}, "input", "input is 1001 characters long; the limit is 1000"),
        ({"input": " "}, "input", "input is empty"),
        ({"language": "fr"}, "language", "language"),
    ],
)
def test_a_bad_parameter_is_a_bad_request(
    oai: openai.OpenAI, extra: dict[str, object], param: str, sentence: str
) -> None:
    fields: dict[str, object] = {"model": "tts-1", "voice": "alloy", "input": HELLO}
    fields.update({name: value for name, value in extra.items() if name in SDK_FIELDS})
    saybot = {name: value for name, value in extra.items() if name not in SDK_FIELDS}
    with pytest.raises(openai.BadRequestError) as refused:
        oai.audio.speech.create(**fields, extra_body=saybot)  # type: ignore[arg-type]
    assert refused.value.status_code == 400
    assert refused.value.param == param
    assert refused.value.type == "invalid_request_error"
    assert sentence in refused.value.message


def test_a_speed_the_engine_does_not_honour_is_422(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        oai.audio.speech.create(model="tts-1", voice="alloy", input=HELLO, speed=1.5)
    assert refused.value.param == "speed"
    assert "the piper engine speaks at one speed only" in refused.value.message
    normal = oai.audio.speech.create(model="tts-1", voice="alloy", input=HELLO, speed=1.0)
    assert normal.response.status_code == 200


def test_text_with_nothing_to_say_is_422_in_openai_shape(client: httpx.Client) -> None:
    response = client.post(
        "/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "..."}
    )
    assert response.status_code == 422
    error = openai_error(response)
    assert error["code"] == "nothing_to_say" and error["type"] == "invalid_request_error"


def test_the_body_limit_answers_in_openai_shape(client: httpx.Client) -> None:
    response = client.post("/v1/audio/speech", content=b"x" * 30_000_000)
    assert response.status_code == 413
    assert openai_error(response)["code"] == "payload_too_large"
    broken = client.post("/v1/audio/speech", content=b"{nope")
    assert broken.status_code == 400
    assert openai_error(broken)["message"] == "the body is not valid JSON"


def test_other_routes_keep_the_service_shape(client: httpx.Client) -> None:
    response = client.post("/v1/tts", json={"text": "hi", "temperature": 9})
    assert response.status_code == 422
    assert set(response.json()["error"]) == {"code", "message"}


def test_the_route_is_documented(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/audio/speech" in paths and "/v1/models" in paths
    body = paths["/v1/audio/speech"]["post"]["requestBody"]["content"]["application/json"]
    assert "response_format" in body["schema"]["properties"]
