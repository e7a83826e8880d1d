"""The slash commands: ``/say``, ``/voice set|forget|default``, ``/help``.

Thin on purpose: build a ``SayRequest``, call the flow, reply. Limits live in the
signatures (Discord enforces them in its UI); anything that still gets past them is
refused by ``parse_params`` before deferring. Every error reaches ``SayTree.on_error``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bots.discord_bot.attachments import check_clip, download_clip
from bots.discord_bot.replies import (
    HELP,
    TURNED_AWAY,
    answer,
    reply_with_error,
    retrieve_outcome,
    send_result,
    think,
    think_while,
)
from bots.errors import VoiceCloningUnavailable
from bots.messages import forget_text
from bots.say import SayRequest, SayResult, parse_params
from tts_service.schema import MAX_TEXT_CHARS, PARAM_RANGES

if TYPE_CHECKING:
    from bots.discord_bot.client import SayBot

    Interaction = discord.Interaction[SayBot]

PLATFORM = "discord"
# How long a check may hold up the acknowledgement (Discord's deadline is 3 s).
EARLY_CHECK_S = 1.0

_EXAGGERATION = PARAM_RANGES["exaggeration"]
_TEMPERATURE = PARAM_RANGES["temperature"]
_CFG_WEIGHT = PARAM_RANGES["cfg_weight"]
_SEED = PARAM_RANGES["seed"]
# One source for the numbers: the service's contract (Discord integers stop at 2**53).
Text = app_commands.Range[str, 1, MAX_TEXT_CHARS]
Exaggeration = app_commands.Range[float, _EXAGGERATION.minimum, _EXAGGERATION.maximum]
Temperature = app_commands.Range[float, _TEMPERATURE.minimum, _TEMPERATURE.maximum]
CfgWeight = app_commands.Range[float, _CFG_WEIGHT.minimum, _CFG_WEIGHT.maximum]
Seed = app_commands.Range[int, int(_SEED.minimum), 2**53]


class SayTree(app_commands.CommandTree["SayBot"]):
    """The command tree: tracks commands in flight and turns every error into one reply."""

    def __init__(self, client: SayBot) -> None:
        super().__init__(client)
        self.add_command(app_commands.Command(name="say", description=SAY, callback=say))
        voice = app_commands.Group(name="voice", description="Your own voice for /say")
        for name, description, callback in VOICE_COMMANDS:
            voice.add_command(
                app_commands.Command(
                    name=name, description=description, callback=callback, parent=voice
                )
            )
        self.add_command(voice)
        self.add_command(app_commands.Command(name="help", description=HELP_ME, callback=help_))

    async def interaction_check(self, interaction: Interaction, /) -> bool:
        """Runs first in the task that handles the command, so stopping can wait for it."""
        task = asyncio.current_task()
        if task is not None:
            in_flight = interaction.client.in_flight
            in_flight[task] = interaction
            task.add_done_callback(lambda done: in_flight.pop(done, None))
        if not interaction.client.accepting:
            await interaction.response.send_message(TURNED_AWAY, ephemeral=True)
            return False
        return True

    async def on_error(
        self, interaction: Interaction, error: app_commands.AppCommandError, /
    ) -> None:
        await reply_with_error(interaction, error)


# --- /say ------------------------------------------------------------------------------------

SAY = "Speak text aloud, optionally in the voice of a clip you attach"


@app_commands.describe(
    text=f"What to say (up to {MAX_TEXT_CHARS} characters)",
    voice="A short voice clip to speak in (needs the GPU engine)",
    exaggeration=f"How expressive: {_EXAGGERATION.describe()} (default {_EXAGGERATION.default:g})",
    temperature=f"How varied: {_TEMPERATURE.describe()} (default {_TEMPERATURE.default:g})",
    cfg_weight=f"Pacing guidance: {_CFG_WEIGHT.describe()} (default {_CFG_WEIGHT.default:g})",
    seed="Repeatable audio: any whole number ≥ 1 (0 = random)",
)
async def say(
    interaction: Interaction,
    text: Text,
    voice: discord.Attachment | None = None,
    exaggeration: Exaggeration | None = None,
    temperature: Temperature | None = None,
    cfg_weight: CfgWeight | None = None,
    seed: Seed | None = None,
) -> None:
    bot = interaction.client
    options: dict[str, Any] = {
        "exaggeration": exaggeration,
        "temperature": temperature,
        "cfg_weight": cfg_weight,
        "seed": seed,
    }
    request = SayRequest(
        platform=PLATFORM,
        user_id=str(interaction.user.id),
        chat_id=str(interaction.channel_id),
        text=text,
        params={name: value for name, value in options.items() if value is not None},
    )
    parse_params(request)  # bad text or options: answered at once, before "thinking…"
    if voice is not None:
        check_clip(voice, bot.settings)  # too big or not audio: refused without downloading
        await refuse_cloning_early(bot)
    result = await think_while(interaction, speak(bot, request, voice), private=False)
    await send_result(interaction, result, voice_message=bot.settings.discord_voice_messages)


async def refuse_cloning_early(bot: SayBot) -> None:
    """Refuse a clip the engine cannot use privately, before a public "thinking…".

    Only when the answer is quick (the engine info is usually known already): a cold
    service must not make the command miss Discord's 3 s acknowledgement deadline, and
    ``speak`` checks again after deferring.
    """
    check = asyncio.ensure_future(bot.flow.can_clone())
    done, _ = await asyncio.wait({check}, timeout=EARLY_CHECK_S)
    if not done:
        check.add_done_callback(retrieve_outcome)
        return
    if not check.result():
        raise VoiceCloningUnavailable("the engine cannot clone voices")


async def speak(bot: SayBot, request: SayRequest, voice: discord.Attachment | None) -> SayResult:
    if voice is not None:
        if not await bot.flow.can_clone():  # say so before downloading anything
            raise VoiceCloningUnavailable("the engine cannot clone voices")
        request = replace(request, reference_clip=await download_clip(voice, bot.settings))
    return await bot.flow.say(request)


# --- /voice ----------------------------------------------------------------------------------


@app_commands.describe(attachment="A clip of your voice: a few seconds of clear speech")
async def voice_set(interaction: Interaction, attachment: discord.Attachment) -> None:
    bot = interaction.client
    check_clip(attachment, bot.settings)
    await think(interaction, private=True)
    clip = await download_clip(attachment, bot.settings)
    await bot.flow.save_voice(PLATFORM, str(interaction.user.id), clip)
    note = (
        ""
        if await bot.flow.can_clone()
        else " (voice cloning is off right now, so I'll use it once it's back)"
    )
    await answer(interaction, f"Saved: /say now speaks in this voice{note}.")


async def voice_forget(interaction: Interaction) -> None:
    await think(interaction, private=True)
    report = await interaction.client.flow.forget_voice(PLATFORM, str(interaction.user.id))
    await answer(interaction, forget_text(report))


async def voice_default(interaction: Interaction) -> None:
    await think(interaction, private=True)
    await interaction.client.flow.use_built_in_voice(PLATFORM, str(interaction.user.id))
    await answer(interaction, "Back to the built-in voice.")


VOICE_COMMANDS: list[tuple[str, str, Callable[..., Coroutine[Any, Any, None]]]] = [
    ("set", "Make a voice clip your voice for /say", voice_set),
    ("forget", "Delete your voice clips and everything made with them", voice_forget),
    ("default", "Go back to the built-in voice", voice_default),
]

# --- /help -----------------------------------------------------------------------------------

HELP_ME = "How to use this bot"


async def help_(interaction: Interaction) -> None:
    await interaction.response.send_message(HELP, ephemeral=True)
