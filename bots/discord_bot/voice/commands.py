"""``/join``, ``/leave``, ``/skip``, ``/stop`` and ``/read start|stop``; and ``/say`` heard in
the caller's voice channel (``hear_in_voice``).

Thin like the other commands: the work is in ``rooms``, ``playback`` and ``reader``; errors
go to the tree's one ``on_error``. All are for servers only (``guild_only``).
"""

from __future__ import annotations

from typing import Any, cast

import discord
from discord import app_commands

from bots.discord_bot.replies import answer, think
from bots.discord_bot.signatures import Callback, group
from bots.discord_bot.state import Interaction, state_of
from bots.discord_bot.voice.errors import NoManageChannels, NotYourTurn, ReaderOff
from bots.discord_bot.voice.playback import Entry
from bots.say import SayResult
from tts_service.schema import AudioFormat

JOINED = "Joined 🔊 {channel}. What you /say here is heard there too; /leave when you're done."
LEFT = "Left the voice channel."
NOT_IN_ONE = "I'm not in a voice channel here."
SKIPPED = "Skipped."
NOTHING_PLAYING = "Nothing is playing."
STOPPED = "Stopped {count} answer(s)."
READING = (
    "Reading this channel aloud in 🔊 {channel}: messages from people in that voice channel, "
    "each in their saved voice if they have one. /read stop to end."
)
NOT_READING = "Stopped reading this channel."
NOT_JOINED_YET = "I'm in no voice channel here: use /join from one first."


def _member(interaction: Interaction) -> discord.Member:
    """The caller as a server member (these commands are ``guild_only``)."""
    return cast(discord.Member, interaction.user)


def _manages_channels(interaction: Interaction) -> bool:
    permissions = interaction.permissions
    return permissions.manage_channels or permissions.administrator


async def join(interaction: Interaction) -> None:
    bot = state_of(interaction)
    may_move = _manages_channels(interaction)
    bot.voice.joinable(_member(interaction), may_move=may_move)  # refused at once, privately
    await think(interaction, private=False)
    channel = await bot.voice.join(_member(interaction), may_move=may_move)
    await answer(interaction, JOINED.format(channel=channel.name))


async def leave(interaction: Interaction) -> None:
    bot = state_of(interaction)
    guild = _member(interaction).guild
    left = await bot.voice.leave(guild)
    if bot.reader is not None:
        bot.reader.stop_all(guild.id)
    await interaction.response.send_message(LEFT if left else NOT_IN_ONE, ephemeral=not left)


def _check_turn(interaction: Interaction, entries: list[Entry]) -> None:
    if _manages_channels(interaction):
        return
    if not any(e.requester_id == interaction.user.id for e in entries):
        raise NotYourTurn("neither the requester nor allowed to manage channels")


async def skip(interaction: Interaction) -> None:
    queue = state_of(interaction).voice.queue_for(_member(interaction))
    current = queue.current
    if current is None:
        await interaction.response.send_message(NOTHING_PLAYING, ephemeral=True)
        return
    _check_turn(interaction, [current])
    queue.skip()
    await interaction.response.send_message(SKIPPED, ephemeral=True)


async def stop(interaction: Interaction) -> None:
    """Everything (Manage Channels), or the caller's own answers."""
    queue = state_of(interaction).voice.queue_for(_member(interaction))
    entries = queue.entries
    if not entries:
        await interaction.response.send_message(NOTHING_PLAYING, ephemeral=True)
        return
    _check_turn(interaction, entries)
    whose = None if _manages_channels(interaction) else interaction.user.id
    ended = queue.stop(whose)
    await interaction.response.send_message(STOPPED.format(count=len(ended)), ephemeral=True)


async def read_start(interaction: Interaction) -> None:
    bot = state_of(interaction)
    if bot.reader is None:
        raise ReaderOff("DISCORD_READ_CHANNELS is off")
    if not _manages_channels(interaction):
        raise NoManageChannels("/read needs Manage Channels")
    guild = _member(interaction).guild
    channel = bot.voice.channel(guild)
    if channel is None:
        await interaction.response.send_message(NOT_JOINED_YET, ephemeral=True)
        return
    bot.reader.start(guild.id, interaction.channel_id or 0)
    await interaction.response.send_message(READING.format(channel=channel.name))


async def read_stop(interaction: Interaction) -> None:
    bot = state_of(interaction)
    if bot.reader is None:
        raise ReaderOff("DISCORD_READ_CHANNELS is off")
    if not _manages_channels(interaction):
        raise NoManageChannels("/read needs Manage Channels")
    bot.reader.stop(_member(interaction).guild.id, interaction.channel_id or 0)
    await interaction.response.send_message(NOT_READING)


async def hear_in_voice(interaction: Interaction, result: SayResult) -> None:
    """After ``/say`` answered: the audio is also played where the caller is listening with
    the bot (nothing happens when they are not)."""
    if interaction.guild is None or not isinstance(interaction.user, discord.Member):
        return
    if result.format is not AudioFormat.OGG_OPUS:
        return  # only Opus goes in as it is
    state_of(interaction).voice.play_for(interaction.user, result.audio)


READ_COMMANDS: list[tuple[str, str, Callback]] = [
    ("start", "Read this channel aloud in my voice channel", read_start),
    ("stop", "Stop reading this channel aloud", read_stop),
]


Command = app_commands.Command[Any, ..., Any]


def voice_commands() -> list[Command | app_commands.Group]:
    """The voice commands, for the tree."""

    def command(name: str, description: str, callback: Callback) -> Command:
        made: Command = app_commands.Command(name=name, description=description, callback=callback)
        return app_commands.guild_only()(made)

    return [
        command("join", "Join your voice channel: /say is heard there too", join),
        command("leave", "Leave the voice channel", leave),
        command("skip", "Skip what is playing in the voice channel", skip),
        command("stop", "Stop your answers in the voice channel (all: Manage Channels)", stop),
        group(
            "read",
            "Read a text channel aloud in the voice channel (Manage Channels)",
            READ_COMMANDS,
            default_permissions=discord.Permissions(manage_channels=True),
            guild_only=True,
        ),
    ]
