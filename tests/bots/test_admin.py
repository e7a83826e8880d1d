"""The admin endpoint over real loopback HTTP: real Valkey, real TTS service (Piper).

Usage numbers are checked exactly against counters written with ``UsageRecorder``;
``/readyz`` against a real embedded Valkey that is stopped and started again; ``/metrics``
through ``prometheus_client``'s own parser; and the whole wiring through ``run()``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bots.admin import (
    AdminAuth,
    AdminBindRefused,
    AdminContext,
    AdminLifecycle,
    check_admin_bind,
    create_admin_app,
)
from bots.admin.auth import SESSION_COOKIE
from bots.admin.reports import MonthSpend
from bots.asgi_server import serve_app
from bots.chosen_voice import VoiceSource
from bots.errors import InvalidInput
from bots.metrics import ProcessMetrics, quantile
from bots.run import run
from bots.say import SayFlow, SayRequest
from bots.tts_client import TTSClient
from storage.redis import RedisHandle, open_redis
from storage.settings import StorageSettings
from storage.spend import SpendLedger, month_of
from storage.usage import UsageReader, UsageRecorder, utc_today
from tests.bots.harness import FAST_RETRY, Service, bot_settings, saved_with_consent
from tests.redis_fixtures import free_port
from tests.standins.telegram_api import TOKEN, TelegramStandin
from tests.tts_helpers import API_TOKEN
from tests.tts_service.audio_samples import clip

ADMIN_TOKEN = "admin-test-token-0123456789abcdef"
MESSAGE = "Zebras whisper the purple password at midnight"  # must never come back
PRICE = 0.002  # per GPU second, round for exact sums
BUDGET = 1.0  # USD a month
ENDPOINTS = ("/readyz", "/usage", "/metrics")

pytestmark = pytest.mark.timeout(60)


# --- a served admin app ----------------------------------------------------------------------


@dataclass
class Admin:
    url: str
    http: httpx.AsyncClient  # sends the admin token
    metrics: ProcessMetrics
    connected: dict[str, bool] = field(default_factory=dict)

    def anonymous(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10)


@contextlib.asynccontextmanager
async def admin_server(
    redis: RedisHandle,
    tts: TTSClient,
    storage: StorageSettings,
    *,
    token: str | None = ADMIN_TOKEN,
    connected: dict[str, bool] | None = None,
    metrics: ProcessMetrics | None = None,
) -> AsyncIterator[Admin]:
    """``create_admin_app`` served on a free loopback port, as ``serve_admin`` does."""
    state = {"telegram": True} if connected is None else connected

    def status(name: str) -> Callable[[], bool]:
        return lambda: state[name]

    metrics = metrics or ProcessMetrics.create()
    context = AdminContext(
        redis,
        tts,
        UsageReader(redis.client, storage),
        metrics,
        platforms={name: status(name) for name in state},
        probe_timeout_s=2.0,
        spend=MonthSpend(SpendLedger(redis.client), BUDGET),
    )
    settings = bot_settings(admin_token=SecretStr(token) if token is not None else None)
    app = create_admin_app(context, settings)
    headers = {"Authorization": f"Bearer {token}"} if token and token.strip() else {}
    async with (
        serve_app(app, "127.0.0.1", 0) as url,
        httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http,
    ):
        yield Admin(url, http, metrics, state)


@pytest.fixture
async def tts(service: Service) -> AsyncIterator[TTSClient]:
    client = TTSClient(service.url, API_TOKEN, read_timeout_s=60, retry=FAST_RETRY)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def storage(storage_settings: StorageSettings) -> StorageSettings:
    return storage_settings.model_copy(
        update={"ratelimit_enabled": False, "price_per_gpu_second": PRICE}
    )


@pytest.fixture
def redis_handle(redis_client: Redis) -> RedisHandle:
    """The session Valkey as ``run()`` sees it (closed by ``redis_client``'s fixture)."""
    return RedisHandle(redis_client, url_for_logs="test")


@pytest.fixture
async def admin(
    redis_handle: RedisHandle, tts: TTSClient, storage: StorageSettings
) -> AsyncIterator[Admin]:
    async with admin_server(redis_handle, tts, storage) as running:
        yield running


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus exposition, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(
    parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return parsed[(name, frozenset(labels.items()))]


# --- known usage -----------------------------------------------------------------------------


async def seed_usage(redis: Redis, storage: StorageSettings) -> tuple[dt.date, dt.date]:
    """Seven requests over three days (the middle one empty), one of them cloned, a consent
    and a forget; returns (first, last) day."""
    recorder = UsageRecorder(redis, storage)
    last = utc_today()
    first = last - dt.timedelta(days=2)
    cloned_miss = {"audio_seconds": 2.0, "synthesis_seconds": 1.5, "cloned": True}
    for platform, user, outcome, kwargs, day in [
        ("telegram", "1001", "miss", cloned_miss, first),
        ("telegram", "1001", "hit", {"audio_seconds": 2.0}, first),
        ("discord", "2002", "error", {"error_code": "invalid_input"}, first),
        ("telegram", "1001", "hit", {"audio_seconds": 2.0}, last),
        ("discord", "2002", "miss", {"audio_seconds": 3.25, "synthesis_seconds": 0.5}, last),
        ("discord", "3003", "error", {"error_code": "tts_busy"}, last),
        ("telegram", "4004", "error", {"error_code": "tts_busy"}, last),
    ]:
        recorder.record_soon(platform, user, outcome, day=day, **kwargs)  # type: ignore[arg-type]
    recorder.event_soon("telegram", "consents", day=first)
    recorder.event_soon("discord", "forgets", day=last)
    await recorder.flush()
    return first, last


def counts(
    requests: int,
    hits: int,
    misses: int,
    errors: int,
    audio: float,
    synthesis: float,
    cost: float,
    *,
    cloned: int = 0,
    consents: int = 0,
    forgets: int = 0,
) -> dict[str, Any]:
    lookups = hits + misses
    return {
        "requests": requests,
        "hits": hits,
        "misses": misses,
        "errors": errors,
        "hit_ratio": hits / lookups if lookups else None,
        "audio_seconds": audio,
        "synthesis_seconds": synthesis,
        "estimated_cost": cost,
        "cloned": cloned,
        "consents": consents,
        "forgets": forgets,
    }


async def test_usage_reports_exact_numbers(
    admin: Admin, redis_client: Redis, storage: StorageSettings
) -> None:
    first, last = await seed_usage(redis_client, storage)
    await SpendLedger(redis_client).add("telegram", "1001", None, 10.0)
    middle = first + dt.timedelta(days=1)
    response = await admin.http.get(
        "/usage", params={"from": first.isoformat(), "to": last.isoformat(), "top": 3}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "currency": "USD",
        "price_per_gpu_second": PRICE,
        "totals": counts(7, 2, 2, 3, 9.25, 2.0, 0.004, cloned=1, consents=1, forgets=1),
        "errors_by_code": {"tts_busy": 2, "invalid_input": 1},
        "per_day": [
            {
                "day": first.isoformat(),
                **counts(3, 1, 1, 1, 4.0, 1.5, 0.003, cloned=1, consents=1),
            },
            {"day": middle.isoformat(), **counts(0, 0, 0, 0, 0.0, 0.0, 0.0)},
            {"day": last.isoformat(), **counts(4, 1, 1, 2, 5.25, 0.5, 0.001, forgets=1)},
        ],
        "by_platform": {
            "discord": {
                **counts(3, 0, 1, 2, 3.25, 0.5, 0.001, forgets=1),
                "errors_by_code": {"invalid_input": 1, "tts_busy": 1},
                "per_day": [
                    {"day": first.isoformat(), **counts(1, 0, 0, 1, 0.0, 0.0, 0.0)},
                    {"day": middle.isoformat(), **counts(0, 0, 0, 0, 0.0, 0.0, 0.0)},
                    {
                        "day": last.isoformat(),
                        **counts(2, 0, 1, 1, 3.25, 0.5, 0.001, forgets=1),
                    },
                ],
            },
            "telegram": {
                **counts(4, 2, 1, 1, 6.0, 1.5, 0.003, cloned=1, consents=1),
                "errors_by_code": {"tts_busy": 1},
                "per_day": [
                    {
                        "day": first.isoformat(),
                        **counts(2, 1, 1, 0, 4.0, 1.5, 0.003, cloned=1, consents=1),
                    },
                    {"day": middle.isoformat(), **counts(0, 0, 0, 0, 0.0, 0.0, 0.0)},
                    {"day": last.isoformat(), **counts(2, 1, 0, 1, 2.0, 0.0, 0.0)},
                ],
            },
        },
        "top_users": [
            {
                "platform": "telegram",
                "user_id": "1001",
                **counts(3, 2, 1, 0, 6.0, 1.5, 0.003, cloned=1),
            },
            {"platform": "discord", "user_id": "2002", **counts(2, 0, 1, 1, 3.25, 0.5, 0.001)},
            {"platform": "discord", "user_id": "3003", **counts(1, 0, 0, 1, 0.0, 0.0, 0.0)},
        ],
        "spend_this_month": {
            "month": month_of(dt.datetime.now(dt.UTC)),
            "gpu_seconds": 10.0,
            "estimated_cost": 0.02,
            "budget": BUDGET,
            "budget_used": 0.02,
        },
    }


async def test_usage_defaults_to_the_last_two_weeks(
    admin: Admin, redis_client: Redis, storage: StorageSettings
) -> None:
    await seed_usage(redis_client, storage)
    body = (await admin.http.get("/usage")).json()
    assert body["to"] == utc_today().isoformat()
    assert len(body["per_day"]) == 14
    assert body["totals"]["requests"] == 7
    assert len(body["top_users"]) == 4


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2024-03-02", "to": "2024-03-01"}, "before"),
        ({"from": "yesterday"}, "from must be a date, YYYY-MM-DD"),
        ({"to": "2024-13-01"}, "to must be a date, YYYY-MM-DD"),
        ({"from": "2020-01-01", "to": "2024-01-01"}, "at most 400 days"),
        ({"top": "1000"}, "top"),
    ],
)
async def test_usage_rejects_bad_ranges(admin: Admin, params: dict[str, str], message: str) -> None:
    response = await admin.http.get("/usage", params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_parameters" and message in error["message"]


# --- auth ------------------------------------------------------------------------------------


async def test_healthz_needs_no_token(admin: Admin) -> None:
    async with admin.anonymous() as anonymous:
        response = await anonymous.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_endpoints_refuse_a_missing_or_wrong_token(admin: Admin, path: str) -> None:
    async with admin.anonymous() as anonymous:
        missing = await anonymous.get(path)
        wrong = await anonymous.get(path, headers={"Authorization": "Bearer not-the-token"})
        almost = await anonymous.get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"})
        basic = await anonymous.get(path, headers={"Authorization": f"Basic {ADMIN_TOKEN}"})
        forged = await anonymous.get(
            path, headers={"Cookie": f"{SESSION_COOKIE}=9999999999.{'0' * 64}"}
        )
        right = await anonymous.get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    for refused in (missing, wrong, almost, basic, forged):
        assert refused.status_code == 401, (path, refused.text)
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert refused.json()["error"]["code"] == "unauthorized"
        assert ADMIN_TOKEN not in refused.text
    assert right.status_code == 200


async def test_the_dashboard_sends_strangers_to_the_login_form(admin: Admin) -> None:
    async with admin.anonymous() as anonymous:
        page = await anonymous.get("/admin")
        form = await anonymous.get("/admin/login")
        css = await anonymous.get("/admin/static/admin.css")
        other = await anonymous.get("/admin/static/..%2Fapp.py")
    assert page.status_code == 303 and page.headers["location"] == "/admin/login"
    assert form.status_code == 200 and 'name="token"' in form.text
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert other.status_code == 404
    for docs in ("/docs", "/openapi.json"):
        assert (await admin.http.get(docs)).status_code == 404


async def test_login_sets_an_httponly_session_cookie_without_the_token(admin: Admin) -> None:
    async with admin.anonymous() as browser:
        refused = await browser.post("/admin/login", data={"token": "guess"})
        assert refused.status_code == 401 and "Wrong token" in refused.text
        assert SESSION_COOKIE not in browser.cookies

        login = await browser.post("/admin/login", data={"token": ADMIN_TOKEN})
        assert login.status_code == 303 and login.headers["location"] == "/admin"
        cookie = login.headers["set-cookie"]
        assert ADMIN_TOKEN not in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert re.search(r"Max-Age=43200", cookie)

        page = await browser.get("/admin")
        assert page.status_code == 200 and 'id="chart-requests"' in page.text
        assert (await browser.get("/usage")).status_code == 200  # the cookie works for JSON too

        logout = await browser.post("/admin/logout")
        assert logout.status_code == 303 and logout.headers["location"] == "/admin/login"
        assert (await browser.get("/admin")).status_code == 303


async def test_the_session_cookie_is_secure_behind_an_https_proxy(admin: Admin) -> None:
    """uvicorn trusts X-Forwarded-Proto from loopback (its default ``forwarded_allow_ips``),
    where a TLS-terminating proxy on the same box connects from."""
    async with admin.anonymous() as browser:
        plain = await browser.post("/admin/login", data={"token": ADMIN_TOKEN})
        proxied = await browser.post(
            "/admin/login", data={"token": ADMIN_TOKEN}, headers={"X-Forwarded-Proto": "https"}
        )
    assert plain.status_code == proxied.status_code == 303
    assert "secure" not in plain.headers["set-cookie"].lower()
    assert "; Secure" in proxied.headers["set-cookie"]


async def test_sessions_expire_and_end_when_the_token_changes(redis_client: Redis) -> None:
    now = [1_000_000.0]
    auth = AdminAuth(
        SecretStr(ADMIN_TOKEN), redis=redis_client, session_ttl_s=60, clock=lambda: now[0]
    )
    session = await auth.new_session()
    assert await auth.session_valid(session)
    other = session[:-1] + ("A" if session[-1] != "A" else "B")
    assert not await auth.session_valid(other), "only the id that was handed out"
    assert not await auth.session_valid(f"{now[0] + 60:.0f}.{'0' * 64}")
    renamed = AdminAuth(SecretStr(ADMIN_TOKEN + "2"), redis=redis_client, clock=lambda: now[0])
    assert not await renamed.session_valid(session)
    now[0] += 61
    assert not await auth.session_valid(session)


async def test_without_admin_token_only_healthz_answers(
    redis_handle: RedisHandle, tts: TTSClient, storage: StorageSettings
) -> None:
    for token in (None, "  "):  # a blank ADMIN_TOKEN= is no token, never "anything goes"
        async with admin_server(redis_handle, tts, storage, token=token) as admin:
            assert (await admin.http.get("/healthz")).status_code == 200
            for path in ENDPOINTS:
                response = await admin.http.get(path, headers={"Authorization": "Bearer x"})
                assert response.status_code == 401
                error = response.json()["error"]
                assert error["code"] == "admin_token_not_configured"
                assert "ADMIN_TOKEN is not configured" in error["message"]
            form = await admin.http.get("/admin/login")
            assert form.status_code == 401 and "ADMIN_TOKEN is not configured" in form.text
            login = await admin.http.post("/admin/login", data={"token": ""})
            assert login.status_code == 401 and SESSION_COOKIE not in login.headers.get(
                "set-cookie", ""
            )


def test_no_public_bind_without_a_token() -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        check_admin_bind(bot_settings(admin_host=host))
    check_admin_bind(bot_settings(admin_host="0.0.0.0", admin_token=SecretStr(ADMIN_TOKEN)))
    for host in ("0.0.0.0", "192.168.1.5", "admin.example.com"):
        with pytest.raises(AdminBindRefused, match="ADMIN_TOKEN"):
            check_admin_bind(bot_settings(admin_host=host))


async def test_run_refuses_a_public_admin_without_a_token_before_starting_anything(
    tmp_path: Path,
) -> None:
    storage = StorageSettings(_env_file=None, redis_url=None, embedded_data_dir=tmp_path)  # type: ignore[call-arg]
    with pytest.raises(AdminBindRefused):
        await run(bot_settings(admin_host="0.0.0.0"), storage, asyncio.Event())
    assert not await asyncio.to_thread(lambda: list(tmp_path.iterdir())), "no Valkey started"


# --- readiness -------------------------------------------------------------------------------


async def test_readyz_names_each_component(admin: Admin) -> None:
    response = await admin.http.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    components = body["components"]
    assert components["redis"] == {"ok": True, "embedded": False}
    assert components["tts"]["ok"] is True
    assert components["tts"]["engine"]["name"] == "piper"
    assert set(components["tts"]["engine"]) == {
        "name",
        "model_version",
        "sample_rate",
        "can_clone_voice",
    }
    assert components["telegram"] == {"ok": True}

    admin.connected["telegram"] = False
    response = await admin.http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["reason"] == "telegram: not connected"
    assert response.json()["components"]["telegram"] == {"ok": False, "reason": "not connected"}


async def test_readyz_is_503_when_the_tts_service_is_unreachable(
    redis_handle: RedisHandle, storage: StorageSettings
) -> None:
    dead = TTSClient(f"http://127.0.0.1:{free_port()}", API_TOKEN, retry=FAST_RETRY)
    try:
        async with admin_server(redis_handle, dead, storage) as admin:
            response = await admin.http.get("/readyz")
    finally:
        await dead.aclose()
    assert response.status_code == 503
    body = response.json()
    assert body["components"]["tts"]["ok"] is False
    assert body["reason"].startswith("tts: the TTS service is unreachable")
    assert body["components"]["redis"]["ok"] is True


UPSTREAM_MARKER = "proxy-error-page-XYZZY-4711"  # text of whatever answers for the service


def failing_tts_service(status: int, body: str, media_type: str) -> Starlette:
    """A stand-in for what may answer at TTS_SERVICE_URL: a proxy's error page, say."""

    async def readyz(_: Request) -> Response:
        return Response(body, status_code=status, media_type=media_type)

    return Starlette(routes=[Route("/readyz", readyz)])


@pytest.mark.parametrize(
    ("status", "body", "media_type", "code", "reason"),
    [
        (
            502,
            f"<html><body><h1>502 Bad Gateway</h1><p>{UPSTREAM_MARKER}</p></body></html>",
            "text/html",
            "tts_unavailable",
            "the TTS service is unreachable or failing",
        ),
        (
            503,
            f"<html><body><h1>503</h1><p>{UPSTREAM_MARKER}</p></body></html>",
            "text/html",
            "tts_busy",
            "the TTS service is busy or still loading its engine",
        ),
        (
            500,
            f'{{"error": {{"code": "{UPSTREAM_MARKER}", "message": "{UPSTREAM_MARKER}"}}}}',
            "application/json",
            "tts_unavailable",
            "the TTS service is unreachable or failing",
        ),
    ],
    ids=["502-html", "503-html", "500-json-error"],
)
async def test_readyz_never_serves_the_tts_services_own_words(
    redis_handle: RedisHandle,
    storage: StorageSettings,
    caplog: pytest.LogCaptureFixture,
    status: int,
    body: str,
    media_type: str,
    code: str,
    reason: str,
) -> None:
    caplog.set_level(logging.WARNING)
    upstream = failing_tts_service(status, body, media_type)
    async with serve_app(upstream, "127.0.0.1", 0) as upstream_url:
        client = TTSClient(upstream_url, API_TOKEN, retry=FAST_RETRY)
        try:
            async with admin_server(redis_handle, client, storage) as admin:
                response = await admin.http.get("/readyz")
                page = await admin.http.get("/admin")
        finally:
            await client.aclose()
    assert response.status_code == 503
    assert response.json()["reason"] == f"tts: {reason}"
    assert response.json()["components"]["tts"] == {"ok": False, "code": code, "reason": reason}
    assert UPSTREAM_MARKER not in response.text
    assert page.status_code == 200 and reason in page.text
    assert UPSTREAM_MARKER not in page.text
    assert UPSTREAM_MARKER in caplog.text, "the detail is logged instead"


async def test_readyz_says_starting_until_run_has_started_every_part_then_stopping(
    redis_handle: RedisHandle, tts: TTSClient, storage: StorageSettings
) -> None:
    metrics = ProcessMetrics.create()
    lifecycle = AdminLifecycle(metrics, ["redis", "tts", "telegram"])
    app = create_admin_app(lifecycle, bot_settings(admin_token=SecretStr(ADMIN_TOKEN)))
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        serve_app(app, "127.0.0.1", 0) as url,
        httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http,
    ):
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        starting = await http.get("/readyz")
        assert starting.status_code == 503
        assert starting.json() == {
            "status": "not_ready",
            "reason": "starting: waiting for redis, tts, telegram",
            "components": {
                name: {"ok": False, "reason": "starting"} for name in ("redis", "tts", "telegram")
            },
        }
        lifecycle.part_started("redis")
        assert (await http.get("/readyz")).json()["reason"] == "starting: waiting for tts, telegram"
        usage = await http.get("/usage")
        assert usage.status_code == 503 and usage.headers["Retry-After"] == "2"
        assert usage.json()["error"]["code"] == "starting"
        assert (await http.get("/metrics")).status_code == 200, "Prometheus may scrape at once"
        page = await http.get("/admin")
        assert page.status_code == 200 and "Usage is unavailable: saybot is starting" in page.text
        assert 'data-component="tts"' in page.text

        context = AdminContext(
            redis_handle,
            tts,
            UsageReader(redis_handle.client, storage),
            metrics,
            platforms={"telegram": lambda: True},
        )
        lifecycle.started(context)
        running = await http.get("/readyz")
        assert running.status_code == 200, running.text
        assert set(running.json()["components"]) == {"redis", "tts", "telegram"}
        assert (await http.get("/usage")).status_code == 200

        lifecycle.stopping()
        stopping = await http.get("/readyz")
        assert stopping.status_code == 503
        assert stopping.json() == {"status": "not_ready", "reason": "stopping", "components": {}}
        assert (await http.get("/usage")).json()["error"]["code"] == "stopping"
        assert (await http.get("/healthz")).status_code == 200
    with pytest.raises(ValueError, match="ProcessMetrics"):
        AdminLifecycle(ProcessMetrics.create(), []).started(context)


async def wait_for_status(admin: Admin, status: int, timeout_s: float = 15.0) -> httpx.Response:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        response = await admin.http.get("/readyz")
        if response.status_code == status or asyncio.get_running_loop().time() > deadline:
            return response
        await asyncio.sleep(0.1)


async def test_readyz_follows_the_embedded_valkey_down_and_back(
    tmp_path: Path, tts: TTSClient
) -> None:
    settings = StorageSettings(  # type: ignore[call-arg]
        _env_file=None,
        redis_url=None,
        embedded_data_dir=tmp_path,
        embedded_port=free_port(),
        price_per_gpu_second=PRICE,
    )
    handle = await open_redis(settings)
    try:
        assert handle.is_embedded
        async with admin_server(handle, tts, settings) as admin:

            async def redis_errors() -> float:
                return sample(
                    samples((await admin.http.get("/metrics")).text), "saybot_redis_errors_total"
                )

            up = await admin.http.get("/readyz")
            assert up.status_code == 200, up.text
            assert up.json()["components"]["redis"] == {"ok": True, "embedded": True}
            assert await redis_errors() == 0

            server = handle._servers[0]  # the data server child, stopped as an outage would
            assert server is not None
            await asyncio.to_thread(server.stop)
            down = await wait_for_status(admin, 503)
            assert down.status_code == 503, down.text
            assert down.json()["reason"] == "redis: not answering PING"
            assert down.json()["components"]["redis"] == {
                "ok": False,
                "embedded": True,
                "reason": "not answering PING",
            }
            # The admin's own failed PINGs and reads count as Redis errors too.
            failed_pings = await redis_errors()
            assert failed_pings >= 1
            assert (await admin.http.get("/readyz")).status_code == 503
            assert await redis_errors() == failed_pings + 1
            usage = await admin.http.get("/usage")
            assert usage.status_code == 503
            assert usage.json()["error"]["code"] == "storage_unavailable"
            assert await redis_errors() == failed_pings + 2
            down_metrics = samples((await admin.http.get("/metrics")).text)
            assert sample(down_metrics, "saybot_redis_up") == 0
            page = await admin.http.get("/admin")  # the dashboard still shows what it can
            assert page.status_code == 200 and "Usage is unavailable" in page.text
            assert 'data-component="redis"' in page.text and "not answering PING" in page.text

            await asyncio.to_thread(server.start, 10.0)
            back = await wait_for_status(admin, 200)
            assert back.status_code == 200, back.text
            assert (await admin.http.get("/usage")).status_code == 200
            assert sample(samples((await admin.http.get("/metrics")).text), "saybot_redis_up") == 1
    finally:
        await handle.aclose()


# --- metrics ---------------------------------------------------------------------------------


async def test_metrics_count_the_flow_and_parse(
    admin: Admin, redis_client: Redis, storage: StorageSettings, tts: TTSClient
) -> None:
    metrics = admin.metrics
    flow = SayFlow.over_redis(
        redis_client, storage, tts, metrics=metrics.storage, observer=metrics.observer
    )
    sent_clip = clip("wav")  # the user's saved voice: it must never come back either
    voice_id = (await saved_with_consent(flow, "telegram", "1001", sent_clip)).voice_id
    stored_clip = (await flow.voices.lookup_clip(voice_id)).clip
    assert stored_clip is not None
    request = SayRequest(platform="telegram", user_id="1001", chat_id="1001", text=MESSAGE)
    first = await flow.say(request)
    second = await flow.say(request)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert first.voice is VoiceSource.BUILT_IN and first.note == "voice cloning is off right now"
    with pytest.raises(InvalidInput):
        await flow.say(SayRequest(platform="discord", user_id="7", chat_id="7", text=" "))
    await flow.settled()
    metrics.observer.tts_called(0.5, "tts_busy")  # what a refused synthesis reports
    metrics.observer.request_started("discord")  # one still in flight

    response = await admin.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    parsed = samples(response.text)
    assert sample(parsed, "saybot_requests_total", platform="telegram", outcome="miss") == 1
    assert sample(parsed, "saybot_requests_total", platform="telegram", outcome="hit") == 1
    assert sample(parsed, "saybot_requests_total", platform="discord", outcome="invalid_input") == 1
    assert sample(parsed, "saybot_request_seconds_count", platform="telegram") == 2
    assert sample(parsed, "saybot_request_seconds_bucket", platform="telegram", le="+Inf") == 2
    assert sample(parsed, "saybot_requests_in_flight", platform="telegram") == 0
    assert sample(parsed, "saybot_requests_in_flight", platform="discord") == 1
    assert sample(parsed, "saybot_tts_call_seconds_count") == 2  # the real call and the refusal
    assert sample(parsed, "saybot_tts_errors_total", code="tts_busy") == 1
    assert sample(parsed, "saybot_cache_hits_total") == 1
    assert sample(parsed, "saybot_cache_misses_total") == 1
    assert sample(parsed, "saybot_redis_errors_total") == 0
    assert sample(parsed, "saybot_redis_up") == 1
    assert any(name == "process_cpu_seconds_total" for name, _ in parsed)

    # Nothing secret, nothing users said and none of their voice in any admin response.
    answers = [response]
    for path in ("/readyz", "/usage", "/admin"):
        answer = await admin.http.get(path)
        assert answer.status_code == 200, (path, answer.text)
        answers.append(answer)
    voice_traces = [*clip_traces(sent_clip), *clip_traces(stored_clip)]
    for answer in answers:
        body = answer.text
        assert MESSAGE not in body and "purple password" not in body
        assert ADMIN_TOKEN not in body and API_TOKEN not in body
        assert not [trace for trace in voice_traces if trace in answer.content], answer.url


def clip_traces(data: bytes) -> list[bytes]:
    """Pieces any copy of ``data`` in a response would contain: raw, base64 and hex.

    A 48-byte run from the middle at an offset divisible by 3 encodes to the same base64 text
    inside the whole clip's encoding, so a served clip (or any part of it around its middle)
    shows up here whichever of the three ways it was written.
    """
    middle = len(data) // 2 // 3 * 3
    run = data[middle : middle + 48]
    assert len(run) == 48, "a clip long enough to tell apart from chance"
    return [run, base64.b64encode(run), base64.urlsafe_b64encode(run), run.hex().encode()]


def test_percentiles_are_interpolated_inside_histogram_buckets() -> None:
    buckets = [(0.1, 0.0), (0.5, 100.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.3)
    assert quantile(0.99, buckets) == pytest.approx(0.496)
    assert quantile(0.5, [(1.0, 0.0), (float("inf"), 0.0)]) is None
    assert quantile(0.99, [(1.0, 1.0), (float("inf"), 10.0)]) == 1.0, "+Inf: the last bound"

    metrics = ProcessMetrics.create()
    for seconds in [0.3] * 90 + [3.0] * 10:
        metrics.observer.request_finished("telegram", "hit", seconds)
    percentiles = metrics.observer.request_percentiles()
    assert percentiles.count == 100
    assert percentiles.p50 == pytest.approx(0.25 + 0.25 * 50 / 90)
    assert percentiles.p90 == pytest.approx(0.5)
    assert percentiles.p99 == pytest.approx(2.0 + 2.0 * 9 / 10)
    assert ProcessMetrics.create().observer.tts_percentiles().p50 is None


def test_each_process_metrics_is_independent() -> None:
    one, two = ProcessMetrics.create(), ProcessMetrics.create()
    one.observer.request_finished("telegram", "hit", 0.1)
    one.storage.cache_hits += 3
    parsed = samples(generate_latest(two.registry).decode())
    assert sample(parsed, "saybot_cache_hits_total") == 0
    assert not any(name == "saybot_requests_total" for name, _ in parsed)
    assert sample(samples(generate_latest(one.registry).decode()), "saybot_cache_hits_total") == 3


# --- the dashboard as HTML -------------------------------------------------------------------


async def test_dashboard_draws_one_bar_per_day(
    admin: Admin, redis_client: Redis, storage: StorageSettings
) -> None:
    await seed_usage(redis_client, storage)
    for days in (7, 30):
        page = await admin.http.get("/admin", params={"days": days})
        assert page.status_code == 200
        html = page.text
        requests_svg = html.split('id="chart-requests"')[1].split("</svg>")[0]
        cost_svg = html.split('id="chart-cost"')[1].split("</svg>")[0]
        assert requests_svg.count('<g class="bar"') == days
        assert cost_svg.count('<g class="bar"') == days
        ratio_svg = html.split('id="chart-hit-ratio"')[1].split("</svg>")[0]
        assert ratio_svg.count('<circle class="point"') == 2  # two days had cache lookups
    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "<script" not in html and "style=" not in html


async def test_dashboard_shows_cloning_counts_and_the_months_spend_against_the_budget(
    admin: Admin, redis_client: Redis, storage: StorageSettings
) -> None:
    await seed_usage(redis_client, storage)
    await SpendLedger(redis_client).add("discord", "2002", "77", 250.0)  # $0.50 of $1
    html = (await admin.http.get("/admin", params={"days": 7})).text
    for tile, value in [("cloned", "1"), ("consents", "1"), ("forgets", "1")]:
        assert f'id="tile-{tile}"><div class="label">' in html
        assert html.split(f'id="tile-{tile}"')[1].split('class="value">')[1].startswith(value)
    spend = html.split('id="spend-line">')[1].split("</p>")[0]
    assert spend == ("$0.5000 of $1.00 (50%); past it, only cached audio answers until the 1st")
    assert f"in {month_of(dt.datetime.now(dt.UTC))} (UTC)" in html


# --- the whole process -----------------------------------------------------------------------


async def test_saybot_run_serves_the_admin_endpoint(tmp_path: Path, service: Service) -> None:
    port = free_port()
    async with TelegramStandin(privacy_mode=False) as tg:
        settings = bot_settings(
            tts_service_url=service.url,
            telegram_bot_token=SecretStr(TOKEN),
            telegram_api_base_url=tg.base_url,
            telegram_file_base_url=tg.base_file_url,
            admin_port=port,
            admin_token=SecretStr(ADMIN_TOKEN),
        )
        storage = StorageSettings(  # type: ignore[call-arg]
            _env_file=None, redis_url=None, embedded_data_dir=tmp_path, ratelimit_enabled=False
        )
        stop = asyncio.Event()
        task = asyncio.create_task(run(settings, storage, stop))
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10
            ) as http:
                ready = await _until_ready(http, task)
                components = ready.json()["components"]
                assert components["redis"] == {"ok": True, "embedded": True}
                assert components["telegram"] == {"ok": True}
                assert components["tts"]["engine"]["name"] == "piper"

                tg.send_command(1001, 1001, "say", MESSAGE)
                await tg.wait_for("sendVoice", timeout=30)
                parsed = samples((await http.get("/metrics")).text)
                assert (
                    sample(parsed, "saybot_requests_total", platform="telegram", outcome="miss")
                    == 1
                )
                assert sample(parsed, "saybot_tts_call_seconds_count") == 1
                assert sample(parsed, "saybot_cache_misses_total") == 1
                # Usage is counted just after the answer is sent, off its path.
                async with asyncio.timeout(5):
                    while True:
                        usage = (await http.get("/usage")).json()
                        if usage["totals"]["requests"]:
                            break
                        await asyncio.sleep(0.02)
                assert usage["by_platform"]["telegram"]["misses"] == 1
                assert usage["top_users"][0]["user_id"] == "1001"
                # Piper runs on this box: no GPU time spent, and no budget was set.
                spent = usage["spend_this_month"]
                assert (spent["gpu_seconds"], spent["budget"]) == (0.0, None)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def _until_ready(http: httpx.AsyncClient, task: asyncio.Task[None]) -> httpx.Response:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        if task.done():
            task.result()
            raise AssertionError("run() returned before it was stopped")
        with contextlib.suppress(httpx.TransportError):
            response = await http.get("/readyz")
            if response.status_code == 200:
                return response
        assert asyncio.get_running_loop().time() < deadline, "the admin endpoint never got ready"
        await asyncio.sleep(0.1)
