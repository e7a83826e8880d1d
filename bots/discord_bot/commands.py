"""The slash commands: ``/say``, ``/voice set|forget|default``, ``/help`` (and ``/settings``,
in ``community``).

Thin on purpose: build a ``SayRequest``, call the flow, reply. Limits live in the
signatures (Discord enforces them in its UI); anything that still gets past them is
refused by the flow's first steps (``bots.admission``) before deferring. Every error
reaches ``SayTree.on_error``.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import discord
from discord import app_commands

from bots.discord_bot.attachments import DiscordClip
from bots.discord_bot.community import server_of, settings_group
from bots.discord_bot.replies import (
    HELP,
    TURNED_AWAY,
    answer,
    reply_with_error,
    send_result,
    think,
    think_once_admitted,
)
from bots.discord_bot.signatures import (
    CFG_WEIGHT,
    EXAGGERATION,
    TEMPERATURE,
    Callback,
    CfgWeight,
    Exaggeration,
    Language,
    Seed,
    Temperature,
    Text,
    group,
    language_choices,
)
from bots.discord_bot.state import Interaction, state_of
from bots.discord_bot.voice.commands import hear_in_voice, voice_commands
from bots.messages import (
    BUILT_IN_AGAIN,
    forget_text,
    privacy_line,
    saved_text,
    voice_status_text,
)
from bots.say import SayRequest
from tts_service.schema import MAX_TEXT_CHARS

PLATFORM = "discord"


class SayTree(app_commands.CommandTree[discord.Client]):
    """The command tree: tracks commands in flight and turns every error into one reply."""

    def __init__(self, client: discord.Client) -> None:
        super().__init__(client)
        self.add_command(app_commands.Command(name="say", description=SAY, callback=say))
        self.add_command(group("voice", "Your own voice for /say", VOICE_COMMANDS))
        self.add_command(
            app_commands.Command(name="forget", description=FORGET, callback=voice_forget)
        )
        self.add_command(app_commands.Command(name="help", description=HELP_ME, callback=help_))
        self.add_command(settings_group())
        for command in voice_commands():
            self.add_command(command)

    async def interaction_check(self, interaction: Interaction, /) -> bool:
        """Runs first in the task that handles the command, so stopping can wait for it."""
        bot = state_of(interaction)
        task = asyncio.current_task()
        if task is not None:
            in_flight = bot.in_flight
            in_flight[task] = interaction
            task.add_done_callback(lambda done: in_flight.pop(done, None))
        if not bot.accepting:
            await interaction.response.send_message(TURNED_AWAY, ephemeral=True)
            return False
        return True

    async def on_error(
        self, interaction: Interaction, error: app_commands.AppCommandError, /
    ) -> None:
        await reply_with_error(interaction, error)


# --- /say ------------------------------------------------------------------------------------

SAY = "Speak text aloud, optionally in the voice of a clip you attach"


async def say_language(interaction: Interaction, typed: str) -> list[app_commands.Choice[str]]:
    """The languages the engine lists (as last known: no round trip to the service)."""
    engine = state_of(interaction).flow.engine.known
    return language_choices(engine.languages if engine else [], typed)


@app_commands.describe(
    text=f"What to say (up to {MAX_TEXT_CHARS} characters)",
    voice="A short voice clip to speak in (needs the GPU engine)",
    exaggeration=f"How expressive: {EXAGGERATION.describe()} (default {EXAGGERATION.default:g})",
    temperature=f"How varied: {TEMPERATURE.describe()} (default {TEMPERATURE.default:g})",
    cfg_weight=f"Pacing guidance: {CFG_WEIGHT.describe()} (default {CFG_WEIGHT.default:g})",
    seed="Repeatable audio: any whole number ≥ 1 (0 = random)",
    language="The text's language, where the engine speaks several (e.g. fr)",
)
@app_commands.autocomplete(language=say_language)
async def say(
    interaction: Interaction,
    text: Text,
    voice: discord.Attachment | None = None,
    exaggeration: Exaggeration | None = None,
    temperature: Temperature | None = None,
    cfg_weight: CfgWeight | None = None,
    seed: Seed | None = None,
    language: Language | None = None,
) -> None:
    bot = state_of(interaction)
    options: dict[str, Any] = {
        "exaggeration": exaggeration,
        "temperature": temperature,
        "cfg_weight": cfg_weight,
        "seed": seed,
        "language": language.lower() if language else None,
    }
    user_id = str(interaction.user.id)
    request = SayRequest(
        platform=PLATFORM,
        user_id=user_id,
        chat_id=str(interaction.channel_id),
        text=text,
        params={name: value for name, value in options.items() if value is not None},
        clip=DiscordClip(voice, sender_id=user_id) if voice is not None else None,
        server_id=server_of(interaction),
    )
    # What can be refused without real work (text, options, clip metadata, the rate limit,
    # an engine that cannot clone) is answered privately in one call, before "thinking…".
    say_it = functools.partial(bot.flow.say, request)
    result = await think_once_admitted(interaction, lambda admitted: say_it(admitted=admitted))
    await send_result(interaction, result, voice_message=bot.settings.discord_voice_messages)
    await hear_in_voice(interaction, result)


# --- /voice ----------------------------------------------------------------------------------


@app_commands.describe(attachment="A clip of your voice: a few seconds of clear speech")
async def voice_set(interaction: Interaction, attachment: discord.Attachment) -> None:
    bot = state_of(interaction)
    clip = DiscordClip(attachment, sender_id=str(interaction.user.id))
    bot.flow.check_clip(clip)
    await think(interaction, private=True)
    saved = await bot.flow.save_voice(
        PLATFORM, str(interaction.user.id), clip, server_of(interaction)
    )
    await answer(interaction, saved_text(saved))


async def voice_forget(interaction: Interaction) -> None:
    await think(interaction, private=True)
    report = await state_of(interaction).flow.forget_voice(PLATFORM, str(interaction.user.id))
    await answer(interaction, forget_text(report))


async def voice_show(interaction: Interaction) -> None:
    status = await state_of(interaction).flow.voice_status(PLATFORM, str(interaction.user.id))
    await interaction.response.send_message(voice_status_text(status, VOICE_HOW), ephemeral=True)


async def voice_default(interaction: Interaction) -> None:
    await think(interaction, private=True)
    await state_of(interaction).flow.use_built_in_voice(PLATFORM, str(interaction.user.id))
    await answer(interaction, BUILT_IN_AGAIN)


VOICE_COMMANDS: list[tuple[str, str, Callback]] = [
    ("set", "Make a clip of your own voice your voice for /say", voice_set),
    ("show", "What I keep of your voice, and the consents you gave", voice_show),
    ("forget", "Delete everything of yours: voices, consents, usage", voice_forget),
    ("default", "Go back to the built-in voice", voice_default),
]
VOICE_HOW = "/voice set with a clip of your own voice saves one; /forget deletes it all."
FORGET = "Delete everything of yours: voices, consents, recordings made with them, usage"

# --- /help -----------------------------------------------------------------------------------

HELP_ME = "How to use this bot"


async def help_(interaction: Interaction) -> None:
    privacy = privacy_line(state_of(interaction).settings.privacy_url)
    await interaction.response.send_message(f"{HELP}\n{privacy}", ephemeral=True)
