"""The whole product path for bot tests: real TTS service (Piper) + real Valkey + SayFlow.

``CountingApp`` counts the syntheses the service performed, so a test can prove
a cache hit never reached it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    MutableMapping,
)
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from redis.asyncio import Redis
from telegram import Update
from telegram.ext import Application, ContextTypes, TypeHandler

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
# PTB runs an update through its handler groups in order, one after the other: a handler in a
# group after saybot's own runs once saybot is done with the update.
AFTER_SAYBOT_GROUP = 1_000


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
    flow = SayFlow.over_redis(redis, storage, client)
    try:
        yield flow
    finally:
        await flow.drain()  # as saybot run does: background syntheses end before the client
        await client.aclose()


class HandledUpdates:
    """Ids of the updates saybot has finished with, and a way to wait for more."""

    def __init__(self) -> None:
        self.ids: set[int] = set()
        self._changed = asyncio.Condition()

    async def add(self, update_id: int) -> None:
        async with self._changed:
            self.ids.add(update_id)
            self._changed.notify_all()

    async def wait_for(self, update_ids: Callable[[], Iterable[int]]) -> None:
        """Until every id ``update_ids()`` names (asked again on each change) is handled."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.ids.issuperset(update_ids()))


@dataclass
class RunningTelegram:
    settings: BotSettings
    application: Application  # type: ignore[type-arg]
    handled: HandledUpdates
    """Filled only when started with ``track_updates``."""


@contextlib.asynccontextmanager
async def telegram_app(
    tg: TelegramStandin, flow: SayFlow, *, track_updates: bool = False, **overrides: Any
) -> AsyncIterator[RunningTelegram]:
    """saybot's real PTB application, polling the stand-in, until the block ends.

    ``track_updates`` records every update saybot has finished handling, so a test can wait
    until nothing is left in flight instead of sleeping (off for benchmarks: it costs a bit).
    """
    settings = bot_settings(
        telegram_bot_token=SecretStr(TOKEN),
        telegram_api_base_url=tg.base_url,
        telegram_file_base_url=tg.base_file_url,
        **overrides,
    )
    application = build_application(settings, flow)
    handled = HandledUpdates()
    if track_updates:

        async def finished(update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
            await handled.add(update.update_id)

        application.add_handler(TypeHandler(Update, finished), group=AFTER_SAYBOT_GROUP)
    await start_telegram(application, settings)
    try:
        yield RunningTelegram(settings, application, handled)
    finally:
        await stop_telegram(application)
