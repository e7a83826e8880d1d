"""Telegram handlers: turn updates into ``SayRequest``s and results into replies.

Thin on purpose: parsing lives in ``parsing``, the flow in ``bots.say``, the
wording in ``bots.messages``, replying in ``replies``, the consent buttons in ``consent``.
Every accepted message gets exactly one reply.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from telegram import Message, MessageEntity, Update
from telegram.constants import ChatType
from telegram.ext import ContextTypes

from bots.errors import (
    InvalidInput,
)
from bots.messages import (
    BUILT_IN_AGAIN,
    forget_text,
    privacy_line,
    saved_text,
    voice_status_text,
)
from bots.requests import OptionValue
from bots.say import SayRequest
from bots.telegram_bot.clips import TelegramClip, sender_id, sent_as_a_chat
from bots.telegram_bot.community import server_of, settings_reply
from bots.telegram_bot.parsing import Command, parse_options, split_command
from bots.telegram_bot.replies import (
    deps_of,
    handle,
    recording_voice,
    send_reply,
    send_voice,
    sender_of,
)

log = logging.getLogger(__name__)

PLATFORM = "telegram"

HELP = (
    "I speak text aloud.\n"
    "/say Hello there — I answer with a voice note.\n"
    "/say exaggeration=0.8 seed=42 Hello — with options "
    "(exaggeration 0.25–2, temperature 0.05–5, cfg_weight 0–1, seed ≥ 0; lang=fr for "
    "another language, where the engine speaks several).\n"
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


COMMANDS = [
    ("start", "What this bot does"),
    ("help", "How to use it"),
    ("say", "Speak text: /say Hello there"),
    ("voice", "Your voice: reply to your voice note; /voice default; /voice alone shows it"),
    ("forget", "Delete everything of yours: voices, consents, usage"),
    ("settings", "A group's settings (its admins change them)"),
]


# --- entry points ----------------------------------------------------------------------------


async def on_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if update.effective_message:
        privacy = privacy_line(deps_of(context).settings.privacy_url)
        await update.effective_message.reply_text(f"{HELP}\n{privacy}", do_quote=True)


async def on_anything_else(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Private chats: a message nothing else answered (an unknown command, a sticker, a voice
    note with no caption) still gets a reply saying what can be done. Groups stay quiet."""
    message = update.effective_message
    if message is not None and message.chat.type == ChatType.PRIVATE:
        text = _what_to_do(message)
        await send_reply(message, context, lambda: message.reply_text(text, do_quote=True))


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
    await handle(message, context, lambda: work(message, command, context))


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
    await handle(message, context, lambda: _speak(message, context, text, {}, None))


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Last resort: a handler raised. Log with context; the user gets one sentence."""
    log.error(
        "unhandled error for update %s", getattr(update, "update_id", "?"), exc_info=context.error
    )


# --- the work --------------------------------------------------------------------------------


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
    options: dict[str, OptionValue],
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
            sender=sender_of(context),
        )
        result = await deps.flow.say(request)
        await send_voice(message, context, result)


async def _voice_command(
    message: Message, command: Command, context: ContextTypes.DEFAULT_TYPE
) -> None:
    deps = deps_of(context)
    if sent_as_a_chat(message):  # all of a group's anonymous admins are one sender: no voice
        await send_reply(
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
        await send_reply(
            message, context, lambda: message.reply_text(BUILT_IN_AGAIN, do_quote=True)
        )
        return
    if action:
        raise InvalidInput("use /voice (replying to a voice note), /voice default or /voice forget")
    replied = message.reply_to_message
    clip = TelegramClip.of(message) or (TelegramClip.of(replied) if replied else None)
    if clip is None:  # what is kept of the user's voice, and how to change it
        status = voice_status_text(await deps.flow.voice_status(PLATFORM, user_id), VOICE_HOW)
        await send_reply(message, context, lambda: message.reply_text(status, do_quote=True))
        return
    saved = await deps.flow.save_voice(PLATFORM, user_id, clip, server_of(message))
    done = saved_text(saved)
    await send_reply(message, context, lambda: message.reply_text(done, do_quote=True))


async def _forget_command(
    message: Message, command: Command, context: ContextTypes.DEFAULT_TYPE
) -> None:
    await _forget_everything(message, context)


async def _forget_everything(message: Message, context: ContextTypes.DEFAULT_TYPE) -> None:
    """``/forget`` (and ``/voice forget``): every clip, consent and usage count of the user."""
    erased = await deps_of(context).flow.forget_voice(PLATFORM, _user_id(message))
    forgotten = forget_text(erased)
    await send_reply(message, context, lambda: message.reply_text(forgotten, do_quote=True))


async def _settings_command(
    message: Message, command: Command, context: ContextTypes.DEFAULT_TYPE
) -> None:
    """``/settings``: a group's settings; its admins change them (``community``)."""
    community = deps_of(context).flow.community
    text = await settings_reply(message, command.rest, context.bot, community, _user_id(message))
    await send_reply(message, context, lambda: message.reply_text(text, do_quote=True))


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
