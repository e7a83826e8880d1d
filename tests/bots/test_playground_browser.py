"""The playground in a real headless Chromium against the real ``saybot run``.

``saybot run`` starts as a child process with no ``ADMIN_TOKEN`` and no chat tokens, as a
newcomer's ``make run`` does, over a real Valkey and the real TTS service (Piper; the service
counts the syntheses that reach it). The test reads the login link it prints, opens it in
Chromium (a fake microphone attached), and uses the page as a person would: types, moves a
slider with the keyboard, generates, plays, takes again, uploads a WAV, records from the
microphone, sends a bad seed. Screenshots of a phone and a desktop land in ``artifacts/``.
Skips (or fails, with ``SAYBOT_REQUIRE_BROWSER=1``) as the dashboard's browser test does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bots.errors import InvalidInput, VoiceCloningUnavailable
from bots.messages import error_text
from tests.bots.harness import Service, running_service
from tests.bots.test_dashboard_browser import (
    ARTIFACTS,
    DESKTOP,
    PHONE,
    DevTools,
    chromium_candidates,
    headless_chromium,
    missing_browser,
    working_chromium,
)
from tests.faults.product import ROOT, clean_environment
from tests.redis_fixtures import free_port
from tests.tts_helpers import API_TOKEN
from tests.tts_service.audio_samples import clip
from tts_service.engines.piper import PiperEngine

FAKE_MICROPHONE = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
LINK = re.compile(r"open (http://127\.0\.0\.1:\d+/\?token=([A-Za-z0-9_-]+)) ")
TEXT = "Hello from the playground, spoken in the browser."
CLONING = error_text(VoiceCloningUnavailable("x"))
BAD_SEED = error_text(InvalidInput("seed must be a whole number ≥ 0"))


@pytest.fixture(scope="module")
def counted_service(piper_engine: PiperEngine) -> Iterator[Service]:
    with running_service(piper_engine) as running:
        yield running


@contextlib.asynccontextmanager
async def saybot_run(folder: Path, tts_url: str, redis_url: str) -> AsyncIterator[str]:
    """``saybot run`` with no ADMIN_TOKEN; yields the login link it prints once running."""
    env = clean_environment()
    env.update(
        PYTHONPATH=str(ROOT),
        REDIS_URL=redis_url,
        TTS_SERVICE_URL=tts_url,
        TTS_API_TOKEN=API_TOKEN,
        ADMIN_PORT=str(free_port()),
        RATELIMIT_PLATFORMS=json.dumps({"web": {"per_minute": 600, "burst": 100}}),
    )
    with (folder / "saybot.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots.cli",
            "run",
            cwd=folder,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
        try:
            assert process.stdout is not None
            async with asyncio.timeout(60):
                line = (await process.stdout.readline()).decode()
            found = LINK.search(line)
            assert found, f"no login link in {line!r}; log: {(folder / 'saybot.log').read_text()}"
            yield found.group(1)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
                async with asyncio.timeout(30):
                    await process.wait()


async def until(browser: DevTools, expression: str, timeout_s: float = 30.0) -> Any:
    """The expression's value once truthy: the page's own state, asked until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await browser.evaluate(expression)
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never true: {expression}")
        await asyncio.sleep(0.05)


async def generate_and_wait(browser: DevTools, takes_before: int) -> None:
    await browser.evaluate("document.getElementById('generate').click()")
    await until(browser, f"document.querySelectorAll('#takes li').length === {takes_before + 1}")


async def status_after_generate(browser: DevTools) -> str:
    await browser.evaluate(
        "document.getElementById('status').textContent = '';"
        "document.getElementById('generate').click()"
    )
    status = "(() => { const s = document.getElementById('status');"
    status += " return s.className === 'error' && s.textContent; })()"
    return str(await until(browser, status))


async def key(browser: DevTools, name: str, code: int) -> None:
    for kind in ("rawKeyDown", "keyUp"):
        await browser.call(
            "Input.dispatchKeyEvent", type=kind, key=name, code=name, windowsVirtualKeyCode=code
        )


PLAYER = """(() => { const p = document.getElementById('player');
  return p.readyState >= 1 && p.duration > 0 && p.src.startsWith('blob:') && p.duration; })()"""


@pytest.mark.timeout(120)
async def test_the_playground_in_headless_chromium(
    counted_service: Service, valkey_url: str, tmp_path: Path
) -> None:
    executable = await asyncio.to_thread(working_chromium, chromium_candidates())
    if executable is None:
        missing_browser(
            "no working chromium (scripts/install-system-deps.sh installs it)", os.environ
        )
    wav = tmp_path / "my-voice.wav"
    wav.write_bytes(clip("wav"))
    counter = counted_service.counter
    async with (
        saybot_run(tmp_path, counted_service.url, valkey_url) as link,
        headless_chromium(executable, FAKE_MICROPHONE) as browser,
    ):
        base, token = link.split("/?token=")
        await browser.call("Emulation.setDeviceMetricsOverride", **PHONE)
        await browser.load("navigate", url=link)
        assert await browser.evaluate("location.href") == f"{base}/", "the token left the URL"
        await until(browser, "document.getElementById('engine-state').textContent === 'ready'")
        assert "piper" in await browser.evaluate(
            "document.getElementById('engine-name').textContent"
        )

        # Type (real key input), and the live count follows.
        await browser.evaluate("document.getElementById('text').focus()")
        await browser.call("Input.insertText", text=TEXT)
        count = await browser.evaluate("document.getElementById('count').textContent")
        assert count == f"{len(TEXT)} / 1000 characters"
        # Move a slider with the keyboard: its value and its label follow.
        await browser.evaluate("document.getElementById('exaggeration').focus()")
        await key(browser, "ArrowRight", 39)
        assert (
            await browser.evaluate("document.getElementById('exaggeration-value').value") == "0.55"
        )

        before = counter.tts_requests
        await generate_and_wait(browser, 0)
        duration = await until(browser, PLAYER)
        assert duration > 0.5
        assert counter.tts_requests == before + 1
        facts = await browser.evaluate("document.getElementById('take-facts').textContent")
        assert "freshly made" in facts and "built-in voice" in facts

        await generate_and_wait(browser, 1)  # the same text and settings: from the cache
        assert "from the cache" in await browser.evaluate(
            "document.getElementById('take-facts').textContent"
        )
        assert counter.tts_requests == before + 1, "the service was not asked again"

        await browser.evaluate("document.getElementById('again').click()")  # a new seed
        await until(browser, "document.querySelectorAll('#takes li').length === 3")
        assert counter.tts_requests == before + 2
        assert await browser.evaluate("document.getElementById('seed').value") != "0"
        await until(browser, PLAYER)
        ARTIFACTS.mkdir(exist_ok=True)
        await browser.screenshot(ARTIFACTS / "playground-phone.png")

        # A clip with the local engine: the bots' sentence, and nothing reaches the service.
        await browser.evaluate("document.querySelector('input[value=upload]').click()")
        document = await browser.call("DOM.getDocument")
        node = await browser.call(
            "DOM.querySelector", nodeId=document["root"]["nodeId"], selector="#clip"
        )
        await browser.call("DOM.setFileInputFiles", files=[str(wav)], nodeId=node["nodeId"])
        assert await status_after_generate(browser) == CLONING
        # The microphone (Chromium's fake one): recorded, sent, the same sentence.
        await browser.evaluate("document.querySelector('input[value=record]').click()")
        await browser.evaluate("document.getElementById('record').click()")
        await until(
            browser, "document.getElementById('record').getAttribute('aria-pressed') === 'true'"
        )
        await browser.evaluate("document.getElementById('record').click()")
        await until(
            browser, "document.getElementById('record-state').textContent.startsWith('Recorded')"
        )
        assert await status_after_generate(browser) == CLONING
        assert counter.tts_requests == before + 2

        # A bad input: its sentence, in the live region.
        await browser.evaluate(
            "document.querySelector('input[value=builtin]').click();"
            "document.getElementById('seed').value = '-3'"
        )
        assert await status_after_generate(browser) == BAD_SEED
        assert (
            await browser.evaluate("document.getElementById('status').getAttribute('role')")
            == "status"
        )

        await browser.call("Emulation.setDeviceMetricsOverride", **DESKTOP)
        await browser.screenshot(ARTIFACTS / "playground-desktop.png")
        layout = await browser.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth, document.cookie]"
        )
        cookies = (await browser.call("Network.getCookies", urls=[base]))["cookies"]
        errors = browser.console_errors()
        off_box = [
            url
            for url in browser.requested_urls()
            if not url.startswith((base, "about:", "data:", "blob:"))
        ]

        # The web platform's usage on the dashboard (counted off the answer's path).
        await browser.load("navigate", url=f"{base}/admin")
        for _ in range(100):
            table = await browser.evaluate(
                "(document.getElementById('platforms-table') || {}).textContent || ''"
            )
            if "web" in table:
                break
            await browser.load("navigate", url=f"{base}/admin")
        await browser.keep_bodies()
        served = browser.served

    assert "web" in table, table
    assert layout[0] <= layout[1], "no sideways scrolling"
    assert layout[2] == "", "the session cookie is HttpOnly"
    assert [cookie["name"] for cookie in cookies] == ["saybot_admin"]
    assert cookies[0]["httpOnly"] and cookies[0]["value"] != token
    # Chromium logs each error status it fetched: the three refusals above, and nothing else.
    refused = [e for e in errors if "status of 400 (Bad Request)" in e and e.endswith("/play/say")]
    assert len(refused) == 3 and len(errors) == 3, errors
    assert off_box == [], "everything comes from saybot itself"
    assert [url for url, body in served.items() if token in body] == [], "no page has the token"
    print(f"screenshots: {ARTIFACTS}/playground-phone.png, playground-desktop.png")
