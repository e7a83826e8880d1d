"""Several Telegram webhook workers behind one entry point (a round-robin proxy), as
docs/deploy.md describes: every update is handled by exactly one worker and answered once,
and per-user state (rate limits, voices) is one across workers because it is in Redis."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from pydantic import SecretStr
from redis.asyncio import Redis

from bots.asgi_server import serve_app
from storage.settings import StorageSettings
from tests.bots.harness import RunningTelegram, Service, say_flow, telegram_app
from tests.bots.test_telegram_bot import answers
from tests.redis_fixtures import free_port
from tests.round_robin import RoundRobin
from tests.standins.telegram_api import TelegramStandin

PUBLIC_HOOK = "https://bot.example.org/telegram/hook"
SECRET = "one-secret-shared-by-every-worker-0123456789"
HEADER = "X-Telegram-Bot-Api-Secret-Token"


@contextlib.asynccontextmanager
async def worker(
    tg: TelegramStandin, redis: Redis, storage: StorageSettings, service: Service, port: int
) -> AsyncIterator[RunningTelegram]:
    async with (
        say_flow(redis, storage, service.url) as flow,
        telegram_app(
            tg,
            flow,
            track_updates=True,
            telegram_webhook_url=PUBLIC_HOOK,
            telegram_webhook_port=port,
            telegram_webhook_secret=SecretStr(SECRET),
        ) as running,
    ):
        yield running


async def test_two_workers_behind_one_entry_point_handle_each_update_once(
    redis_client: Redis, storage_settings: StorageSettings, service: Service
) -> None:
    # One message per 20 s per user, burst 1: the second message of a user is refused,
    # whichever worker the first one reached.
    limited = storage_settings.model_copy(
        update={"ratelimit_per_minute": 3.0, "ratelimit_burst": 1}
    )
    ports = [free_port(), free_port()]
    proxy = RoundRobin([f"http://127.0.0.1:{port}" for port in ports])
    async with (
        TelegramStandin() as tg,
        worker(tg, redis_client, limited, service, ports[0]) as first,
        worker(tg, redis_client, limited, service, ports[1]) as second,
        serve_app(proxy, "127.0.0.1", 0) as entry,
        httpx.AsyncClient(timeout=30) as http,
    ):
        messages: list[tuple[int, dict[str, Any]]] = []
        for n in range(12):
            user = 5000 + n // 2  # six users, two messages each, back to back
            message = tg.send_command(user, user, "say", f"Worker test {n}.")
            update_id = 9000 + n
            response = await http.post(
                f"{entry}/telegram/hook",
                json={"update_id": update_id, "message": message},
                headers={HEADER: SECRET},
            )
            assert response.status_code == 200
            messages.append((update_id, message))
        ids = [update_id for update_id, _ in messages]
        # The proxy alternates, starting with the first worker: each waits for its half.
        await first.handled.wait_for(lambda: ids[0::2])
        await second.handled.wait_for(lambda: ids[1::2])
        handled = first.handled.ids | second.handled.ids
        assert handled.issuperset(ids)
        assert not first.handled.ids & second.handled.ids, "an update handled twice"
        assert first.handled.ids and second.handled.ids, "both workers took updates"
        replies = []
        for _, message in messages:
            sent = [c for c in tg.calls() if answers(c, message)]
            assert len(sent) == 1, (message["text"], sent)
            replies.append(sent[0].method)
        # Each user's first message is spoken, the second is refused by the shared bucket.
        assert replies == ["sendVoice", "sendMessage"] * 6, replies
