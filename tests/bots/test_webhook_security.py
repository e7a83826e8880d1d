"""Webhook mode, attacked (issue #13): only Telegram, which holds the secret, is heard.

saybot's real PTB application serves its own webhook; the Bot API stand-in records
``setWebhook``, and the test POSTs updates as Telegram (or a forger) would.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bots.say import SayFlow
from bots.telegram_bot.app import is_connected
from bots.telegram_bot.webhook import MAX_UPDATE_BYTES
from storage.settings import StorageSettings
from tests.bots.harness import RunningTelegram, Service, consented_before, say_flow, telegram_app
from tests.bots.test_telegram_bot import answers
from tests.redis_fixtures import free_port
from tests.standins.telegram_api import Call, TelegramStandin
from tests.tts_service.audio_samples import clip

VICTIM = 2002
PUBLIC_HOOK = "https://bot.example.org/telegram/hook"  # what Telegram is told (TLS at a proxy)
SECRET = "configured-webhook-secret-0123456789-abcdef"
HEADER = "X-Telegram-Bot-Api-Secret-Token"


@dataclass
class Hooked:
    tg: TelegramStandin
    flow: SayFlow
    running: RunningTelegram
    http: httpx.AsyncClient
    url: str  # where the proxy in front forwards Telegram's POSTs
    next_id: int = 7_000

    async def post(self, message: dict[str, Any], secret: str | None) -> tuple[int, int]:
        """POST ``message`` as an update, with ``secret`` in the header (None: no header);
        returns the HTTP status and the update id."""
        self.next_id += 1
        headers = {HEADER: secret} if secret is not None else {}
        update = {"update_id": self.next_id, "message": message}
        response = await self.http.post(self.url, json=update, headers=headers)
        return response.status_code, self.next_id

    async def reply(self, message: dict[str, Any], method: str = "sendMessage") -> Call:
        return await self.tg.wait_for(method, lambda c: answers(c, message), timeout=30)

    async def handled(self, *update_ids: int) -> None:
        await self.running.handled.wait_for(lambda: update_ids)


@contextlib.asynccontextmanager
async def hooked_bot(
    redis: Redis, storage: StorageSettings, service: Service, **overrides: Any
) -> AsyncIterator[Hooked]:
    port = free_port()
    async with (
        TelegramStandin() as tg,
        say_flow(redis, storage, service.url) as flow,
        telegram_app(
            tg,
            flow,
            track_updates=True,
            telegram_webhook_url=PUBLIC_HOOK,
            telegram_webhook_port=port,
            **overrides,
        ) as running,
        httpx.AsyncClient() as http,
    ):
        yield Hooked(tg, flow, running, http, f"http://127.0.0.1:{port}/telegram/hook")


async def test_forged_updates_are_refused_and_never_handled(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with hooked_bot(
        redis_client, open_storage, service, telegram_webhook_secret=SecretStr(SECRET)
    ) as bot:
        registered = await bot.tg.wait_for("setWebhook")
        assert registered.params["secret_token"] == SECRET
        # The victim saves a voice, through Telegram.
        await consented_before(bot.flow, "telegram", str(VICTIM), clip("ogg_opus"))
        note = bot.tg.send_voice(VICTIM, VICTIM, clip("ogg_opus"), duration=3)
        save = bot.tg.send_command(VICTIM, VICTIM, "voice", reply_to=note)
        assert (await bot.post(save, SECRET))[0] == 200
        assert "Saved" in (await bot.reply(save)).params["text"]
        assert await bot.flow.voices.default_voice("telegram", str(VICTIM)) is not None

        # A forger, who knows the URL but not the secret, claims to be the victim.
        forget = bot.tg.send_command(VICTIM, VICTIM, "voice", "forget")
        forged_ids = []
        for secret in (None, "", "x", SECRET[:-1], SECRET + "x", SECRET.upper()):
            status, update_id = await bot.post(forget, secret)
            assert status == 403, secret
            forged_ids.append(update_id)
        twice = [(HEADER, "wrong"), (HEADER, SECRET)]  # one right header among others: no
        refused = await bot.http.post(
            bot.url, json={"update_id": 1, "message": forget}, headers=twice
        )
        assert refused.status_code == 403

        # Telegram's next update is handled; none of the forged ones ever was.
        say = bot.tg.send_command(VICTIM, VICTIM, "say", "Still my voice?")
        status, say_id = await bot.post(say, SECRET)
        assert status == 200
        await bot.reply(say, "sendVoice")
        await bot.handled(say_id)
        assert not bot.running.handled.ids.intersection([*forged_ids, 1])
        assert not [c for c in bot.tg.calls() if answers(c, forget)]
        assert await bot.flow.voices.default_voice("telegram", str(VICTIM)) is not None


@pytest.mark.parametrize("unset", [None, SecretStr(""), SecretStr("   ")])
async def test_without_a_configured_secret_a_strong_one_is_generated(
    redis_client: Redis, open_storage: StorageSettings, service: Service, unset: SecretStr | None
) -> None:
    async with hooked_bot(
        redis_client, open_storage, service, telegram_webhook_secret=unset
    ) as bot:
        registered = await bot.tg.wait_for("setWebhook")
        secret = registered.params["secret_token"]
        assert len(secret) >= 32 and re.fullmatch(r"[A-Za-z0-9_-]+", secret)
        assert registered.params["url"] == PUBLIC_HOOK
        assert is_connected(bot.running.application)

        unsigned = bot.tg.send_command(VICTIM, VICTIM, "voice", "forget")
        assert (await bot.post(unsigned, None))[0] == 403
        message = bot.tg.send_command(VICTIM, VICTIM, "say", "Delivered with the new secret.")
        status, update_id = await bot.post(message, secret)
        assert status == 200
        await bot.reply(message, "sendVoice")
        await bot.handled(update_id)
        assert not [c for c in bot.tg.calls() if answers(c, unsigned)]
        url = bot.url
    # Stopped: the server is gone; the webhook stays with Telegram, as PTB left it.
    assert bot.tg.webhook is not None
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(url, json={}, headers={HEADER: secret})


async def test_only_bounded_json_updates_on_the_hook_path_are_taken(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with hooked_bot(
        redis_client, open_storage, service, telegram_webhook_secret=SecretStr(SECRET)
    ) as bot:
        signed = {HEADER: SECRET}
        huge = b'{"update_id": 1, "pad": "' + b"x" * MAX_UPDATE_BYTES + b'"}'
        assert (await bot.http.post(bot.url, content=huge, headers=signed)).status_code == 413
        assert (await bot.http.post(bot.url, content=b"{", headers=signed)).status_code == 400
        assert (await bot.http.post(bot.url, content=b"[]", headers=signed)).status_code == 400
        assert (await bot.http.get(bot.url, headers=signed)).status_code == 405
        other = bot.url.replace("/telegram/hook", "/other")
        assert (await bot.http.post(other, json={}, headers=signed)).status_code == 404
        assert not bot.running.handled.ids
