"""The TTS service over real loopback HTTP with the real Piper voice."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.servers import serve_in_thread
from tests.tts_helpers import API_TOKEN, make_settings, wait_ready
from tests.tts_service.audio_samples import disclosure_tag
from tests.tts_service.engine_wrappers import FailingEngine, GatedEngine, HeldSynthesis
from tts_service.api import UnsafeBind, check_bind_allowed, create_app
from tts_service.engines.piper import PiperEngine
from tts_service.settings import TTSSettings

HELLO = {"text": "Hello from saybot. This is a test."}
LONG_TEXT = ("The quick brown fox jumps over the lazy dog near the river bank. " * 15).strip()


def error_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    return body["error"]  # type: ignore[no-any-return]


def decode(data: bytes) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    return samples, rate


# --- health and auth -------------------------------------------------------------------------


def test_healthz_needs_no_token(service_url: str) -> None:
    response = httpx.get(f"{service_url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "path", ["/readyz", "/v1/engine", "/openapi.json", "/docs", "/redoc", "/v1/nothing-here"]
)
@pytest.mark.parametrize(
    "auth",
    [None, "Bearer wrong-token", f"Bearer {API_TOKEN}x", f"Basic {API_TOKEN}", API_TOKEN],
)
def test_everything_else_needs_the_bearer_token(service_url: str, path: str, auth: str) -> None:
    headers = {"Authorization": auth} if auth else {}
    response = httpx.get(f"{service_url}{path}", headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "body",
    [
        {"json": HELLO},
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        {"json": {"seed": "not a number"}},
    ],
    ids=["valid", "broken-json", "invalid"],
)
def test_tts_needs_the_bearer_token(service_url: str, body: dict[str, object]) -> None:
    # The token is checked before the body is read: a stranger learns nothing from 422s.
    response = httpx.post(f"{service_url}/v1/tts", **body)  # type: ignore[arg-type]
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_ready_and_engine_info(client: httpx.Client) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["engine"]["name"] == "piper"
    info = client.get("/v1/engine").json()
    assert info["sample_rate"] == 22050
    assert info["can_clone_voice"] is False
    assert sorted(info["honoured_params"]) == ["seed", "temperature"]
    assert "joe-medium" in info["model_version"]
    assert info["watermarked"] is False  # Piper has none; its files are still tagged
    assert info["languages"] == []  # one language, no language parameter
    assert ready.json()["engine"]["watermarked"] is False


def test_openapi_docs_are_served(client: httpx.Client) -> None:
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    assert "/v1/tts" in schema.json()["paths"]
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]


def test_without_a_token_configured_loopback_needs_none(piper_engine: PiperEngine) -> None:
    with serve_in_thread(create_app(piper_engine, make_settings(api_token=None))) as url:
        for path in ("/readyz", "/v1/engine", "/openapi.json", "/docs"):
            assert httpx.get(f"{url}{path}").status_code == 200, path
        spoken = httpx.post(f"{url}/v1/tts", json=HELLO, timeout=60)
        assert spoken.status_code == 200


def test_unknown_path_gets_the_error_body(client: httpx.Client) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


# --- formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type", "rate", "container"),
    [
        ("ogg_opus", "audio/ogg", 48000, ("OGG", "OPUS")),
        ("wav", "audio/wav", 22050, ("WAV", "PCM_16")),
        ("mp3", "audio/mpeg", 44100, ("MP3", "MPEG_LAYER_III")),
    ],
)
def test_each_format_decodes_as_what_was_asked(
    client: httpx.Client, fmt: str, content_type: str, rate: int, container: tuple[str, str]
) -> None:
    response = client.post("/v1/tts", json={**HELLO, "format": fmt})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == content_type
    info = sf.info(io.BytesIO(response.content))
    assert (info.format, info.subtype) == container
    samples, sample_rate = decode(response.content)
    assert sample_rate == rate
    duration = len(samples) / sample_rate
    assert duration > 0.5
    assert float(response.headers["X-Audio-Duration"]) == pytest.approx(duration, abs=0.1)
    assert float(response.headers["X-Synthesis-Seconds"]) > 0
    assert response.headers["X-Engine"] == "piper"
    assert np.sqrt(np.mean(samples**2)) > 0.01  # speech, not silence


@pytest.mark.parametrize("fmt", ["ogg_opus", "wav", "mp3"])
def test_each_answer_is_tagged_as_ai_speech_by_its_engine(client: httpx.Client, fmt: str) -> None:
    engine = client.get("/v1/engine").json()
    response = client.post("/v1/tts", json={**HELLO, "format": fmt})
    assert response.status_code == 200, response.text
    assert disclosure_tag(response.content) == (
        f"AI-generated speech (saybot; engine piper {engine['model_version']})"
    )


def test_default_format_is_ogg_opus(client: httpx.Client) -> None:
    response = client.post("/v1/tts", json=HELLO)
    assert response.status_code == 200
    assert sf.info(io.BytesIO(response.content)).subtype == "OPUS"


# --- determinism -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["ogg_opus", "wav", "mp3"])
def test_a_seed_gives_identical_bytes(client: httpx.Client, fmt: str) -> None:
    body = {**HELLO, "seed": 42, "format": fmt}
    first = client.post("/v1/tts", json=body)
    second = client.post("/v1/tts", json=body)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content


def test_unseeded_requests_vary(client: httpx.Client) -> None:
    body = {**HELLO, "format": "wav"}
    assert client.post("/v1/tts", json=body).content != client.post("/v1/tts", json=body).content


def test_equivalent_text_is_the_same_request(client: httpx.Client) -> None:
    spaced = client.post("/v1/tts", json={"text": "  Hello   from saybot. ", "seed": 7})
    plain = client.post("/v1/tts", json={"text": "Hello from saybot.", "seed": 7})
    assert spaced.content == plain.content


# --- long text -------------------------------------------------------------------------------


def test_long_text_is_spoken_whole(client: httpx.Client) -> None:
    short = client.post("/v1/tts", json={"text": LONG_TEXT[:65], "seed": 1, "format": "wav"})
    long = client.post("/v1/tts", json={"text": LONG_TEXT, "seed": 1, "format": "wav"})
    assert len(LONG_TEXT) > 900
    ratio = float(long.headers["X-Audio-Duration"]) / float(short.headers["X-Audio-Duration"])
    assert 10 < ratio < 20  # 15 sentences, each as long as the short one: nothing cut off


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("exaggeration", 2.5, "exaggeration must be a number from 0.25 to 2"),
        ("exaggeration", 0.1, "exaggeration must be a number from 0.25 to 2"),
        ("temperature", 0, "temperature must be a number from 0.05 to 5"),
        ("temperature", "hot", "temperature must be a number from 0.05 to 5"),
        ("cfg_weight", 1.5, "cfg_weight must be a number from 0 to 1"),
        ("seed", -1, "seed must be a whole number ≥ 0"),
        ("seed", 1.5, "seed must be a whole number ≥ 0"),
        ("seed", 2.0, "seed must be a whole number ≥ 0"),
        ("seed", True, "seed must be a whole number ≥ 0"),
        ("seed", "7", "seed must be a whole number ≥ 0"),
        ("temperature", "0.5", "temperature must be a number from 0.05 to 5"),
        ("exaggeration", True, "exaggeration must be a number from 0.25 to 2"),
        ("cfg_weight", None, "cfg_weight must be a number from 0 to 1"),
        ("format", "flac", "format must be one of: ogg_opus, wav, mp3"),
        ("text", "   ", "text is empty"),
        ("text", "x" * 1001, "the limit is 1000"),
        ("text", 12, "text: Input should be a valid string"),
        ("voice", "bob", "unknown field voice"),
        ("reference_audio", "not base64!", "reference_audio must be base64"),
        ("language", "fra", "language must be a two-letter language code, such as fr"),
        ("language", "FR", "language must be a two-letter language code, such as fr"),
        ("language", 7, "language must be a two-letter language code, such as fr"),
    ],
)
def test_bad_values_name_the_field_and_range(
    client: httpx.Client, field: str, value: object, expected: str
) -> None:
    response = client.post("/v1/tts", json={**HELLO, field: value})
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_parameters"
    assert expected in error["message"]


def test_a_language_the_engine_does_not_list_is_refused_in_one_sentence(
    client: httpx.Client,
) -> None:
    response = client.post("/v1/tts", json={**HELLO, "language": "fr"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_request"
    assert error["message"] == (
        "this service's engine (piper) speaks one language and takes no language option; "
        "the multilingual Chatterbox model does"
    )
    assert client.post("/v1/tts", json={**HELLO, "language": None}).status_code == 200


def test_numbers_may_be_json_integers(client: httpx.Client) -> None:
    whole = {**HELLO, "temperature": 1, "exaggeration": 1, "cfg_weight": 0, "seed": 3}
    assert client.post("/v1/tts", json=whole).status_code == 200


@pytest.mark.parametrize("text", ["...", "-", "?", "( )", "… — …"])
def test_text_with_nothing_to_say_is_refused(client: httpx.Client, text: str) -> None:
    response = client.post("/v1/tts", json={"text": text})
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "nothing_to_say"
    assert error["message"].count(".") <= 1 and "nothing to say" in error["message"]


def test_control_characters_are_dropped_before_the_engine(client: httpx.Client) -> None:
    """A NUL made Piper raise (a 500); no engine sees a control character now, and text
    with them is the same request as without (the same seed gives the same bytes)."""
    plain = client.post("/v1/tts", json={"text": "Hello world.", "seed": 3})
    with_controls = client.post("/v1/tts", json={"text": "Hel\x00lo\x07 world.\x1b\x9b", "seed": 3})
    assert with_controls.status_code == 200, with_controls.text
    assert with_controls.content == plain.content


def test_text_of_control_characters_only_is_refused(client: httpx.Client) -> None:
    response = client.post("/v1/tts", json={"text": "\x00\x01\x7f"})
    assert response.status_code == 422
    assert error_of(response) == {
        "code": "invalid_parameters",
        "message": "text has nothing to say in it (only control characters)",
    }


def test_missing_text_and_broken_json(client: httpx.Client) -> None:
    missing = client.post("/v1/tts", json={"seed": 1})
    assert missing.status_code == 422
    assert error_of(missing)["message"] == "text is required"
    broken = client.post(
        "/v1/tts", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    assert "not valid JSON" in error_of(broken)["message"]


def test_piper_refuses_to_clone_a_voice(client: httpx.Client) -> None:
    clip = io.BytesIO()
    sf.write(clip, np.zeros(22050, dtype=np.float32), 22050, format="WAV")
    response = client.post(
        "/v1/tts",
        json={**HELLO, "reference_audio": base64.b64encode(clip.getvalue()).decode()},
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "voice_cloning_unavailable"
    assert "Chatterbox" in error["message"]


def test_oversized_body_is_refused_before_parsing(client: httpx.Client) -> None:
    huge = base64.b64encode(b"\0" * (11 * 1024 * 1024)).decode()
    response = client.post("/v1/tts", json={**HELLO, "reference_audio": huge})
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"
    assert client.get("/readyz").status_code == 200


def test_chunked_oversized_body_is_refused(client: httpx.Client) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b" " * (1024 * 1024)

    response = client.post(
        "/v1/tts", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


# --- back-pressure, cancellation, loading ----------------------------------------------------


async def test_in_flight_limit_answers_503_with_retry_after(piper_engine: PiperEngine) -> None:
    app = create_app(piper_engine, make_settings(max_in_flight=1, busy_retry_after_s=3))
    with serve_in_thread(app) as url:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            body = {"text": LONG_TEXT, "format": "wav"}
            first = asyncio.create_task(http.post("/v1/tts", json=body))
            await asyncio.sleep(0.3)  # the first request is inside the engine now
            refused = await asyncio.gather(*(http.post("/v1/tts", json=HELLO) for _ in range(3)))
            assert [r.status_code for r in refused] == [503, 503, 503]
            assert all(r.headers["Retry-After"] == "3" for r in refused)
            assert {error_of(r)["code"] for r in refused} == {"busy"}
            assert (await first).status_code == 200
            assert (await http.post("/v1/tts", json=HELLO)).status_code == 200


class FinishedSyntheses:
    """ASGI wrapper: counts the ``POST /v1/tts`` requests the service has finished handling,
    whether or not their client still listens; ``wait_for`` blocks until enough have."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.finished = 0
        self._changed = threading.Condition()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http" and scope["path"] == "/v1/tts":
                with self._changed:
                    self.finished += 1
                    self._changed.notify_all()

    def wait_for(self, count: int, timeout_s: float = 30.0) -> bool:
        """Blocking: call it with ``asyncio.to_thread`` from a test's event loop."""
        with self._changed:
            return self._changed.wait_for(lambda: self.finished >= count, timeout_s)


async def test_cancelled_requests_do_not_break_the_service(piper_engine: PiperEngine) -> None:
    engine = HeldSynthesis(piper_engine)  # each synthesis lasts until the test says so
    app = create_app(engine, make_settings(max_in_flight=2))
    finished = FinishedSyntheses(app)
    with serve_in_thread(finished) as url:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        try:
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
                body = {**HELLO, "format": "wav"}
                doomed = [asyncio.create_task(http.post("/v1/tts", json=body)) for _ in range(2)]
                assert await asyncio.to_thread(engine.wait_entered, 2), "never reached the engine"
                assert app.state.in_flight.current == 2  # both places taken, mid-synthesis
                for task in doomed:
                    task.cancel()
                await asyncio.gather(*doomed, return_exceptions=True)
                assert all(task.cancelled() for task in doomed)
        finally:
            engine.gate.set()
        # The abandoned syntheses finish in their threads and free their places.
        assert await asyncio.to_thread(finished.wait_for, 2), "the syntheses never ended"
        assert app.state.in_flight.current == 0
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            response = await http.post("/v1/tts", json=HELLO)
            assert response.status_code == 200


def test_not_ready_until_the_engine_loads() -> None:
    engine = GatedEngine(PiperEngine(onnx_threads=1))
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with serve_in_thread(create_app(engine, make_settings())) as url:
        try:
            assert engine.load_started.wait(timeout=10)
            for response in (
                httpx.get(f"{url}/readyz", headers=headers),
                httpx.post(f"{url}/v1/tts", json=HELLO, headers=headers),
            ):
                assert response.status_code == 503
                assert error_of(response)["code"] == "engine_not_ready"
                assert "still loading" in error_of(response)["message"]
                assert response.headers["Retry-After"] == "5"
            assert httpx.get(f"{url}/healthz").status_code == 200  # alive while loading
        finally:
            engine.gate.set()
        wait_ready(url)
        spoken = httpx.post(f"{url}/v1/tts", json=HELLO, headers=headers, timeout=60)
        assert spoken.status_code == 200
        assert float(spoken.headers["X-Audio-Duration"]) > 0.5


def test_an_engine_that_failed_to_load_says_so() -> None:
    engine = FailingEngine()
    engine.gate.set()
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with serve_in_thread(create_app(engine, make_settings())) as url:
        for _ in range(200):  # the load fails in a worker thread, soon after startup
            response = httpx.get(f"{url}/readyz", headers=headers)
            if "failed" in error_of(response)["message"]:
                break
            time.sleep(0.05)
        spoken = httpx.post(f"{url}/v1/tts", json=HELLO, headers=headers)
        for answer in (response, spoken):
            assert answer.status_code == 503
            assert error_of(answer) == {
                "code": "engine_not_ready",
                "message": "the engine failed to load: FileNotFoundError",
            }
            assert answer.headers["Retry-After"] == "30"
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_no_token_means_loopback_only() -> None:
    open_settings = make_settings(api_token=None)
    check_bind_allowed("127.0.0.1", open_settings)
    check_bind_allowed("::1", open_settings)
    check_bind_allowed("localhost", open_settings)
    for host in ("0.0.0.0", "192.168.1.10", "example.org"):
        with pytest.raises(UnsafeBind, match="TTS_API_TOKEN"):
            check_bind_allowed(host, open_settings)
    check_bind_allowed("0.0.0.0", make_settings())


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_token_is_no_token_for_the_bind_rule_and_the_auth_alike(
    piper_engine: PiperEngine, monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    monkeypatch.setenv("TTS_API_TOKEN", blank)  # `TTS_API_TOKEN=` in a shell or an .env file
    settings = TTSSettings(_env_file=None)  # type: ignore[call-arg]
    for host in ("0.0.0.0", "192.168.1.10"):
        with pytest.raises(UnsafeBind, match="TTS_API_TOKEN"):
            check_bind_allowed(host, settings)
    check_bind_allowed("127.0.0.1", settings)
    with serve_in_thread(create_app(piper_engine, settings)) as url:
        assert httpx.get(f"{url}/v1/engine").status_code == 200  # as with no token at all
