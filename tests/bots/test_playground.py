"""The playground's routes over real loopback HTTP: the admin app serving a real ``SayFlow``
over the session's Valkey and the real TTS service (Piper, or Piper behind a cloning
engine's face so the consent flow and the clip decoding run end to end).

Each browser session is logged in through the login link (``/?token=``), as a person is.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bots.admin import AdminContext, AdminLifecycle, create_admin_app
from bots.admin.auth import SESSION_COOKIE
from bots.admin.login_link import announce_login_link, login_link, with_login_token
from bots.asgi_server import serve_app
from bots.chosen_voice import VoiceSource
from bots.consent import CONSENT_WORDING_VERSION
from bots.messages import CONSENT_DECLINED, CONSENT_PROMPT, CONSENT_YES
from bots.metrics import ProcessMetrics
from bots.playground.routes import session_user_id
from bots.say import SayFlow
from storage.redis import RedisHandle
from storage.settings import RateRule, StorageSettings
from storage.usage import UsageReader, utc_today
from tests.bots.harness import Service, bot_settings, running_service, say_flow
from tests.tts_service.audio_samples import clip
from tests.tts_service.engine_wrappers import CloningPiper
from tts_service.engines.piper import PiperEngine

TOKEN = "playground-test-token-0123456789abcdef"
TEXT = "Hello from the playground."

pytestmark = pytest.mark.timeout(60)


@dataclass
class Playground:
    url: str
    flow: SayFlow
    storage: StorageSettings

    @contextlib.asynccontextmanager
    async def browser(self) -> AsyncIterator[httpx.AsyncClient]:
        """A logged-in browser session: the login link's cookie, same-site requests."""
        headers = {"Origin": self.url}
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60) as http:
            response = await http.get(f"/?token={TOKEN}")
            assert response.status_code == 303 and response.headers["location"] == "/"
            assert SESSION_COOKIE in http.cookies
            yield http


@contextlib.asynccontextmanager
async def playground(
    redis: Redis, storage: StorageSettings, service: Service
) -> AsyncIterator[Playground]:
    async with say_flow(redis, storage, service.url) as flow:
        metrics = ProcessMetrics.create()
        context = AdminContext(
            RedisHandle(redis, url_for_logs="test"),
            flow.tts,
            UsageReader(redis, storage),
            metrics,
            platforms={},
            flow=flow,
        )
        app = create_admin_app(
            AdminLifecycle.running(context), bot_settings(admin_token=SecretStr(TOKEN))
        )
        async with serve_app(app, "127.0.0.1", 0) as url:
            yield Playground(url, flow, storage)


@pytest.fixture(scope="module")
def cloning_service(piper_engine: PiperEngine) -> Iterator[Service]:
    with running_service(CloningPiper(piper_engine)) as running:
        yield running


@pytest.fixture
async def piper_play(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> AsyncIterator[Playground]:
    async with playground(redis_client, open_storage, service) as running:
        yield running


@pytest.fixture
async def cloning_play(
    redis_client: Redis, open_storage: StorageSettings, cloning_service: Service
) -> AsyncIterator[Playground]:
    async with playground(redis_client, open_storage, cloning_service) as running:
        yield running


def fields(**values: str) -> dict[str, tuple[None, str]]:
    return {name: (None, value) for name, value in values.items()}


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["message"])


# --- access ------------------------------------------------------------------------------------


async def test_the_page_needs_the_login(piper_play: Playground) -> None:
    async with httpx.AsyncClient(base_url=piper_play.url) as anonymous:
        page = await anonymous.get("/")
        assert page.status_code == 303 and page.headers["location"] == "/admin/login"
        said = await anonymous.post("/play/say", files=fields(text=TEXT))
        assert said.status_code == 401
        wrong = await anonymous.get("/?token=not-the-token")
        assert wrong.status_code == 401 and "Wrong token." in wrong.text
        assert SESSION_COOKIE not in anonymous.cookies
    async with piper_play.browser() as browser:
        page = await browser.get("/")
        assert page.status_code == 200 and 'id="generate"' in page.text
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert TOKEN not in page.text
        script = await browser.get("/play/static/playground.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/")


async def test_another_site_cannot_post(piper_play: Playground) -> None:
    async with piper_play.browser() as browser:
        response = await browser.post(
            "/play/say", files=fields(text=TEXT), headers={"Origin": "https://elsewhere.example"}
        )
    assert response.status_code == 403
    assert error_of(response) == "This was sent from another site."


def test_the_login_link_is_made_only_without_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    kept, made = with_login_token(bot_settings(admin_token=SecretStr(TOKEN)))
    assert made is None and kept.admin_token is not None
    assert kept.admin_token.get_secret_value() == TOKEN
    changed, made = with_login_token(bot_settings(admin_token=SecretStr("  ")))
    assert made is not None and len(made) >= 43
    assert changed.admin_token is not None and changed.admin_token.get_secret_value() == made
    assert with_login_token(bot_settings())[1] != made, "a new one each start"
    announce_login_link("http://127.0.0.1:8089", made)
    assert capsys.readouterr().out.startswith(
        f"saybot: open {login_link('http://127.0.0.1:8089', made)} "
    )


# --- speaking ------------------------------------------------------------------------------------


async def test_generate_answers_audio_and_counts_as_web(
    piper_play: Playground, service: Service, redis_client: Redis
) -> None:
    async with piper_play.browser() as browser:
        info = (await browser.get("/play/info")).json()
        assert info["engine"]["name"] == "piper" and info["ready"] is True
        assert info["saved_voice"] is False
        before = service.counter.tts_requests
        first = await browser.post(
            "/play/say", files=fields(text=TEXT, seed="4", exaggeration="0.7", format="wav")
        )
        again = await browser.post(
            "/play/say", files=fields(text=TEXT, seed="4", exaggeration="0.7", format="wav")
        )
    assert first.status_code == 200 and first.headers["content-type"] == "audio/wav"
    assert first.headers["x-saybot-cached"] == "0" and again.headers["x-saybot-cached"] == "1"
    assert first.content == again.content
    assert first.headers["x-saybot-voice"] == VoiceSource.BUILT_IN.value
    assert service.counter.tts_requests == before + 1
    await piper_play.flow.settled()
    summary = await UsageReader(redis_client, piper_play.storage).summary(utc_today(), utc_today())
    web = summary.by_platform["web"]
    assert (web.requests, web.hits, web.misses) == (2, 1, 1)


@pytest.mark.parametrize(
    ("sent", "sentence"),
    [
        ({"text": " "}, "I can't say that: text is empty; give 1 to 1000 characters to speak."),
        ({"text": TEXT, "seed": "1.5"}, "I can't say that: seed must be a whole number ≥ 0."),
        ({"text": TEXT, "temperature": "hot"}, "I can't say that: temperature must be a number"),
        ({"text": TEXT, "cfg_weight": "7"}, "I can't say that: cfg_weight must be a number"),
        ({"text": TEXT, "format": "flac"}, "I can't say that: format must be one of"),
        ({"text": TEXT, "voice": "upload"}, "I can't use that voice clip: there is none"),
    ],
)
async def test_bad_input_gets_the_bots_sentence(
    piper_play: Playground, sent: dict[str, str], sentence: str
) -> None:
    async with piper_play.browser() as browser:
        response = await browser.post("/play/say", files=fields(**sent))
    assert response.status_code == 400
    assert error_of(response).startswith(sentence)


async def test_a_clip_with_the_local_engine_gets_the_gpu_sentence(piper_play: Playground) -> None:
    async with piper_play.browser() as browser:
        response = await browser.post(
            "/play/say",
            data={"text": TEXT, "voice": "upload"},
            files={"clip": ("me.wav", clip("wav"), "audio/wav")},
        )
    assert response.status_code == 400
    assert error_of(response) == (
        "Voice cloning needs the GPU engine, which isn't running right now — "
        "send your text without a voice clip."
    )


async def test_an_oversized_upload_is_refused(piper_play: Playground) -> None:
    limit = piper_play.flow.clip_limits.max_bytes
    async with piper_play.browser() as browser:
        response = await browser.post(
            "/play/say",
            data={"text": TEXT, "voice": "upload"},
            files={"clip": ("big.wav", io.BytesIO(b"\0" * (limit + 128 * 1024)), "audio/wav")},
        )
    assert response.status_code == 400
    assert "I can't use that voice clip: it is over the 10 MB limit" in error_of(response)


async def test_the_rate_limit_is_per_browser_session(
    redis_client: Redis, storage_settings: StorageSettings, service: Service
) -> None:
    strict = storage_settings.model_copy(
        update={"ratelimit_platforms": {"web": RateRule(per_minute=1, burst=2)}}
    )
    async with (
        playground(redis_client, strict, service) as play,
        play.browser() as first,
        play.browser() as second,
    ):
        answers = [
            (await first.post("/play/say", files=fields(text=f"{TEXT} {n}"))).status_code
            for n in range(3)
        ]
        other = await second.post("/play/say", files=fields(text=TEXT))
        refused = await first.post("/play/say", files=fields(text=TEXT))
    assert answers == [200, 200, 429]
    assert other.status_code == 200, "another browser has its own limit"
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert error_of(refused).startswith("You're going a bit fast — try again in ")


# --- a clip, with consent, on a cloning engine ---------------------------------------------------


async def test_an_uploaded_clip_asks_consent_once_then_clones(cloning_play: Playground) -> None:
    webm = clip("webm")  # what MediaRecorder sends: decoded by PyAV on both sides
    async with cloning_play.browser() as browser:
        asked = await browser.post(
            "/play/say",
            data={"text": TEXT, "voice": "record"},
            files={"clip": ("recording.webm", webm, "audio/webm;codecs=opus")},
        )
        assert asked.status_code == 202
        question = asked.json()["consent"]
        assert question["prompt"] == CONSENT_PROMPT and question["yes"] == CONSENT_YES
        spoken = await browser.post("/play/consent", json={"id": question["id"], "accepted": True})
        assert spoken.status_code == 200 and spoken.headers["content-type"] == "audio/ogg"
        assert spoken.headers["x-saybot-voice"] == VoiceSource.ATTACHED.value
        again = await browser.post(
            "/play/say",
            data={"text": f"{TEXT} Again.", "voice": "record"},
            files={"clip": ("recording.webm", webm, "audio/webm")},
        )
        assert again.status_code == 200, "asked once per recording"
        lapsed = await browser.post("/play/consent", json={"id": question["id"], "accepted": True})
        assert lapsed.status_code == 400 and "lapsed" in error_of(lapsed)
        user_id = session_user_id(browser.cookies[SESSION_COOKIE])
    consents = await cloning_play.flow.consents.of_user("web", user_id)
    assert [c.wording_version for c in consents] == [CONSENT_WORDING_VERSION]


async def test_declining_drops_the_clip(cloning_play: Playground) -> None:
    async with cloning_play.browser() as browser:
        asked = await browser.post(
            "/play/say",
            data={"text": TEXT, "voice": "upload"},
            files={"clip": ("me.flac", clip("flac"), "audio/flac")},
        )
        pending = asked.json()["consent"]["id"]
        declined = await browser.post("/play/consent", json={"id": pending, "accepted": False})
    assert declined.status_code == 200 and declined.json() == {"message": CONSENT_DECLINED}


async def test_a_saved_voice_speaks_and_is_forgotten(cloning_play: Playground) -> None:
    async with cloning_play.browser() as browser:
        asked = await browser.post(
            "/play/voice", data={"voice": "upload"}, files={"clip": ("me.wav", clip("wav"))}
        )
        assert asked.status_code == 202
        saved = await browser.post(
            "/play/consent", json={"id": asked.json()["consent"]["id"], "accepted": True}
        )
        assert saved.json()["message"].startswith("Saved:")
        assert (await browser.get("/play/info")).json()["saved_voice"] is True
        spoken = await browser.post("/play/say", files=fields(text=TEXT, voice="saved"))
        assert spoken.headers["x-saybot-voice"] == VoiceSource.SAVED.value
        forgotten = await browser.post("/play/forget")
        assert forgotten.json()["message"].startswith("Done: deleted your 1 saved voice clip(s)")
        assert (await browser.get("/play/info")).json()["saved_voice"] is False


async def test_starting_says_so(redis_client: Redis, open_storage: StorageSettings) -> None:
    lifecycle = AdminLifecycle(ProcessMetrics.create(), ["redis", "tts"])
    app = create_admin_app(lifecycle, bot_settings(admin_token=SecretStr(TOKEN)))
    async with (
        serve_app(app, "127.0.0.1", 0) as url,
        httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        ) as http,
    ):
        info = await http.get("/play/info")
        said = await http.post("/play/say", files=fields(text=TEXT))
    assert info.status_code == 503 and said.status_code == 503
    assert error_of(said) == "saybot is starting; try again in a moment."
