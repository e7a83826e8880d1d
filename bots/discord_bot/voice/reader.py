"""The opt-in channel reader: messages in a text channel spoken in the bot's voice channel.

Only when the operator turned it on (``DISCORD_READ_CHANNELS=true``, which asks Discord for
the privileged MESSAGE_CONTENT intent) and a member who can manage channels started it
there (``/read start``). Only messages of people who are in the bot's voice channel are read,
each through the same ``/say`` flow as a command (the server's blocked words, length cap,
rate and quota apply; a saved voice speaks if its owner has one and consented), queued when
the message arrives so the channel is heard in its order. A message that is refused is
skipped silently: the reader does not answer in the channel.

Which channel is read lives in memory: after a restart nothing is read until asked again.
"""

from __future__ import annotations

import logging
from typing import Protocol

import discord

from bots.discord_bot.voice.cleaning import Names, spoken_text
from bots.discord_bot.voice.rooms import VoiceRooms
from bots.errors import SayError
from bots.say import SayFlow, SayRequest
from tts_service.schema import MAX_TEXT_CHARS

log = logging.getLogger(__name__)

PLATFORM = "discord"
READ_MAX_CHARS = 300  # a chat line read aloud; a server's own max_text may lower it
SAID = "{name} said: "  # before each message when the server turned read_names on


class ReaderHost(Protocol):
    flow: SayFlow
    voice: VoiceRooms


class ChannelReader:
    """The text channel read aloud in each server (at most one)."""

    def __init__(self, bot: ReaderHost) -> None:
        self._bot = bot
        self._channels: dict[int, int] = {}  # guild id → text channel id

    def start(self, guild_id: int, channel_id: int) -> None:
        self._channels[guild_id] = channel_id

    def stop(self, guild_id: int, channel_id: int) -> None:
        if self._channels.get(guild_id) == channel_id:
            del self._channels[guild_id]

    def stop_all(self, guild_id: int) -> None:
        self._channels.pop(guild_id, None)

    def reading(self, guild_id: int) -> int | None:
        return self._channels.get(guild_id)

    async def heard(self, message: discord.Message) -> None:
        """A MESSAGE_CREATE: queue it if it is to be read."""
        author = message.author
        guild = message.guild
        if guild is None or author.bot or message.webhook_id is not None:
            return
        if self._channels.get(guild.id) != message.channel.id:
            return
        if self._bot.voice.channel(guild) is None:
            self.stop_all(guild.id)  # the bot left (idle, /leave, moved out): reading ends
            return
        if not isinstance(author, discord.Member):
            return
        if self._bot.voice.listening(author) is None:
            return  # not in the bot's voice channel (or the bot is in none)
        flow = self._bot.flow
        chat = await flow.community.settings_of(PLATFORM, str(guild.id))
        cap = min(READ_MAX_CHARS, chat.max_text or MAX_TEXT_CHARS)
        said = SAID.format(name=author.display_name) if chat.read_names else ""
        if len(said) > cap // 2:  # a tiny max_text: the message before the name
            said = ""
        text = spoken_text(message.content, names_in(message), cap - len(said))
        if not text:
            return
        text = said + text
        request = SayRequest(
            platform=PLATFORM,
            user_id=str(author.id),
            chat_id=str(message.channel.id),
            text=text,
            params={},
            clip=None,
            server_id=str(guild.id),
        )
        self._bot.voice.play_for(author, self._spoken(request, message.id))

    async def _spoken(self, request: SayRequest, message_id: int) -> bytes:
        try:
            result = await self._bot.flow.say(request)
        except SayError as exc:
            log.info("discord reader: message %s not read: %s", message_id, exc.code)
            raise
        return result.audio


def names_in(message: discord.Message) -> Names:
    """The names of the users, roles and channels a message mentions."""
    users = {user.id: user.display_name for user in message.mentions}
    roles = {role.id: role.name for role in message.role_mentions}
    channels: dict[int, str] = {}
    if message.guild is not None:
        for channel_id in message.raw_channel_mentions:
            channel = message.guild.get_channel(channel_id)
            if channel is not None:
                channels[channel_id] = channel.name
    return Names(users, roles, channels)
