"""A file attached to a slash command, as a ``bots.clips.ClipSource``."""

from __future__ import annotations

from dataclasses import dataclass

import discord

from bots.clips import check_size
from bots.errors import ClipDownloadFailed


@dataclass(frozen=True)
class DiscordClip:
    attachment: discord.Attachment
    sender_id: str  # an attachment option belongs to the interaction's own user
    forwarded: bool = False  # an option's file is uploaded with the command itself

    @property
    def declared_bytes(self) -> int:
        return self.attachment.size

    @property
    def declared_seconds(self) -> float | None:
        return self.attachment.duration  # known for voice messages only

    @property
    def content_type(self) -> str:
        # Discord labels files by their content; unlabelled is "unknown", and refused.
        return self.attachment.content_type or ""

    async def read(self, max_bytes: int, timeout_s: float) -> bytes:
        try:
            data = await self.attachment.read()
        except discord.HTTPException as exc:
            raise ClipDownloadFailed("Discord could not hand it over") from exc
        check_size(len(data), max_bytes)
        return data
