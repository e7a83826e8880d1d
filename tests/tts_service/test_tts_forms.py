"""``POST /v1/tts`` with a form body, as a web page sends it: the same fields and sentences as
JSON, the clip as a file part; the real service over loopback HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.servers import serve_in_thread
from tests.tts_helpers import API_TOKEN, make_settings, wait_ready
from tests.tts_service.audio_samples import clip
from tests.tts_service.engine_wrappers import CloningPiper
from tts_service import audio
from tts_service.api import create_app
from tts_service.engines.base import FloatAudio, ReferenceClip
from tts_service.engines.piper import PiperEngine
from tts_service.schema import TTSParams

TEXT = "A form, as the first web page sent it."


class ReferenceRecorder(CloningPiper):
    """Piper behind a cloning engine's face that records the reference each call gets."""

    def __init__(self, inner: PiperEngine) -> None:
        super().__init__(inner)
        self.references: list[str] = []
        self._lock = threading.Lock()

    def synthesize(
        self, text: str, params: TTSParams, reference: ReferenceClip | None
    ) -> FloatAudio:
        with self._lock:
            self.references.append(reference.sha256 if reference is not None else "none")
        return super().synthesize(text, params, reference)


def error_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]  # type: ignore[no-any-return]


def test_a_multipart_form_speaks_like_json(client: httpx.Client) -> None:
    fields = {"text": TEXT, "seed": "5", "temperature": "0.6", "format": "wav"}
    form = client.post("/v1/tts", files={name: (None, value) for name, value in fields.items()})
    assert form.status_code == 200, form.text
    assert form.headers["content-type"] == "audio/wav"
    as_json = client.post(
        "/v1/tts", json={"text": TEXT, "seed": 5, "temperature": 0.6, "format": "wav"}
    )
    assert form.content == as_json.content, "one request, whichever body carried it"


def test_a_url_encoded_form_speaks_too(client: httpx.Client) -> None:
    response = client.post("/v1/tts", data={"text": TEXT, "format": "mp3"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/mpeg"


@pytest.mark.parametrize(
    ("fields", "sentence"),
    [
        ({"text": TEXT, "seed": "7.0"}, "seed must be a whole number ≥ 0"),
        ({"text": TEXT, "temperature": "hot"}, "temperature must be a number from 0.05 to 5"),
        ({"text": TEXT, "exaggeration": "true"}, "exaggeration must be a number from 0.25 to 2"),
        ({"text": TEXT, "format": "ogg"}, "format must be one of: ogg_opus, wav, mp3"),
        ({"text": TEXT, "voice": "x"}, "unknown field voice"),
        ({"seed": "1"}, "text is required"),
    ],
)
def test_bad_form_fields_get_the_json_sentences(
    client: httpx.Client, fields: dict[str, str], sentence: str
) -> None:
    response = client.post("/v1/tts", files={name: (None, value) for name, value in fields.items()})
    assert response.status_code == 422
    assert error_of(response)["message"] == sentence


def test_the_clip_must_be_one_file_part(client: httpx.Client) -> None:
    as_text = client.post("/v1/tts", files={"text": (None, TEXT), "reference_audio": (None, "x")})
    assert as_text.status_code == 400
    assert "reference_audio must be a file part" in error_of(as_text)["message"]
    wav = clip("wav")
    twice = client.post(
        "/v1/tts",
        files=[
            ("text", (None, TEXT)),
            ("reference_audio", ("a.wav", wav, "audio/wav")),
            ("reference_audio", ("b.wav", wav, "audio/wav")),
        ],
    )
    assert twice.status_code == 400
    assert "could not be read" in error_of(twice)["message"]  # one file part at most
    other_file = client.post("/v1/tts", files={"text": ("t.txt", TEXT.encode(), "text/plain")})
    assert other_file.status_code == 400
    assert error_of(other_file)["message"] == (
        "text must be a plain field; only reference_audio is a file"
    )


def test_piper_refuses_a_clip_sent_in_a_form(client: httpx.Client) -> None:
    response = client.post(
        "/v1/tts",
        files={"text": (None, TEXT), "reference_audio": ("me.wav", clip("wav"), "audio/wav")},
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "voice_cloning_unavailable"


@pytest.fixture()
def recorder_url(piper_engine: PiperEngine) -> Iterator[tuple[str, ReferenceRecorder]]:
    engine = ReferenceRecorder(piper_engine)
    with serve_in_thread(create_app(engine, make_settings())) as url:
        wait_ready(url)
        yield url, engine


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg_opus", "webm"])
def test_the_file_part_reaches_the_engine_as_the_clip(
    recorder_url: tuple[str, ReferenceRecorder], fmt: str
) -> None:
    url, engine = recorder_url
    data = clip(fmt)
    response = httpx.post(
        f"{url}/v1/tts",
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        files={"text": (None, TEXT), "reference_audio": (f"me.{fmt}", data, "audio/x-whatever")},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    expected = audio.prepare_reference(data, engine.info.sample_rate).sha256
    assert engine.references and set(engine.references) == {expected}
