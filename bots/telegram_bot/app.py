"""Build and run the python-telegram-bot ``Application`` inside saybot's own event loop."""

from __future__ import annotations

import logging
from collections.abc import Callable

from telegram import BotCommand, Update
from telegram.error import Conflict, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bots.draining import DRAIN_TIMEOUT_S, GAVE_UP_TIMEOUT_S, cancel_and_wait, wait_for_in_flight
from bots.say import SayFlow
from bots.settings import BotSettings
from bots.telegram_bot import consent, handlers, replies
from bots.telegram_bot.webhook import TelegramWebhook
from tts_service.exposure import secret_value

log = logging.getLogger(__name__)


# Synthesis takes seconds: handle many updates at once instead of PTB's one-by-one default.
CONCURRENT_UPDATES = 64

# PTB's handlers take edited messages too by default: an edit would be answered a second time.
NEW_MESSAGES = filters.UpdateType.MESSAGE  # what CommandHandler takes (MESSAGES) minus the edits
NOT_EDITS = ~filters.UpdateType.EDITED  # what MessageHandler takes (everything) minus the edits

WEBHOOK = "webhook"  # bot_data key of the running TelegramWebhook, in webhook mode


def build_application(settings: BotSettings, flow: SayFlow) -> Application:  # type: ignore[type-arg]
    """The configured PTB application; start it with ``start_telegram``."""
    token = secret_value(settings.telegram_bot_token)
    if token is None:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    application = (
        Application.builder()
        .token(token)
        .base_url(settings.telegram_api_base_url)
        .base_file_url(settings.telegram_file_base_url)
        .local_mode(settings.telegram_local_mode)  # a `--local` Bot API server: absolute paths
        .concurrent_updates(CONCURRENT_UPDATES)
        .get_updates_read_timeout(settings.telegram_poll_timeout_s + 10)
        .build()
    )
    application.bot_data["deps"] = replies.Deps(flow=flow, settings=settings)
    application.add_handler(
        CommandHandler(["start", "help"], handlers.on_start, filters=NEW_MESSAGES)
    )
    application.add_handler(
        CommandHandler(
            ["say", "voice", "forget", "settings"], handlers.on_command, filters=NEW_MESSAGES
        )
    )
    clip_with_caption = (filters.VOICE | filters.AUDIO) & filters.CAPTION
    application.add_handler(MessageHandler(clip_with_caption & NOT_EDITS, handlers.on_command))
    plain_text = filters.TEXT & ~filters.COMMAND
    application.add_handler(MessageHandler(plain_text & NOT_EDITS, handlers.on_plain_text))
    application.add_handler(
        CallbackQueryHandler(consent.on_consent_answer, pattern=consent.CONSENT_DATA)
    )
    # Last: whatever no handler above took (unknown commands, stickers, bare voice notes).
    private = filters.ChatType.PRIVATE
    application.add_handler(MessageHandler(private & NOT_EDITS, handlers.on_anything_else))
    application.add_error_handler(handlers.on_error)
    return application


async def _register_commands(application: Application) -> None:  # type: ignore[type-arg]
    await application.bot.set_my_commands(
        [BotCommand(name, description) for name, description in handlers.COMMANDS]
    )


POLLING_CONFLICT = (
    "telegram: another process is polling with this bot token (getUpdates answered 409 "
    "Conflict). Telegram allows one poller per token: stop the other one, or run several "
    "workers behind a webhook (TELEGRAM_WEBHOOK_URL; docs/deploy.md). Stopping."
)


async def start_telegram(
    application: Application,  # type: ignore[type-arg]
    settings: BotSettings,
    on_fatal: Callable[[str], None] | None = None,
) -> None:
    """Initialise, then poll (default) or listen for webhooks (``TELEGRAM_WEBHOOK_URL``;
    see ``bots.telegram_bot.webhook``).

    ``on_fatal`` hears, once, of what retrying cannot fix: a second poller with the same
    token (409 Conflict), which would otherwise make both spin taking turns.
    On failure everything started so far is stopped again before the error propagates.
    """
    try:
        await _start(application, settings, on_fatal)
    except BaseException:
        await stop_telegram(application)
        raise


def _polling_errors(on_fatal: Callable[[str], None] | None) -> Callable[[TelegramError], None]:
    told: list[bool] = []

    def on_error(error: TelegramError) -> None:
        if isinstance(error, Conflict):
            if not told:
                told.append(True)
                log.error(POLLING_CONFLICT)
                if on_fatal is not None:
                    on_fatal(POLLING_CONFLICT)
            return
        log.warning("telegram: polling failed (%s); retrying", error)

    return on_error


async def _start(
    application: Application,  # type: ignore[type-arg]
    settings: BotSettings,
    on_fatal: Callable[[str], None] | None,
) -> None:
    await application.initialize()
    await _register_commands(application)
    await application.start()
    if settings.telegram_webhook_url:
        # Served by saybot, not by the updater (see bots.telegram_bot.webhook for why).
        webhook = TelegramWebhook(application.bot, application.update_queue, settings)
        application.bot_data[WEBHOOK] = webhook
        await webhook.start()
        return
    updater = application.updater
    if updater is None:
        raise RuntimeError("the application was built without an updater")
    await updater.start_polling(
        timeout=settings.telegram_poll_timeout_s,
        allowed_updates=Update.ALL_TYPES,
        drop_pending_updates=False,
        error_callback=_polling_errors(on_fatal),
    )
    log.info("telegram: long polling as @%s", application.bot.username)


async def stop_telegram(
    application: Application,  # type: ignore[type-arg]
    drain_timeout_s: float = DRAIN_TIMEOUT_S,
) -> None:
    """Stop taking updates, let running handlers finish (bounded: those still running then
    are cancelled and tell their users to retry), close the HTTP pool."""
    webhook = _webhook(application)
    if webhook is not None:
        await webhook.stop()
    if application.updater is not None and application.updater.running:
        await application.updater.stop()
    deps = application.bot_data.get("deps")
    if isinstance(deps, replies.Deps):
        unfinished = await wait_for_in_flight(
            deps.in_flight, drain_timeout_s, "telegram message(s)"
        )
        # Each cancelled handler tells its user (within GAVE_UP_TIMEOUT_S) before it ends.
        await cancel_and_wait(unfinished, GAVE_UP_TIMEOUT_S + 1)
    if application.running:
        await application.stop()
    await application.shutdown()


def is_connected(application: Application) -> bool:  # type: ignore[type-arg]
    """Running and receiving updates (polling or webhook)."""
    updater = application.updater
    webhook = _webhook(application)
    receiving = (updater is not None and updater.running) or (
        webhook is not None and webhook.running
    )
    return application.running and receiving


def _webhook(application: Application) -> TelegramWebhook | None:  # type: ignore[type-arg]
    webhook = application.bot_data.get(WEBHOOK)
    return webhook if isinstance(webhook, TelegramWebhook) else None
