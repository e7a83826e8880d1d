"""The whole product path for bot tests: real TTS service (Piper) + real Valkey + SayFlow.

``CountingApp`` counts the syntheses the service performed, so a test can prove
a cache hit never reached it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from redis.asyncio import Redis

from bots.say import SayFlow
from bots.settings import BotSettings
from bots.telegram_bot.app import build_application, start_telegram, stop_telegram
from bots.tts_client import RetryPolicy, TTSClient
from storage.settings import StorageSettings
from tests.servers import serve_in_thread
from tests.standins.telegram_api import TOKEN, TelegramStandin
from tests.tts_helpers import API_TOKEN, make_settings, wait_ready
from tts_service.api import create_app
from tts_service.engines.base import TTSEngine

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

FAST_RETRY = RetryPolicy(max_attempts=2, backoff_base_s=0.01, max_wait_s=2)


class CountingApp:
    """ASGI wrapper: counts ``POST /v1/tts`` requests reaching the service."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tts_requests = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/v1/tts":
            self.tts_requests += 1
        await self.app(scope, receive, send)


@dataclass
class Service:
    url: str
    counter: CountingApp


@contextlib.contextmanager
def running_service(engine: TTSEngine, **overrides: object) -> Iterator[Service]:
    counter = CountingApp(create_app(engine, make_settings(**overrides)))
    with serve_in_thread(counter) as url:
        wait_ready(url)
        yield Service(url, counter)


def bot_settings(**overrides: Any) -> BotSettings:
    values: dict[str, Any] = {
        "_env_file": None,
        "tts_api_token": SecretStr(API_TOKEN),
        "telegram_poll_timeout_s": 1,
        "telegram_chat_action_interval_s": 0.5,
    }
    values.update(overrides)
    return BotSettings(**values)


@contextlib.asynccontextmanager
async def say_flow(redis: Redis, storage: StorageSettings, tts_url: str) -> AsyncIterator[SayFlow]:
    """The production flow over the given Redis and TTS service."""
    client = TTSClient(tts_url, API_TOKEN, read_timeout_s=60, retry=FAST_RETRY)
    try:
        yield SayFlow.over_redis(redis, storage, client)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def telegram_app(
    tg: TelegramStandin, flow: SayFlow, **overrides: Any
) -> AsyncIterator[BotSettings]:
    """saybot's real PTB application, polling the stand-in, until the block ends."""
    settings = bot_settings(
        telegram_bot_token=SecretStr(TOKEN),
        telegram_api_base_url=tg.base_url,
        telegram_file_base_url=tg.base_file_url,
        **overrides,
    )
    application = build_application(settings, flow)
    await start_telegram(application, settings)
    try:
        yield settings
    finally:
        await stop_telegram(application)
