"""The real ``saybot run`` as a child process, and what a fault test asks of its replies.

``Product.start`` runs ``python -m bots.cli run`` with an environment naming only what the
test controls: the Telegram stand-in, a Valkey, a TTS endpoint, the admin port and token.
Nothing of the developer's environment or ``.env`` is read (the process runs in a fresh
folder, with every saybot variable of the parent's environment removed). Its log goes to
a file, so a chatty run never blocks on a full pipe.

Replies are found in the stand-in's call log by the message they quote
(``reply_parameters``): every accepted message gets exactly one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bots.messages import UNEXPECTED
from bots.settings import BotSettings
from storage.settings import StorageSettings
from tests.redis_fixtures import free_port
from tests.standins.telegram_api import TOKEN, Call, TelegramStandin
from tests.tts_helpers import API_TOKEN

ROOT = Path(__file__).parents[2]
ADMIN_TOKEN = "faults-admin-token-0123456789abcdef"
REPLY_METHODS = frozenset({"sendMessage", "sendVoice", "sendAudio", "sendDocument"})
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

UNAVAILABLE = "The voice engine is unavailable right now — please try again later."
TOOK_TOO_LONG = (
    "The voice engine took too long to answer (it may be warming up) — "
    "please try again in a minute."
)
BUSY_PREFIX = "The voice engine is busy"


def redis_url(server: Any) -> str:
    """The URL of a Valkey started by ``tests.redis_fixtures.start_valkey``."""
    return f"redis://127.0.0.1:{server.port}"


def _saybot_variables() -> frozenset[str]:
    """Every environment variable a saybot settings class reads."""
    names = {name.upper() for name in BotSettings.model_fields}
    names |= {name.upper() for name in StorageSettings.model_fields}
    return frozenset(names)


def clean_environment() -> dict[str, str]:
    """The parent's environment without anything saybot would read (TTS_* included)."""
    ours = _saybot_variables()
    return {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in ours and not key.upper().startswith("TTS_")
    }


@dataclass
class Product:
    """One running ``saybot run``; ``log`` is its stdout and stderr together."""

    process: asyncio.subprocess.Process
    log_path: Path
    admin_url: str
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self, containing: str) -> list[str]:
        return [line for line in self.log.splitlines() if containing in line]

    @classmethod
    async def start(
        cls,
        tg: TelegramStandin,
        folder: Path,
        *,
        tts_url: str,
        redis_url: str,
        tts_token: str = API_TOKEN,
        env: Mapping[str, str] | None = None,
    ) -> Product:
        """Start the process; returns once it polls the stand-in for updates."""
        admin_port = free_port()
        variables = clean_environment()
        variables.update(
            PYTHONPATH=str(ROOT),
            TELEGRAM_BOT_TOKEN=TOKEN,
            TELEGRAM_API_BASE_URL=tg.base_url,
            TELEGRAM_FILE_BASE_URL=tg.base_file_url,
            TELEGRAM_POLL_TIMEOUT_S="1",
            REDIS_URL=redis_url,
            TTS_SERVICE_URL=tts_url,
            TTS_API_TOKEN=tts_token,
            ADMIN_PORT=str(admin_port),
            ADMIN_TOKEN=ADMIN_TOKEN,
        )
        variables.update(env or {})
        os.makedirs(folder, exist_ok=True)
        polls_from = tg.mark()
        log_path = folder / "saybot.log"
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bots.cli",
                "run",
                cwd=folder,  # no .env of the developer's is read
                env=variables,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
            )
        product = cls(process, log_path, f"http://127.0.0.1:{admin_port}")
        try:
            await product.until(
                lambda: bool(tg.calls("getUpdates", after_seq=polls_from)),
                START_TIMEOUT_S,
                "polling",
            )
        except BaseException:
            await product.kill()
            raise
        return product

    async def until(self, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Until ``check()`` holds (it reads an event log: the stand-in's calls, a counter);
        fails at once if the process exits, and after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not check():
            if self.process.returncode is not None:
                raise AssertionError(
                    f"saybot exited ({self.process.returncode}) waiting for {what}:\n"
                    f"{self.log[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout_s:g} s:\n{self.log[-3000:]}")
            await asyncio.sleep(0.02)

    async def readiness(self) -> dict[str, Any]:
        """The admin endpoint's ``/readyz`` body."""
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(timeout=10, headers=headers) as http:
            body: dict[str, Any] = (await http.get(f"{self.admin_url}/readyz")).json()
            return body

    async def until_ready(
        self, component: str, timeout_s: float = 30.0, *, ok: bool = True
    ) -> None:
        """Until ``/readyz`` reports ``component`` as ``ok`` (a readiness endpoint, no sleep)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(httpx.TransportError):
                body = await self.readiness()
                if body["components"].get(component, {}).get("ok") is ok:
                    return
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"/readyz never said {component} ok={ok}:\n{self.log[-3000:]}")
            await asyncio.sleep(0.05)

    def peak_rss_kib(self) -> int:
        """The process's peak resident memory so far (``VmHWM``), in KiB."""
        return _status_kib(self.pid, "VmHWM")

    def rss_kib(self) -> int:
        return _status_kib(self.pid, "VmRSS")

    def cpu_s(self) -> float:
        """CPU time the process has used so far (user + system), in seconds."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reset_peak_rss(self) -> None:
        """Start ``VmHWM`` again from the current RSS (Linux ``clear_refs`` 5)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    async def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then the exit status (killed if it overstays ``timeout_s``)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            await self.kill()
            raise AssertionError(f"saybot did not stop within {timeout_s:g} s") from None

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise LookupError(key)


@contextlib.asynccontextmanager
async def running_product(
    tg: TelegramStandin, folder: Path, **options: Any
) -> AsyncIterator[Product]:
    """``Product.start``; on the way out SIGTERM, then a clean exit, no traceback in the log,
    and exactly one reply to every message the process received."""
    product = await Product.start(tg, folder, **options)
    try:
        yield product
    finally:
        status = await product.terminate()
    assert status == 0, f"saybot exited {status}:\n{product.log[-3000:]}"
    assert "Traceback" not in product.log, product.log[-6000:]
    # It has exited: no reply can still be on its way.
    problems = reply_problems(tg)
    assert not problems, "\n".join(problems)


# --- replies ---------------------------------------------------------------------------------


def _quoted(call: Call) -> tuple[str, int] | None:
    """(chat id, message id) of the message a reply quotes, if it quotes one."""
    reply = call.params.get("reply_parameters")
    if not isinstance(reply, dict) or not isinstance(reply.get("message_id"), int):
        return None
    return str(call.params.get("chat_id")), reply["message_id"]


def _key(message: Mapping[str, Any]) -> tuple[str, int]:
    return str(message["chat"]["id"]), int(message["message_id"])


def _is_reply(call: Call) -> bool:
    return call.method in REPLY_METHODS and call.done and call.ok


def replies(tg: TelegramStandin, message: Mapping[str, Any]) -> list[Call]:
    """The bot's answered sends quoting ``message`` (failed sends are not replies)."""
    key = _key(message)
    return [call for call in tg.calls() if _is_reply(call) and _quoted(call) == key]


class ReplyIndex:
    """The stand-in's replies by the message they quote, read incrementally: waiting on
    hundreds of messages must not rescan the whole call log for each of them."""

    def __init__(self, tg: TelegramStandin) -> None:
        self.tg = tg
        self._next_seq = 0
        self._by_message: dict[tuple[str, int], list[Call]] = collections.defaultdict(list)

    def of(self, message: Mapping[str, Any]) -> list[Call]:
        self._refresh()
        return self._by_message.get(_key(message), [])

    def _refresh(self) -> None:
        for call in self.tg.calls(after_seq=self._next_seq):
            if call.method in REPLY_METHODS and not call.done:
                return  # read again next time, once answered
            self._next_seq = call.seq + 1
            quoted = _quoted(call)
            if quoted is not None and _is_reply(call):
                self._by_message[quoted].append(call)


def reply_problems(tg: TelegramStandin) -> list[str]:
    """Every message the bot received (however many times) and did not answer exactly once:
    in a private chat each message gets one reply, even one no handler took."""
    delivered: dict[tuple[str, int], Mapping[str, Any]] = {}
    for call in tg.calls("getUpdates"):
        if call.done and call.ok:
            for update in call.result:
                if "message" in update:
                    delivered[_key(update["message"])] = update["message"]
    index = ReplyIndex(tg)
    problems = []
    for message in delivered.values():
        if (count := len(index.of(message))) != 1:
            what = message.get("text") or message.get("caption") or "a clip"
            problems.append(f"{count} replies to message {message['message_id']}: {what!r:.80}")
    return problems


async def until_answered(
    product: Product,
    tg: TelegramStandin,
    messages: Iterable[Mapping[str, Any]],
    timeout_s: float = 60.0,
) -> None:
    """Until every message has a reply."""
    index = ReplyIndex(tg)
    pending = list(messages)

    def all_answered() -> bool:
        pending[:] = [message for message in pending if not index.of(message)]
        return not pending

    await product.until(all_answered, timeout_s, f"replies to {len(pending)} message(s)")


def the_reply(tg: TelegramStandin, message: Mapping[str, Any]) -> Call:
    """The one reply to ``message`` (fails on none or several)."""
    found = replies(tg, message)
    assert len(found) == 1, f"{len(found)} replies to {message.get('text')!r}: {found}"
    return found[0]


def is_voice_note(call: Call) -> bool:
    """A voice note Telegram shows as one: OGG/Opus sent with ``sendVoice``."""
    return (
        call.method == "sendVoice"
        and "voice" in call.result
        and call.files.get("voice", b"")[:4] == b"OggS"
    )


def sentence(call: Call) -> str:
    """The text of a reply that must be a sentence."""
    assert call.method == "sendMessage", f"expected a sentence, got {call}"
    text = str(call.params["text"])
    assert text.strip(), "an empty reply"
    return text


def clear_sentence(call: Call) -> str:
    """A sentence that is not "Something went wrong": the user learns what to do."""
    text = sentence(call)
    assert text != UNEXPECTED, "an expected failure was answered as unexpected"
    return text


async def say(
    product: Product, tg: TelegramStandin, user: int, text: str, timeout_s: float = 60.0
) -> Call:
    """``/say text`` from ``user``; the one reply."""
    message = tg.send_command(user, user, "say", text)
    await until_answered(product, tg, [message], timeout_s)
    return the_reply(tg, message)


async def still_serving(product: Product, tg: TelegramStandin, user: int, text: str) -> None:
    """A normal ``/say`` gets a voice note."""
    reply = await say(product, tg, user, text)
    assert is_voice_note(reply), f"not a voice note: {reply} {reply.params.get('text')!r}"
