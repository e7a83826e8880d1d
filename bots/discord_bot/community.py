"""``/settings`` on Discord servers: each server's own rules for saybot (``bots.community``).

The group is registered for members who can manage the server
(``default_permissions=Permissions(manage_guild=True)``): Discord shows it to them only. A
server's owner may show it to others (Server Settings → Integrations), so the permission is
checked again whenever a change runs: such an override lets anyone see the settings, never
change them. The answers are private. In a DM there is no server, and the command says so.
"""

from __future__ import annotations

import discord
from discord import app_commands

from bots.discord_bot.signatures import (
    CFG_WEIGHT,
    EXAGGERATION,
    TEMPERATURE,
    Callback,
    CfgWeight,
    Exaggeration,
    Temperature,
    group,
)
from bots.discord_bot.state import Interaction, state_of
from bots.errors import InvalidSetting, NotAnAdmin
from bots.messages import settings_text
from bots.settings_changes import DEFAULTS, NUMBERS, SettingChange, phrases
from storage import chat_settings as fields

PLATFORM = "discord"

FOR_SERVERS = (
    "/settings is for servers: add me to one, and the people who manage it can choose there "
    "what I may do."
)
SETTINGS_HOW = (
    "Change them with /settings cloning, saved_voices, max_text, rate, quota, block, unblock, "
    "defaults (0 or reset: back to the bot's own) or read_names."
)
MAX_WORDS_CHARS = 500

MaxText = app_commands.Range[int, 0, NUMBERS[fields.MAX_TEXT][0]]
Rate = app_commands.Range[int, 0, NUMBERS[fields.RATE][0]]
Quota = app_commands.Range[int, 0, NUMBERS[fields.QUOTA][0]]
Words = app_commands.Range[str, 1, MAX_WORDS_CHARS]


def server_of(interaction: Interaction) -> str | None:
    """The server whose settings apply to ``interaction``; None in a DM."""
    return str(interaction.guild_id) if interaction.guild_id is not None else None


def can_manage(interaction: Interaction) -> bool:
    """Whether the member may change the server's settings (Manage Server, or an admin)."""
    permissions = interaction.permissions
    return permissions.manage_guild or permissions.administrator


async def _settings(interaction: Interaction, *changes: SettingChange) -> None:
    """Show the server's settings, changed first by ``changes`` (managers only)."""
    server = server_of(interaction)
    if server is None:
        await interaction.response.send_message(FOR_SERVERS, ephemeral=True)
        return
    community = state_of(interaction).flow.community
    community.operator.check_user(PLATFORM, str(interaction.user.id))
    if not changes:
        view = await community.view(PLATFORM, server)
    elif not can_manage(interaction):
        raise NotAnAdmin("only members who can manage the server can change its settings")
    else:
        view = await community.change(PLATFORM, server, changes)
    text = settings_text(view, SETTINGS_HOW, reader=True)
    await interaction.response.send_message(text, ephemeral=True)


async def show(interaction: Interaction) -> None:
    await _settings(interaction)


@app_commands.describe(allowed="On: people may attach a clip of their voice to /say here")
async def cloning(interaction: Interaction, allowed: bool) -> None:
    await _settings(interaction, SettingChange(fields.CLONING, allowed))


@app_commands.describe(allowed="On: people's saved voices (/voice set) speak here")
async def saved_voices(interaction: Interaction, allowed: bool) -> None:
    await _settings(interaction, SettingChange(fields.SAVED_VOICES, allowed))


@app_commands.describe(on='On: the channel reader (/read) says "<name> said" before each message')
async def read_names(interaction: Interaction, on: bool) -> None:
    await _settings(interaction, SettingChange(fields.READ_NAMES, on))


@app_commands.describe(characters="The longest text /say takes here (0: the bot's limit)")
async def max_text(interaction: Interaction, characters: MaxText) -> None:
    await _settings(interaction, SettingChange(fields.MAX_TEXT, characters))


@app_commands.describe(per_minute="Requests a minute per person (0: the bot's own rate)")
async def rate(interaction: Interaction, per_minute: Rate) -> None:
    await _settings(interaction, SettingChange(fields.RATE, per_minute))


@app_commands.describe(seconds="GPU seconds a day for everyone here (0: the bot's limit)")
async def quota(interaction: Interaction, seconds: Quota) -> None:
    await _settings(interaction, SettingChange(fields.QUOTA, seconds))


@app_commands.describe(words='Words to refuse, separated by spaces; "a phrase" in quotes')
async def block(interaction: Interaction, words: Words) -> None:
    await _settings(interaction, SettingChange("block", words=phrases(words)))


@app_commands.describe(words="Blocked words to allow again, separated by spaces")
async def unblock(interaction: Interaction, words: Words) -> None:
    await _settings(interaction, SettingChange("unblock", words=phrases(words)))


@app_commands.describe(
    exaggeration=f"Default expressiveness: {EXAGGERATION.describe()}",
    temperature=f"Default variety: {TEMPERATURE.describe()}",
    cfg_weight=f"Default pacing guidance: {CFG_WEIGHT.describe()}",
    reset="Back to the engine's own defaults",
)
async def defaults(
    interaction: Interaction,
    exaggeration: Exaggeration | None = None,
    temperature: Temperature | None = None,
    cfg_weight: CfgWeight | None = None,
    reset: bool = False,
) -> None:
    given = {"exaggeration": exaggeration, "temperature": temperature, "cfg_weight": cfg_weight}
    if reset:
        changes = [SettingChange(name, None) for name in DEFAULTS]
    else:
        changes = [SettingChange(name, value) for name, value in given.items() if value is not None]
    if not changes:
        raise InvalidSetting("give exaggeration, temperature or cfg_weight, or reset")
    await _settings(interaction, *changes)


SETTINGS_COMMANDS: list[tuple[str, str, Callback]] = [
    ("show", "This server's settings for saybot", show),
    ("cloning", "Whether people may speak in a voice clip they attach", cloning),
    ("saved_voices", "Whether people's saved voices speak here", saved_voices),
    ("max_text", "The longest text /say takes here", max_text),
    ("rate", "Requests a minute per person here", rate),
    ("quota", "GPU seconds a day for everyone here", quota),
    ("block", "Words /say refuses here", block),
    ("unblock", "Allow blocked words again", unblock),
    ("defaults", "Default voice options where people give none", defaults),
    ("read_names", 'Whether the channel reader says "<name> said" first', read_names),
]


def settings_group() -> app_commands.Group:
    return group(
        "settings",
        "This server's rules for saybot (people who can manage the server change them)",
        SETTINGS_COMMANDS,
        default_permissions=discord.Permissions(manage_guild=True),
        guild_only=True,
    )
