"""The TTS service over real loopback HTTP with the real Piper voice."""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.servers import serve_in_thread
from tests.tts_helpers import API_TOKEN, make_settings, wait_ready
from tts_service.api import UnsafeBind, check_bind_allowed, create_app
from tts_service.engines.piper import PiperEngine

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


@pytest.mark.parametrize("path", ["/readyz", "/v1/engine"])
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Basic dXNlcjpwYXNz", API_TOKEN])
def test_everything_else_needs_the_bearer_token(service_url: str, path: str, auth: str) -> None:
    headers = {"Authorization": auth} if auth else {}
    response = httpx.get(f"{service_url}{path}", headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"


def test_tts_needs_the_bearer_token(service_url: str) -> None:
    response = httpx.post(f"{service_url}/v1/tts", json=HELLO)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"


def test_ready_and_engine_info(client: httpx.Client) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["engine"]["name"] == "piper"
    info = client.get("/v1/engine").json()
    assert info["sample_rate"] == 22050
    assert info["can_clone_voice"] is False
    assert sorted(info["honoured_params"]) == ["seed", "temperature"]
    assert "joe-medium" in info["model_version"]


def test_openapi_docs_are_served(service_url: str) -> None:
    schema = httpx.get(f"{service_url}/openapi.json").json()
    assert "/v1/tts" in schema["paths"]


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
        ("format", "flac", "format must be one of: ogg_opus, wav, mp3"),
        ("text", "   ", "text is empty"),
        ("text", "x" * 1001, "the limit is 1000"),
        ("text", 12, "text: Input should be a valid string"),
        ("voice", "bob", "unknown field voice"),
        ("reference_audio", "not base64!", "reference_audio must be base64"),
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


async def test_cancelled_requests_do_not_break_the_service(piper_engine: PiperEngine) -> None:
    app = create_app(piper_engine, make_settings(max_in_flight=2))
    with serve_in_thread(app) as url:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            body = {"text": LONG_TEXT, "format": "wav"}
            doomed = [asyncio.create_task(http.post("/v1/tts", json=body)) for _ in range(2)]
            await asyncio.sleep(0.3)
            for task in doomed:
                task.cancel()
            await asyncio.gather(*doomed, return_exceptions=True)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            # The abandoned syntheses finish in their threads and free their slots.
            for _ in range(100):
                if app.state.in_flight.current == 0:
                    break
                await asyncio.sleep(0.1)
            assert app.state.in_flight.current == 0
            response = await http.post("/v1/tts", json=HELLO)
            assert response.status_code == 200


def test_not_ready_until_the_engine_loads() -> None:
    engine = PiperEngine(onnx_threads=1)
    app = create_app(engine, make_settings())
    assert not engine.is_loaded
    with serve_in_thread(app) as url:
        wait_ready(url)
        assert engine.is_loaded


def test_no_token_means_loopback_only() -> None:
    open_settings = make_settings(api_token=None)
    check_bind_allowed("127.0.0.1", open_settings)
    check_bind_allowed("::1", open_settings)
    check_bind_allowed("localhost", open_settings)
    for host in ("0.0.0.0", "192.168.1.10", "example.org"):
        with pytest.raises(UnsafeBind, match="TTS_API_TOKEN"):
            check_bind_allowed(host, open_settings)
    check_bind_allowed("0.0.0.0", make_settings())
