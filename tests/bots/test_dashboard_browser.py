"""The dashboard in a real headless Chromium, driven over the DevTools protocol.

Debian's ``chromium`` (``scripts/install-system-deps.sh``, run by ``make test``) is started
with a fresh profile; the test logs in through the page's own form (so the HttpOnly cookie
flow is exercised by a browser), then checks the DOM, that the stylesheet applied, that
nothing was requested from anywhere but the admin server, that the console stayed free
of errors (exceptions, ``console.error``, CSP violations, failed loads), that the cookie
the browser keeps is HttpOnly and holds no token, and that no page it was served did.
Screenshots of a phone-sized and a desktop-sized window land in ``artifacts/``.

Without a working Chromium the test skips, saying why, unless ``SAYBOT_REQUIRE_BROWSER=1``
(set by ``.ci/run``): then it fails, so CI cannot pass without having run it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import pytest
from redis.asyncio import Redis

from bots.tts_client import TTSClient
from storage.redis import RedisHandle
from storage.settings import StorageSettings
from tests.bots import test_admin as admin_tests
from tests.bots.test_admin import ADMIN_TOKEN, admin_server, seed_usage

# The admin tests' fixtures, found here by name (the TTS service and Valkey come from conftest).
tts = admin_tests.tts
storage = admin_tests.storage
redis_handle = admin_tests.redis_handle

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
REQUIRE_BROWSER = "SAYBOT_REQUIRE_BROWSER"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-default-browser-check",
    "--password-store=basic",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
DESKTOP = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}


def chromium_candidates() -> list[str]:
    """Debian's own binary first; Ubuntu's ``chromium-browser`` is often a snap stub."""
    found = ["/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")]
    return list(dict.fromkeys(path for path in found if path))


def working_chromium(candidates: Iterable[str]) -> str | None:
    """The first candidate that runs and says it is Chromium; a stub that exists but only
    explains how to install the real thing (or a broken install) is passed over."""
    for path in candidates:
        try:
            done = subprocess.run(
                [path, "--version"], capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and "Chromium" in done.stdout:
            return path
    return None


def missing_browser(reason: str, environ: Mapping[str, str]) -> NoReturn:
    """Skip, saying why; fail instead where the browser is required (CI)."""
    if environ.get(REQUIRE_BROWSER, "") not in ("", "0"):
        pytest.fail(f"{reason}, and {REQUIRE_BROWSER}=1 requires the browser test to run")
    print(f"SKIPPED: {reason}")
    pytest.skip(reason)


class DevTools:
    """A minimal Chrome DevTools protocol client over one page's websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.served: dict[str, str] = {}  # see keep_bodies
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            future = self._pending.pop(data.get("id", -1), None)
            if future is None:
                self.events.append(data)
            elif "error" in data:
                future.set_exception(RuntimeError(f"DevTools error: {data['error']}"))
            else:
                future.set_result(data.get("result", {}))

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        await self.ws.send_json({"id": self._next_id, "method": method, "params": params})
        return await asyncio.wait_for(future, 10)

    async def wait_event(self, method: str, after: int, timeout_s: float = 10.0) -> dict[str, Any]:
        """The first ``method`` event at index ``after`` or later."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            for event in self.events[after:]:
                if event.get("method") == method:
                    return event
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no {method} within {timeout_s} s")
            await asyncio.sleep(0.02)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"evaluating failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def load(self, action: str, **params: Any) -> None:
        """Run a navigating command (or expression) and wait for the page's load event."""
        mark = len(self.events)
        if action == "navigate":
            await self.call("Page.navigate", **params)
        else:
            await self.evaluate(action)
        await self.wait_event("Page.loadEventFired", mark)
        await self.keep_bodies()

    def console_errors(self) -> list[str]:
        errors = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(f"exception: {params['exceptionDetails']}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                errors.append(f"log: {entry.get('text')} {entry.get('url', '')}")
        return errors

    def requested_urls(self) -> list[str]:
        return [
            event["params"]["request"]["url"]
            for event in self.events
            if event.get("method") == "Network.requestWillBeSent"
        ]

    async def keep_bodies(self) -> None:
        """Copy into ``served`` (URL → text) the body of each response received so far,
        as the server sent it, not the live DOM. Chromium drops a page's bodies when the
        next navigation commits, so ``load`` calls this after every page."""
        for event in self.events:
            if event.get("method") != "Network.responseReceived":
                continue
            params = event["params"]
            key = f"{params['response']['url']} #{params['requestId']}"
            if key in self.served:
                continue
            try:
                body = await self.call("Network.getResponseBody", requestId=params["requestId"])
            except RuntimeError:  # none kept (an empty or failed response)
                continue
            text = body["body"]
            if body.get("base64Encoded"):
                text = base64.b64decode(text).decode("utf-8", "replace")
            self.served[key] = text

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        data = base64.b64decode(shot["data"])
        await asyncio.to_thread(path.write_bytes, data)

    async def aclose(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.ws.close()


async def _devtools_port(profile: Path, process: asyncio.subprocess.Process) -> int:
    """Chromium writes the port it picked into ``DevToolsActivePort`` in its profile."""
    port_file = profile / "DevToolsActivePort"  # "<port>\n<browser websocket path>"
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        text = await asyncio.to_thread(lambda: port_file.read_text() if port_file.exists() else "")
        if text.strip():
            return int(text.splitlines()[0])
        if process.returncode is not None:
            raise AssertionError(f"chromium exited with {process.returncode}")
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("chromium did not open its DevTools port")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def headless_chromium(
    executable: str, extra_flags: Iterable[str] = ()
) -> AsyncIterator[DevTools]:
    """A fresh Chromium profile, its first page attached over DevTools; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="saybot-chromium-") as scratch:
        profile = Path(scratch) / "profile"
        process = await asyncio.create_subprocess_exec(
            executable,
            *CHROMIUM_FLAGS,
            *extra_flags,
            f"--user-data-dir={profile}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": scratch},  # its temporary files go with the profile
            start_new_session=True,  # its own process group: renderers included
        )
        try:
            port = await _devtools_port(profile, process)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                    targets = await response.json()
                page = next(t for t in targets if t["type"] == "page")
                ws = await session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
                devtools = DevTools(ws)
                try:
                    for domain in ("Page", "Runtime", "Log", "Network", "DOM"):
                        await devtools.call(f"{domain}.enable")
                    yield devtools
                finally:
                    await devtools.aclose()
        finally:
            await _stop(process)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM lets Chromium close its renderers; wait for its whole process group to go
    (else the profile is still being written as it is removed), SIGKILL it if it hangs."""
    if process.returncode is None:
        process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 5)
    for _ in range(100):  # up to 5 s
        if not _group_alive(process.pid):
            break
        await asyncio.sleep(0.05)
    else:
        os.killpg(process.pid, signal.SIGKILL)  # the group start_new_session made for it
    await process.wait()


DOM_FACTS = """(() => {
  const all = (selector) => Array.from(document.querySelectorAll(selector));
  const hits = document.querySelector('#chart-requests .seg.hits');
  return {
    path: location.pathname,
    title: document.title,
    requestBars: all('#chart-requests g.bar').length,
    requestSegments: all('#chart-requests rect.seg').length,
    costBars: all('#chart-cost g.bar').length,
    costRects: all('#chart-cost rect.seg').length,
    ratioPoints: all('#chart-hit-ratio circle.point').map((c) => Number(c.dataset.ratio)),
    latencyBars: all('#chart-latency rect.pbar').map((r) => r.dataset.percentile),
    components: all('#components li').map((li) => [li.dataset.component, li.className]),
    statusFirst: document.querySelector('main').firstElementChild.id,
    totalRequests: document.querySelector('#tile-requests .value').textContent,
    hitsFill: hits ? getComputedStyle(hits).fill : null,
    chartWidth: document.querySelector('#chart-requests').getBoundingClientRect().width,
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    cookieVisibleToScripts: document.cookie,
  };
})()"""


@pytest.mark.timeout(30)
async def test_dashboard_renders_in_headless_chromium(
    redis_handle: RedisHandle, tts: TTSClient, storage: StorageSettings, redis_client: Redis
) -> None:
    executable = await asyncio.to_thread(working_chromium, chromium_candidates())
    if executable is None:
        missing_browser(
            "no working chromium (scripts/install-system-deps.sh installs it as root or with "
            "password-less sudo)",
            os.environ,
        )
    await seed_usage(redis_client, storage)
    connected = {"telegram": True, "discord": False}
    async with (
        admin_server(redis_handle, tts, storage, connected=connected) as admin,
        headless_chromium(executable) as browser,
    ):
        for seconds in (0.02, 0.03, 0.4, 1.2, 6.0):
            admin.metrics.observer.request_finished("telegram", "miss", seconds)
            admin.metrics.observer.tts_called(seconds * 0.8, None)
        await browser.call("Emulation.setDeviceMetricsOverride", **PHONE)

        await browser.load("navigate", url=f"{admin.url}/admin?days=7")
        assert await browser.evaluate("location.pathname") == "/admin/login"
        await browser.load(
            f"document.getElementById('token').value = {json.dumps(ADMIN_TOKEN)};"
            "document.getElementById('login').submit();"
        )
        assert await browser.evaluate("location.pathname") == "/admin", "logged in"
        await browser.load("navigate", url=f"{admin.url}/admin?days=7")
        facts = await browser.evaluate(DOM_FACTS)
        ARTIFACTS.mkdir(exist_ok=True)
        await browser.screenshot(ARTIFACTS / "admin-dashboard-phone.png")
        await browser.call("Emulation.setDeviceMetricsOverride", **DESKTOP)
        await browser.screenshot(ARTIFACTS / "admin-dashboard-desktop.png")
        html = await browser.evaluate("document.documentElement.outerHTML")
        await asyncio.to_thread((ARTIFACTS / "admin-dashboard.html").write_text, html)
        cookies = (await browser.call("Network.getCookies", urls=[admin.url]))["cookies"]
        await browser.keep_bodies()
        served = browser.served
        print(f"screenshots: {ARTIFACTS}/admin-dashboard-phone.png, admin-dashboard-desktop.png")

        assert facts["path"] == "/admin" and facts["title"] == "saybot admin"
        assert facts["statusFirst"] == "status", "component status comes first"
        assert facts["components"] == [
            ["redis", "component ok"],
            ["tts", "component ok"],
            ["discord", "component down"],
            ["telegram", "component ok"],
        ]
        # Seeded: 3 requests two days ago (hit, miss, error), 4 today (hit, miss, 2 errors).
        assert facts["requestBars"] == 7 and facts["requestSegments"] == 6
        assert facts["costBars"] == 7 and facts["costRects"] == 2
        assert facts["ratioPoints"] == [0.5, 0.5]
        assert facts["latencyBars"] == ["p50", "p90", "p99"] * 2
        assert facts["totalRequests"] == "7"
        assert facts["hitsFill"] == "rgb(46, 125, 50)", "the stylesheet applied"
        assert 300 < facts["chartWidth"] <= facts["innerWidth"] == 390
        assert facts["scrollWidth"] <= facts["innerWidth"], "no sideways scrolling on a phone"
        assert facts["cookieVisibleToScripts"] == "", "the session cookie is HttpOnly"

        assert browser.console_errors() == []
        off_box = [
            url
            for url in browser.requested_urls()
            if not url.startswith((admin.url, "about:", "data:"))
        ]
        assert off_box == [], "everything comes from the admin server"

    # The session as the browser keeps it: one HttpOnly, SameSite=Strict cookie, no token.
    assert [cookie["name"] for cookie in cookies] == ["saybot_admin"]
    session = cookies[0]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", session["value"]), "a random session id"
    # What the server sent, byte for byte: the login form, the dashboard, the stylesheet.
    pages = [body for url, body in served.items() if re.match(rf"{admin.url}/admin[? ]", url)]
    assert len(pages) == 2, served.keys()  # after the login's redirect, and navigated to
    assert all('id="chart-requests"' in page for page in pages)
    assert any('name="token"' in body for body in served.values()), "the login form"
    assert any(".seg.hits" in body for body in served.values()), "the stylesheet"
    leaked = [url for url, body in served.items() if ADMIN_TOKEN in body]
    assert leaked == [], "no response carries the token"


def test_a_chromium_that_does_not_run_is_no_browser(tmp_path: Path) -> None:
    stub = tmp_path / "chromium-browser"  # what Ubuntu's snap transition package installs
    stub.write_text(
        "#!/bin/sh\necho \"Command '/usr/bin/chromium-browser' requires the chromium snap "
        'to be installed."\nexit 1\n'
    )
    silent = tmp_path / "chromium-silent"  # runs, but is not Chromium
    silent.write_text("#!/bin/sh\nexit 0\n")
    real = tmp_path / "chromium"
    real.write_text("#!/bin/sh\necho 'Chromium 120.0.6099.224 built on Debian'\n")
    for script in (stub, silent, real):
        script.chmod(0o755)
    missing = str(tmp_path / "absent")
    assert working_chromium([missing, str(stub), str(silent)]) is None
    assert working_chromium([missing, str(stub), str(silent), str(real)]) == str(real)


def test_a_required_browser_fails_instead_of_skipping() -> None:
    with pytest.raises(pytest.fail.Exception, match=REQUIRE_BROWSER):
        missing_browser("no working chromium", {REQUIRE_BROWSER: "1"})
    for environ in ({}, {REQUIRE_BROWSER: ""}, {REQUIRE_BROWSER: "0"}):
        with pytest.raises(pytest.skip.Exception, match="no working chromium"):
            missing_browser("no working chromium", environ)


def test_ci_requires_the_browser_test_to_run() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(rf"^export {REQUIRE_BROWSER}=1$", ci, re.MULTILINE)
    assert ci.index(f"export {REQUIRE_BROWSER}=1") < ci.index("make test")
