"""A voice note or audio file in a Telegram message, as a ``bots.clips.ClipSource``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from telegram import Audio, Bot, Message, Voice
from telegram.error import TimedOut

from bots.clips import check_size
from bots.errors import ClipDownloadFailed

# Telegram's "GroupAnonymousBot": every anonymous admin of every group posts as this user.
GROUP_ANONYMOUS_BOT_ID = 1087968824


def sender_id(message: Message) -> str:
    """Who sent ``message``, as saybot counts senders: the user, or the chat a message was
    sent on behalf of. Anonymous group admins all share one account (GroupAnonymousBot), so
    they count as their group (``sender_chat``, a negative id no user has); a post on behalf
    of a channel counts as that channel."""
    if message.sender_chat is not None:
        return str(message.sender_chat.id)
    user = message.from_user
    if user is None or user.id == GROUP_ANONYMOUS_BOT_ID:
        return str(message.chat_id)
    return str(user.id)


def sent_as_a_chat(message: Message) -> bool:
    """Sent on behalf of a chat (an anonymous admin, a channel), not by a person."""
    user = message.from_user
    return message.sender_chat is not None or user is None or user.id == GROUP_ANONYMOUS_BOT_ID


@dataclass(frozen=True)
class TelegramClip:
    attachment: Voice | Audio
    bot: Bot
    sender_id: str
    forwarded: bool = False  # a forwarded voice note is someone else's recording

    @classmethod
    def of(cls, message: Message) -> TelegramClip | None:
        """The message's voice note or audio, if it carries one."""
        attachment = message.voice or message.audio
        if attachment is None:
            return None
        forwarded = message.forward_origin is not None
        return cls(attachment, message.get_bot(), sender_id(message), forwarded)

    @property
    def declared_bytes(self) -> int | None:
        return self.attachment.file_size

    @property
    def declared_seconds(self) -> float:
        # The sender's client states it; a PTB setting makes it a timedelta.
        duration = self.attachment.duration
        if isinstance(duration, dt.timedelta):
            return duration.total_seconds()
        return float(duration or 0)

    @property
    def content_type(self) -> str | None:
        return self.attachment.mime_type

    async def read(self, max_bytes: int, timeout_s: float) -> bytes:
        try:
            file = await self.bot.get_file(self.attachment.file_id, read_timeout=timeout_s)
            check_size(file.file_size or 0, max_bytes)  # declared again by getFile
            data = await file.download_as_bytearray(read_timeout=timeout_s)
        except TimedOut as exc:  # other errors are unexpected: logged, "something went wrong"
            raise ClipDownloadFailed("Telegram did not hand it over in time") from exc
        check_size(len(data), max_bytes)
        return bytes(data)
