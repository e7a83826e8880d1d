"""What the commands and replies need of the running bot, as a ``Protocol``.

The client (``client.SayBot``) builds the command tree, so the commands cannot import
the client without a circle; they read the bot's state through this protocol instead.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, cast

import discord

from bots.discord_bot.voice.reader import ChannelReader
from bots.discord_bot.voice.rooms import VoiceRooms
from bots.say import SayFlow
from bots.settings import BotSettings

Interaction = discord.Interaction[discord.Client]


class BotState(Protocol):
    settings: BotSettings
    flow: SayFlow
    accepting: bool  # False while stopping: new commands are turned away
    # The task handling each command, with its interaction: stopping waits for them.
    in_flight: dict[asyncio.Task[Any], discord.Interaction[Any]]
    voice: VoiceRooms  # voice channels joined, their queues
    reader: ChannelReader | None  # None unless DISCORD_READ_CHANNELS=true


def state_of(interaction: Interaction) -> BotState:
    """The bot behind an interaction (every interaction of saybot's tree is a ``SayBot``'s)."""
    return cast(BotState, interaction.client)
