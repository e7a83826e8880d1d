"""Telegram handlers: turn updates into ``SayRequest``s and results into replies.

Thin on purpose: parsing lives in ``parsing``, the flow in ``bots.say``, the
wording in ``bots.messages``. Every accepted message gets exactly one reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, MessageEntity, Update
from telegram.constants import ChatAction, ChatType
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bots.draining import GAVE_UP_TIMEOUT_S
from bots.errors import (
    ConsentLapsed,
    ConsentNeeded,
    InvalidInput,
    NoSavedVoice,
    NotAnAdmin,
    NotYourClip,
    SayError,
)
from bots.messages import (
    BUILT_IN_AGAIN,
    CONSENT_DECLINED,
    CONSENT_NO,
    CONSENT_PROMPT,
    CONSENT_RECORDED,
    CONSENT_YES,
    GAVE_UP,
    caption,
    error_text,
    forget_text,
    saved_text,
    voice_status_text,
)
from bots.say import SavedVoice, SayFlow, SayRequest, SayResult
from bots.settings import BotSettings
from bots.telegram_bot.clips import TelegramClip, sender_id, sent_as_a_chat
from bots.telegram_bot.community import server_of, settings_reply
from bots.telegram_bot.delivery import DeliveryCounts, deliver
from bots.telegram_bot.parsing import Command, parse_options, split_command

log = logging.getLogger(__name__)

PLATFORM = "telegram"

HELP = (
    "I speak text aloud.\n"
    "/say Hello there — I answer with a voice note.\n"
    "/say exaggeration=0.8 seed=42 Hello — with options "
    "(exaggeration 0.25–2, temperature 0.05–5, cfg_weight 0–1, seed ≥ 0).\n"
    "Reply /say to a message to speak it; reply /say to a voice note, or send one with the "
    "caption /say <text>, to speak in that voice.\n"
    "/voice — reply to a voice note of your own to make it your voice (I ask you to confirm "
    "it is yours once) · /voice alone — what I keep of your voice · /voice default — back "
    "to the built-in voice · /forget — delete everything of yours: voices, consents, every "
    "recording made with them and your usage history.\n"
    "/settings — in a group: what its admins let me do there (cloning, saved voices, the "
    "longest text, a rate, a daily GPU quota, blocked words, default options).\n"
    "Every answer is AI-generated speech and says so."
)

VOICE_HOW = "Reply /voice to a voice note of your own to save one; /forget deletes it all."

VOICE_NOTE_HELP = (
    "Reply /voice to this voice note to make it your voice for /say, or reply "
    "/say <text> to it to hear that text in it once."
)

NO_VOICE_AS_A_CHAT = (
    "Saved voices belong to one person, and anonymous admins all post as the group — "
    "send /voice from your own account to save or change yours."
)

TELEGRAM_WORDING: dict[type[SayError], str] = {
    NoSavedVoice: "You have no saved voice — reply /voice to a voice note to save one.",
    NotAnAdmin: "Only this group's admins can change its settings.",
}

COMMANDS = [
    ("start", "What this bot does"),
    ("help", "How to use it"),
    ("say", "Speak text: /say Hello there"),
    ("voice", "Your voice: reply to your voice note; /voice default; /voice alone shows it"),
    ("forget", "Delete everything of yours: voices, consents, usage"),
    ("settings", "A group's settings (its admins change them)"),
]


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


# --- entry points ----------------------------------------------------------------------------


async def on_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if update.effective_message:
        await update.effective_message.reply_text(HELP, do_quote=True)


async def on_anything_else(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Private chats: a message nothing else answered (an unknown command, a sticker, a voice
    note with no caption) still gets a reply saying what can be done. Groups stay quiet."""
    message = update.effective_message
    if message is not None and message.chat.type == ChatType.PRIVATE:
        text = _what_to_do(message)
        await _send_reply(message, context, lambda: message.reply_text(text, do_quote=True))


def _what_to_do(message: Message) -> str:
    return VOICE_NOTE_HELP if message.voice or message.audio else HELP


async def on_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """``/say`` and ``/voice``: as a text (maybe replying to a text, voice note or audio), or
    as the caption of a voice note or audio."""
    message = update.effective_message
    if message is None:
        return
    command = split_command(message.text or message.caption or "")
    work = COMMANDS_WORK.get(command.name) if command is not None else None
    if command is None or work is None or not _addressed_to_us(command, context):
        await on_anything_else(update, context)  # e.g. a voice note captioned "hi"
        return
    await _handle(message, context, lambda: work(message, command, context))


async def on_plain_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Private chats: every text is spoken (setting). Groups: only when the bot is mentioned."""
    message = update.effective_message
    if message is None or not message.text:
        return
    text = message.text
    if message.chat.type != ChatType.PRIVATE:
        mentions = _mentions_of_us(message, context.bot.username)
        if not mentions:
            return
        text = _without(text, mentions)
    elif not deps_of(context).settings.telegram_speak_private_messages:
        await on_anything_else(update, context)
        return
    await _handle(message, context, lambda: _speak(message, context, text, {}, None))


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Last resort: a handler raised. Log with context; the user gets one sentence."""
    log.error(
        "unhandled error for update %s", getattr(update, "update_id", "?"), exc_info=context.error
    )


# --- the work --------------------------------------------------------------------------------


async def _handle(
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
        await _ask_consent(message, context, needed.pending_id)
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


# --- consent -------------------------------------------------------------------------------
CONSENT_DATA = re.compile(r"consent:(?P<id>[\w-]+):(?P<answer>yes|no)")


async def _ask_consent(
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
    await _send_reply(
        message,
        context,
        lambda: message.reply_text(CONSENT_PROMPT, reply_markup=buttons, do_quote=True),
    )


async def on_consent_answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A press of a consent button: only the clip's sender may answer. Yes records the
    consent and does what the clip was sent for; no deletes the clip."""
    query = update.callback_query
    matched = CONSENT_DATA.fullmatch(query.data or "") if query is not None else None
    if query is None or matched is None or not isinstance(query.message, Message):
        return
    prompt = query.message
    original = prompt.reply_to_message or prompt  # the message that brought the clip
    flow = deps_of(context).flow

    async def work() -> None:
        user_id = str(query.from_user.id)
        try:
            flow.check_consent_answer(PLATFORM, user_id, matched["id"])
        except (NotYourClip, ConsentLapsed) as refused:
            await query.answer(error_text(refused), show_alert=True)
            return
        await query.answer()  # at once: Telegram wants it within seconds, a synthesis may not
        outcome = await flow.answer_consent(
            PLATFORM, user_id, matched["id"], matched["answer"] == "yes"
        )
        await prompt.edit_text(CONSENT_DECLINED if outcome is None else CONSENT_RECORDED)
        if isinstance(outcome, SayResult):
            await _send_voice(original, context, outcome)
        elif isinstance(outcome, SavedVoice):
            done = saved_text(outcome)
            await _send_reply(original, context, lambda: original.reply_text(done, do_quote=True))

    await _handle(original, context, work)


async def _send_reply(
    message: Message, context: ContextTypes.DEFAULT_TYPE, send: Callable[[], Awaitable[Message]]
) -> None:
    """Send the one reply, again where it cannot have arrived (``delivery``)."""
    where = f"telegram message {message.message_id} in chat {message.chat_id}"
    await deliver(send, where, deps_of(context).delivery)


async def _say_from_command(
    message: Message, command: Command, context: ContextTypes.DEFAULT_TYPE
) -> None:
    options, text = parse_options(command.rest)
    replied = message.reply_to_message
    clip = TelegramClip.of(message) or (TelegramClip.of(replied) if replied else None)
    if not text and replied is not None and (replied.text or replied.caption):
        text = replied.text or replied.caption or ""
    if not text:
        raise InvalidInput("tell me what to say, e.g. /say Hello there")
    await _speak(message, context, text, options, clip)


async def _speak(
    message: Message,
    context: ContextTypes.DEFAULT_TYPE,
    text: str,
    options: dict[str, float | int],
    clip: TelegramClip | None,
) -> None:
    deps = deps_of(context)
    async with recording_voice(context, message.chat_id, deps.settings):
        request = SayRequest(
            platform=PLATFORM,
            user_id=_user_id(message),
            chat_id=str(message.chat_id),
            text=text,
            params=options,
            clip=clip,
            server_id=server_of(message),
        )
        result = await deps.flow.say(request)
        await _send_voice(message, context, result)


async def _send_voice(
    message: Message, context: ContextTypes.DEFAULT_TYPE, result: SayResult
) -> None:
    await _send_reply(
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


async def _voice_command(
    message: Message, command: Command, context: ContextTypes.DEFAULT_TYPE
) -> None:
    deps = deps_of(context)
    if sent_as_a_chat(message):  # all of a group's anonymous admins are one sender: no voice
        await _send_reply(
            message, context, lambda: message.reply_text(NO_VOICE_AS_A_CHAT, do_quote=True)
        )
        return
    user_id = _user_id(message)
    action = command.rest.strip().lower()
    if action == "forget":
        await _forget_everything(message, context)
        return
    if action == "default":
        await deps.flow.use_built_in_voice(PLATFORM, user_id)
        await _send_reply(
            message, context, lambda: message.reply_text(BUILT_IN_AGAIN, do_quote=True)
        )
        return
    if action:
        raise InvalidInput("use /voice (replying to a voice note), /voice default or /voice forget")
    replied = message.reply_to_message
    clip = TelegramClip.of(message) or (TelegramClip.of(replied) if replied else None)
    if clip is None:  # what is kept of the user's voice, and how to change it
        status = voice_status_text(await deps.flow.voice_status(PLATFORM, user_id), VOICE_HOW)
        await _send_reply(message, context, lambda: message.reply_text(status, do_quote=True))
        return
    saved = await deps.flow.save_voice(PLATFORM, user_id, clip, server_of(message))
    done = saved_text(saved)
    await _send_reply(message, context, lambda: message.reply_text(done, do_quote=True))


async def _forget_command(
    message: Message, command: Command, context: ContextTypes.DEFAULT_TYPE
) -> None:
    await _forget_everything(message, context)


async def _forget_everything(message: Message, context: ContextTypes.DEFAULT_TYPE) -> None:
    """``/forget`` (and ``/voice forget``): every clip, consent and usage count of the user."""
    erased = await deps_of(context).flow.forget_voice(PLATFORM, _user_id(message))
    forgotten = forget_text(erased)
    await _send_reply(message, context, lambda: message.reply_text(forgotten, do_quote=True))


async def _settings_command(
    message: Message, command: Command, context: ContextTypes.DEFAULT_TYPE
) -> None:
    """``/settings``: a group's settings; its admins change them (``community``)."""
    community = deps_of(context).flow.community
    text = await settings_reply(message, command.rest, context.bot, community, _user_id(message))
    await _send_reply(message, context, lambda: message.reply_text(text, do_quote=True))


CommandWork = Callable[[Message, Command, ContextTypes.DEFAULT_TYPE], Awaitable[None]]
COMMANDS_WORK: dict[str, CommandWork] = {
    "say": _say_from_command,
    "voice": _voice_command,
    "forget": _forget_command,
    "settings": _settings_command,
}


# --- helpers ---------------------------------------------------------------------------------


def _user_id(message: Message) -> str:
    """The user's id; a group's anonymous admins (and channels) count as their chat."""
    return sender_id(message)


def _addressed_to_us(command: Command, context: ContextTypes.DEFAULT_TYPE) -> bool:
    return command.bot is None or command.bot.lower() == (context.bot.username or "").lower()


def _mentions_of_us(message: Message, username: str | None) -> list[MessageEntity]:
    """The message's @mentions of this bot, by its entities: ``@saybot`` is not ``@saybot_2``."""
    if not username:
        return []
    ours = f"@{username}".lower()
    found = message.parse_entities([MessageEntity.MENTION])
    return [entity for entity, text in found.items() if text.lower() == ours]


def _without(text: str, entities: list[MessageEntity]) -> str:
    """``text`` minus those entities (their offsets count UTF-16 code units)."""
    utf16 = text.encode("utf-16-le")
    for entity in sorted(entities, key=lambda e: e.offset, reverse=True):
        start, end = entity.offset * 2, (entity.offset + entity.length) * 2
        utf16 = utf16[:start] + utf16[end:]
    return utf16.decode("utf-16-le").strip()


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
