"""A voice note or audio file in a Telegram message, as a ``bots.clips.ClipSource``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from telegram import Audio, Bot, Message, Voice
from telegram.error import TimedOut

from bots.clips import check_size
from bots.errors import ClipDownloadFailed


@dataclass(frozen=True)
class TelegramClip:
    attachment: Voice | Audio
    bot: Bot
    sender_id: str

    @classmethod
    def of(cls, message: Message) -> TelegramClip | None:
        """The message's voice note or audio, if it carries one."""
        attachment = message.voice or message.audio
        if attachment is None:
            return None
        sender = message.from_user.id if message.from_user else message.chat_id
        return cls(attachment, message.get_bot(), str(sender))

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
