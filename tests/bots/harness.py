"""The whole product path for bot tests: real TTS service (Piper) + real Valkey + SayFlow.

``CountingApp`` counts the syntheses the service performed, so a test can prove
a cache hit never reached it. ``CannedAnswers`` puts something in front of the service
that answers ``POST /v1/tts`` itself (a proxy's error page, a captive portal), a given
number of times, then lets requests through again.
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
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr
from redis.asyncio import Redis
from telegram import Update
from telegram.ext import Application, ContextTypes, TypeHandler

from bots.chosen_voice import prepare_voice
from bots.clips import BytesClip, ClipLimits
from bots.community import OperatorRules
from bots.consent import CONSENT_WORDING_VERSION
from bots.errors import ConsentNeeded
from bots.say import SavedVoice, SayFlow, SayRequest, SayResult
from bots.settings import BotSettings
from bots.telegram_bot.app import build_application, start_telegram, stop_telegram
from bots.tts_client import RetryPolicy, TTSClient
from storage.settings import StorageSettings
from tests.servers import serve_in_thread
from tests.standins.telegram_api import TOKEN, TelegramStandin
from tests.tts_helpers import API_TOKEN, make_settings, wait_ready
from tests.tts_service.engine_wrappers import PiperWrapper
from tts_service.api import create_app
from tts_service.engines.base import TTSEngine
from tts_service.schema import EngineInfo

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

FAST_RETRY = RetryPolicy(max_attempts=2, backoff_base_s=0.01, max_wait_s=2)
# PTB runs an update through its handler groups in order, one after the other: a handler in a
# group after saybot's own runs once saybot is done with the update.
AFTER_SAYBOT_GROUP = 1_000


class RentedGPU(PiperWrapper):
    """Piper under the name of an engine on a paid GPU (``bots.quotas.costs_gpu``): its
    syntheses, and the seconds the service reports for them, count against the quotas."""

    NAME = "rented-gpu"

    @property
    def info(self) -> EngineInfo:
        return self.inner.info.model_copy(update={"name": self.NAME})


class CountingApp:
    """ASGI wrapper: counts ``POST /v1/tts`` requests reaching the service."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tts_requests = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/v1/tts":
            self.tts_requests += 1
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class Canned:
    """One answer to ``POST /v1/tts`` that the service never gave."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class CannedAnswers:
    """What sits in front of the service (a proxy, a captive portal) answering
    ``POST /v1/tts`` itself while ``queue`` holds answers, one each, then stepping aside:
    every other path, and every synthesis once the queue is empty, is the real service's."""

    def __init__(self, *answers: Canned) -> None:
        self.queue = list(answers)
        self.served = 0

    def around(self, app: ASGIApp) -> ASGIApp:
        async def serve(scope: Scope, receive: Any, send: Any) -> None:
            tts = scope["type"] == "http" and scope["method"] == "POST"
            if not (tts and scope["path"] == "/v1/tts" and self.queue):
                await app(scope, receive, send)
                return
            canned = self.queue.pop(0)
            self.served += 1
            while (await receive()).get("more_body"):
                pass  # the request is read whole, as a proxy does, then not forwarded
            headers = [(b"content-type", canned.content_type.encode())] + [
                (name.lower().encode(), value.encode()) for name, value in canned.headers.items()
            ]
            await send({"type": "http.response.start", "status": canned.status, "headers": headers})
            await send({"type": "http.response.body", "body": canned.body})

        return serve


@dataclass
class Service:
    url: str
    counter: CountingApp


@contextlib.contextmanager
def running_service(
    engine: TTSEngine, *, wrap: Callable[[ASGIApp], ASGIApp] | None = None, **overrides: object
) -> Iterator[Service]:
    """The real service around ``engine`` on loopback; ``wrap`` puts something in front of
    it (``counter`` counts only the syntheses that reached the service)."""
    counter = CountingApp(create_app(engine, make_settings(**overrides)))
    with serve_in_thread(wrap(counter) if wrap else counter) as url:
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
async def say_flow(
    redis: Redis,
    storage: StorageSettings,
    tts_url: str,
    *,
    clip_limits: ClipLimits | None = None,
    operator: OperatorRules | None = None,
) -> AsyncIterator[SayFlow]:
    """The production flow over the given Redis and TTS service (``saybot run`` passes
    ``settings.clip_limits()`` as ``clip_limits`` and ``settings.operator_rules(…)`` as
    ``operator``)."""
    client = TTSClient(tts_url, API_TOKEN, read_timeout_s=60, retry=FAST_RETRY)
    flow = SayFlow.over_redis(redis, storage, client, clip_limits=clip_limits, operator=operator)
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


async def saved_with_consent(
    flow: SayFlow, platform: str, user_id: str, clip_bytes: bytes
) -> SavedVoice:
    """``/voice`` with a clip of the user's own, confirmed when asked (the button's "yes")."""
    try:
        return await flow.save_voice(platform, user_id, BytesClip(clip_bytes, user_id))
    except ConsentNeeded as needed:
        outcome = await flow.answer_consent(platform, user_id, needed.pending_id, True)
    assert isinstance(outcome, SavedVoice), outcome
    return outcome


async def said_with_consent(flow: SayFlow, request: SayRequest) -> SayResult:
    """``flow.say``, its clip confirmed as the sender's own voice when asked."""
    try:
        return await flow.say(request)
    except ConsentNeeded as needed:
        outcome = await flow.answer_consent(
            request.platform, request.user_id, needed.pending_id, True
        )
    assert isinstance(outcome, SayResult), outcome
    return outcome


async def consented_before(flow: SayFlow, platform: str, user_id: str, clip_bytes: bytes) -> str:
    """The user confirmed this recording as theirs earlier (by the button, tested on its
    own): tests of other things then go straight to cloning. Returns its voice id."""
    voice_id = (await prepare_voice(clip_bytes)).voice_id
    await flow.consents.record(platform, user_id, voice_id, CONSENT_WORDING_VERSION)
    return voice_id
