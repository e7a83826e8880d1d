"""How answers reach a Telegram user: the one reply per message, and errors as text.

``handle`` runs a message's work and makes sure exactly one reply goes out whatever
happens (an error becomes one sentence from ``TELEGRAM_WORDING`` and ``bots.messages``; a
clip waiting for consent becomes the question with its two buttons); ``send_reply``
delivers it (``delivery``: sent again where it cannot have arrived).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.constants import ChatAction
from telegram.error import BadRequest, TelegramError
from telegram.ext import ContextTypes

from bots.draining import GAVE_UP_TIMEOUT_S
from bots.errors import ConsentNeeded, NoSavedVoice, NotAnAdmin, SayError
from bots.messages import (
    CONSENT_NO,
    CONSENT_PROMPT,
    CONSENT_YES,
    GAVE_UP,
    caption,
    error_text,
)
from bots.say import SayFlow, SayResult
from bots.settings import BotSettings
from bots.telegram_bot.delivery import DeliveryCounts, deliver

log = logging.getLogger(__name__)

PLATFORM = "telegram"

TELEGRAM_WORDING: dict[type[SayError], str] = {
    NoSavedVoice: "You have no saved voice — reply /voice to a voice note to save one.",
    NotAnAdmin: "Only this group's admins can change its settings.",
}


@dataclass(frozen=True)
class Deps:
    """What the handlers need, stored in ``application.bot_data['deps']``."""

    flow: SayFlow
    settings: BotSettings
    # The tasks handling messages right now: stopping waits for them (bounded).
    in_flight: set[asyncio.Task[Any]] = field(default_factory=set)
    delivery: DeliveryCounts = field(default_factory=DeliveryCounts)


def deps_of(context: ContextTypes.DEFAULT_TYPE) -> Deps:
    deps: Deps = context.application.bot_data["deps"]
    return deps


async def handle(
    message: Message, context: ContextTypes.DEFAULT_TYPE, work: Callable[[], Awaitable[None]]
) -> None:
    """Run ``work`` and make sure exactly one reply goes out, whatever happens."""
    task = asyncio.current_task()
    in_flight = deps_of(context).in_flight
    if task is not None:
        in_flight.add(task)
    try:
        await work()
    except ConsentNeeded as needed:
        await ask_consent(message, context, needed.pending_id)
    except asyncio.CancelledError:
        # Stopping could not wait for this one: say so (bounded), then end as cancelled.
        with contextlib.suppress(TelegramError, TimeoutError):
            await asyncio.wait_for(message.reply_text(GAVE_UP, do_quote=True), GAVE_UP_TIMEOUT_S)
        raise
    except Exception as exc:
        where = f"telegram message {message.message_id} in chat {message.chat_id}"
        text = error_text(exc, TELEGRAM_WORDING, context=where)  # logs the unexpected, once
        try:
            await message.reply_text(text, do_quote=True)
        except TelegramError as send_error:
            log.warning("could not send the error reply to %s: %r", where, send_error)
    finally:
        if task is not None:
            in_flight.discard(task)


async def ask_consent(
    message: Message, context: ContextTypes.DEFAULT_TYPE, pending_id: str
) -> None:
    """The one-time question about a recording, with a button for each answer."""
    buttons = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(CONSENT_YES, callback_data=f"consent:{pending_id}:yes"),
                InlineKeyboardButton(CONSENT_NO, callback_data=f"consent:{pending_id}:no"),
            ]
        ]
    )
    await send_reply(
        message,
        context,
        lambda: message.reply_text(CONSENT_PROMPT, reply_markup=buttons, do_quote=True),
    )


async def send_reply(
    message: Message, context: ContextTypes.DEFAULT_TYPE, send: Callable[[], Awaitable[Message]]
) -> Message | None:
    """Send the one reply, again where it cannot have arrived (``delivery``); the message
    sent, or None when it may have arrived but its answer was lost."""
    where = f"telegram message {message.message_id} in chat {message.chat_id}"
    return await deliver(send, where, deps_of(context).delivery)


async def send_voice(
    message: Message, context: ContextTypes.DEFAULT_TYPE, result: SayResult
) -> None:
    """The answer as a voice note: by the ``file_id`` Telegram gave it the first time it was
    uploaded, when the cache had one (no bytes sent again), otherwise uploaded."""
    sent_files = deps_of(context).flow.sent_files
    sender = sender_of(context)
    if result.held_as is not None:
        file_id = result.held_as
        try:
            await send_reply(
                message,
                context,
                lambda: message.reply_voice(voice=file_id, caption=caption(result), do_quote=True),
            )
            return
        except BadRequest as exc:
            if not _unknown_file(exc) or result.audio_key is None:
                raise
            log.info("Telegram no longer knows a file it gave an id for; uploading it again")
            await sent_files.forget(result.audio_key, sender)
    sent = await send_reply(
        message,
        context,
        lambda: message.reply_voice(
            voice=result.audio,
            duration=max(1, round(result.duration_s)),
            caption=caption(result),
            filename="say.ogg",
            do_quote=True,
        ),
    )
    if sent is not None and sent.voice is not None and result.audio_key is not None:
        await sent_files.remember(result.audio_key, sender, result.audio, sent.voice.file_id)


def sender_of(context: ContextTypes.DEFAULT_TYPE) -> str:
    """The name this bot's file ids are kept under: an id works only for the bot it was
    given to."""
    return f"{PLATFORM}:{context.bot.id}"


def _unknown_file(error: BadRequest) -> bool:
    """Telegram refused the file id itself ("wrong file identifier", "file reference
    expired"), not the message: sending the bytes instead can still work."""
    return "file" in error.message.lower()


@contextlib.asynccontextmanager
async def recording_voice(
    context: ContextTypes.DEFAULT_TYPE, chat_id: int, settings: BotSettings
) -> AsyncIterator[None]:
    """Show "recording a voice message…" until the reply is sent (Telegram clears it after 5 s).

    Only once the answer has taken ``telegram_chat_action_delay_s``: instant answers need none.
    """

    async def repeat() -> None:
        while True:
            with contextlib.suppress(TelegramError):
                await context.bot.send_chat_action(chat_id, ChatAction.RECORD_VOICE)
            await asyncio.sleep(settings.telegram_chat_action_interval_s)

    tasks: list[asyncio.Task[None]] = []
    # A timer, not a sleeping task: a cache hit cancels it without a task or a loop turn.
    timer = asyncio.get_running_loop().call_later(
        settings.telegram_chat_action_delay_s, lambda: tasks.append(asyncio.create_task(repeat()))
    )
    try:
        yield
    finally:
        timer.cancel()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
