"""``saybot run``: every configured part in one asyncio loop.

The admin endpoint first (so ``/healthz`` answers at once and ``/readyz`` says
"starting" while the rest comes up), then Redis (or the embedded Valkey), the TTS
client (or, with no ``TTS_SERVICE_URL``, the local Piper service served in-process
on loopback), and the Telegram and Discord adapters whose tokens are set.
SIGINT/SIGTERM stop taking new work (``/readyz`` says "stopping"), let in-flight
requests finish, then close everything in reverse order, the admin endpoint last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import SecretStr

from bots.draining import CLOSE_RESERVE_S, ShutdownClock
from bots.engine_identity import EngineIdentity
from bots.errors import TTSMisconfigured
from bots.fallback import Fallback
from bots.say import SayFlow
from bots.settings import BotSettings
from bots.tts_client import RetryPolicy, TTSClient
from storage.settings import StorageSettings
from tts_service.exposure import secret_value
from tts_service.settings import TTSSettings

if TYPE_CHECKING:
    from bots.admin import AdminLifecycle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TTSEndpoint:
    url: str
    token: str | None
    local: bool


@contextlib.asynccontextmanager
async def tts_endpoint(settings: BotSettings) -> AsyncIterator[TTSEndpoint]:
    """The configured TTS service, or the local Piper one served in-process on loopback."""
    if settings.tts_service_url:
        token = secret_value(settings.tts_api_token)
        yield TTSEndpoint(settings.tts_service_url, token, local=False)
        return
    async with local_tts_endpoint(TTSSettings()) as endpoint:
        log.info("no TTS_SERVICE_URL: serving the local engine at %s", endpoint.url)
        yield endpoint


@contextlib.asynccontextmanager
async def local_tts_endpoint(tts_settings: TTSSettings) -> AsyncIterator[TTSEndpoint]:
    """The TTS service served in this process, on loopback, with a token of its own."""
    from bots.asgi_server import serve_app
    from tts_service.api import create_app
    from tts_service.engines import build_engine

    token = secrets.token_urlsafe(32)  # per run: nothing else on the box can use it
    tts_settings = tts_settings.model_copy(update={"api_token": SecretStr(token)})
    app = create_app(build_engine(tts_settings), tts_settings)
    async with serve_app(app, "127.0.0.1", 0) as url:
        yield TTSEndpoint(url, token, local=True)


async def open_fallback(
    stack: contextlib.AsyncExitStack, settings: BotSettings, endpoint: TTSEndpoint
) -> Fallback | None:
    """``TTS_FALLBACK=local`` with a remote service: the bundled Piper voice, served here."""
    if settings.tts_fallback != "local":
        return None
    if endpoint.local:
        log.info("TTS_FALLBACK=local: the service is local already; no stand-in needed")
        return None
    piper = TTSSettings().model_copy(update={"engine": "piper"})
    local = await stack.enter_async_context(local_tts_endpoint(piper))
    tts = open_tts_client(local, settings)
    stack.push_async_callback(tts.aclose)
    log.info(
        "TTS_FALLBACK=local: the bundled voice stands in after %g s", settings.tts_fallback_after_s
    )
    return Fallback(
        tts, EngineIdentity(tts.fetch_engine_info), after_s=settings.tts_fallback_after_s
    )


def open_tts_client(endpoint: TTSEndpoint, settings: BotSettings) -> TTSClient:
    return TTSClient(
        endpoint.url,
        endpoint.token,
        connect_timeout_s=settings.tts_connect_timeout_s,
        read_timeout_s=settings.tts_read_timeout_s,
        retry=RetryPolicy(
            max_attempts=settings.tts_max_attempts, deadline_s=settings.tts_request_deadline_s
        ),
        max_in_flight=settings.tts_client_max_in_flight,
    )


async def wait_for_tts(client: TTSClient, timeout_s: float = 60.0) -> None:
    """Wait (bounded) until the local engine answers, so the first user is not the one who
    waits. A refused token will not fix itself: it is logged (once, by the client) and
    start-up goes on, the users told the engine is unavailable."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await client.ready()
            return
        except TTSMisconfigured:
            return
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                log.warning("the TTS service is not ready yet (%s); starting anyway", exc)
                return
            await asyncio.sleep(0.2)


async def run(
    settings: BotSettings, storage_settings: StorageSettings, stop: asyncio.Event | None = None
) -> str | None:
    """Start everything, wait for a stop signal (or ``stop``, for tests), stop everything.

    Returns why it stopped on its own (a part that cannot go on, such as a second Telegram
    poller with the same token), or None after a stop signal."""
    from bots.admin import AdminLifecycle, check_admin_bind, serve_admin
    from bots.admin.login_link import announce_login_link, with_login_token
    from bots.heap import freeze_startup_objects
    from bots.metrics import ProcessMetrics

    check_admin_bind(settings)  # a refused admin bind fails before anything starts
    settings, login_token = with_login_token(settings)  # no ADMIN_TOKEN: one for this run
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)

    metrics = ProcessMetrics.create()  # one StorageMetrics, registry and observer
    lifecycle = AdminLifecycle(metrics, ["redis", "tts", *configured_platforms(settings)])
    # The admin endpoint is entered first, so it is closed last: /healthz answers throughout.
    clock = ShutdownClock(settings.shutdown_timeout_s)
    fatal: list[str] = []

    def on_fatal(reason: str) -> None:
        fatal.append(reason)
        stop.set()

    async with serve_admin(lifecycle, settings) as admin_url, contextlib.AsyncExitStack() as stack:
        try:
            await start_parts(stack, settings, storage_settings, lifecycle, clock, on_fatal)
            freeze_startup_objects()
            log.info("saybot is running; Ctrl-C stops it")
            if login_token is not None:  # now: logging in needs Redis, the page the flow
                announce_login_link(admin_url, login_token)
            await stop.wait()
            clock.begin()
            log.info(
                "stopping within %g s: finishing in-flight requests", settings.shutdown_timeout_s
            )
        finally:
            lifecycle.stopping()  # /readyz says so while the parts close
    return fatal[0] if fatal else None


async def start_parts(
    stack: contextlib.AsyncExitStack,
    settings: BotSettings,
    storage_settings: StorageSettings,
    lifecycle: AdminLifecycle,
    clock: ShutdownClock,
    on_fatal: Callable[[str], None] | None = None,
) -> None:
    """Redis, the TTS service, the adapters; each reported to ``lifecycle`` once up."""
    from bots.admin import AdminContext
    from bots.admin.reports import MonthSpend
    from storage.redis import open_redis
    from storage.spend import SpendLedger
    from storage.usage import UsageReader

    redis = await open_redis(storage_settings)
    stack.push_async_callback(redis.aclose)
    lifecycle.redis_opened(redis.client)
    lifecycle.part_started("redis")
    endpoint = await stack.enter_async_context(tts_endpoint(settings))
    tts = open_tts_client(endpoint, settings)
    stack.push_async_callback(tts.aclose)
    if endpoint.local:  # a remote one (a GPU that may be asleep) is not waited for
        await wait_for_tts(tts)
    lifecycle.part_started("tts")
    fallback = await open_fallback(stack, settings, endpoint)
    metrics = lifecycle.metrics
    flow = SayFlow.over_redis(
        redis.client,
        storage_settings,
        tts,
        metrics=metrics.storage,
        observer=metrics.observer,
        clip_limits=settings.clip_limits(),
        engine_info_max_age_s=settings.tts_engine_info_max_age_s,
        fallback=fallback,
        cache_redis=redis.cache_client,
        clip_cipher=redis.clip_cipher,
        operator=settings.operator_rules(storage_settings.price_per_gpu_second),
    )
    # Runs after the adapters stop, before the clients close: background syntheses get
    # what is left of the budget but the time to close.
    stack.push_async_callback(lambda: flow.drain(clock.left(CLOSE_RESERVE_S)))
    started = await start_adapters(stack, settings, flow, clock, on_fatal)
    if not started:
        log.warning(
            "no TELEGRAM_BOT_TOKEN or DISCORD_BOT_TOKEN: no chat bots; the playground and the "
            "dashboard are at the admin endpoint"
        )
    usage = UsageReader(redis.client, storage_settings)
    spend = MonthSpend(
        SpendLedger(redis.client, metrics.storage), settings.gpu_budget_usd_per_month
    )
    lifecycle.started(
        AdminContext(redis, tts, usage, metrics, platforms=started, spend=spend, flow=flow)
    )


def configured_platforms(settings: BotSettings) -> list[str]:
    """The adapters ``start_adapters`` will start: those whose token is set (and not blank)."""
    tokens = {"telegram": settings.telegram_bot_token, "discord": settings.discord_bot_token}
    return [name for name, token in tokens.items() if secret_value(token) is not None]


# Each started adapter reports whether it is connected (for /readyz).
AdapterStatus = dict[str, Callable[[], bool]]


async def start_adapters(
    stack: contextlib.AsyncExitStack,
    settings: BotSettings,
    flow: SayFlow,
    clock: ShutdownClock | None = None,
    on_fatal: Callable[[str], None] | None = None,
) -> AdapterStatus:
    """Start each chat adapter whose token is set; one callback on ``stack`` stops them all
    at once (each turns new work away from the first moment), within ``clock``'s budget.
    ``on_fatal`` hears of an adapter that cannot go on (the process should stop)."""
    clock = clock or ShutdownClock()
    started: AdapterStatus = {}
    stops: list[Callable[[], Awaitable[None]]] = []
    stack.push_async_callback(_stop_together, stops)
    platforms = configured_platforms(settings)
    if "telegram" in platforms:
        from bots.telegram_bot.app import (
            build_application,
            is_connected,
            start_telegram,
            stop_telegram,
        )

        application = build_application(settings, flow)
        await start_telegram(application, settings, on_fatal)
        stops.append(lambda: stop_telegram(application, drain_timeout_s=clock.drain_s()))
        started["telegram"] = lambda: is_connected(application)
    if "discord" in platforms:
        from bots.discord_bot import client as discord_client

        bot = discord_client.build_client(settings, flow)
        await discord_client.start_discord(bot)
        stops.append(lambda: discord_client.stop_discord(bot, drain_timeout_s=clock.drain_s()))
        started["discord"] = lambda: discord_client.is_connected(bot)
    return started


async def _stop_together(stops: list[Callable[[], Awaitable[None]]]) -> None:
    results = await asyncio.gather(*(stop() for stop in stops), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            log.error("an adapter failed to stop cleanly", exc_info=result)


def run_product() -> int:
    """Entry point of ``saybot run``: settings built here, not at import time."""
    from bots.log_redaction import redact_secrets_in_logs

    settings = BotSettings()
    storage_settings = StorageSettings()
    redact_secrets_in_logs(
        settings.telegram_bot_token,
        settings.discord_bot_token,
        settings.tts_api_token,
        settings.admin_token,
        settings.telegram_webhook_secret,
        storage_settings.redis_url,
        storage_settings.cache_redis_url,
        storage_settings.data_key,
    )
    reason = asyncio.run(run(settings, storage_settings))
    if reason is not None:
        print(reason, file=sys.stderr)
        return 1
    return 0
