"""How answers reach a Discord user, and the one place errors become text.

An interaction is acknowledged once: either answered at once (``send_message``) or
deferred ("thinking…", ``think``) and resolved later by editing that message
(``answer``; Discord deprecates resolving it with a followup).

Errors are ephemeral. Before a deferral that is a plain ephemeral response. After a
*public* deferral it is not: Discord keeps the deferral's visibility for the message
that resolves it, whatever flags that message asks for. So ``reply_privately``
resolves it with a short neutral line, sends the sentence as an ephemeral followup
(a new message, which keeps its own flag) and deletes the neutral line.
"""

from __future__ import annotations

import asyncio
import io
import logging
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import discord
from discord import app_commands

from bots.discord_bot.consent_view import ConsentView
from bots.discord_bot.state import Interaction, state_of
from bots.discord_bot.voice.errors import VOICE_WORDING
from bots.discord_bot.voice_message import send_voice_message
from bots.errors import ConsentNeeded, NoSavedVoice, NotAnAdmin, SayError
from bots.messages import CONSENT_PROMPT, caption, error_text
from bots.say import SayResult
from tts_service.audio import MAX_REFERENCE_S, MIN_REFERENCE_S
from tts_service.schema import MAX_TEXT_CHARS, PARAM_RANGES

log = logging.getLogger(__name__)
T = TypeVar("T")

AUDIO_FILENAME = "say.ogg"

DISCORD_WORDING: dict[type[SayError], str] = {
    NoSavedVoice: "You have no saved voice — use /voice set with a voice clip to save one.",
    NotAnAdmin: "Only members who can manage this server can change its settings.",
    **VOICE_WORDING,
}
OUTDATED = "That command has just changed — please try again in a minute."
TURNED_AWAY = "I'm restarting — please try again in a moment."
# What a public "thinking…" message shows for the instant before it is deleted.
ANSWERED_PRIVATELY = "I couldn't do that — the reason was sent only to you."


def _range(name: str) -> str:
    return PARAM_RANGES[name].describe()


HELP = (
    "I speak text aloud.\n"
    f"**/say** `text` — I answer with the audio (up to {MAX_TEXT_CHARS} characters). "
    "Options: `voice` — attach a clip of "
    f"{MIN_REFERENCE_S:g}–{MAX_REFERENCE_S:g} s to speak in that voice; "
    f"`exaggeration` ({_range('exaggeration')}), `temperature` ({_range('temperature')}), "
    f"`cfg_weight` ({_range('cfg_weight')}), `seed` ({_range('seed')}; the same seed "
    "repeats the same audio), `language` (where the engine speaks several).\n"
    "**/voice set** `attachment` — make a clip of your own voice your voice (I ask you to "
    "confirm it is yours once) · **/voice show** — what I keep · **/voice default** — back "
    "to the built-in voice · **/forget** — delete everything of yours: voices, consents, "
    "every recording made with them and your usage history.\n"
    "**/settings** — for the people who manage a server: what I may do there (cloning, "
    "saved voices, the longest text, a rate, a daily GPU quota, blocked words, defaults).\n"
    "**/join** — I join your voice channel and /say is heard there too · **/leave** · "
    "**/skip** · **/stop** · **/read start|stop** — read a text channel aloud there "
    "(Manage Channels).\n"
    "Every answer is AI-generated speech and says so."
)

# How long the early checks may hold up the acknowledgement (Discord's deadline is 3 s).
EARLY_CHECK_S = 1.0

# interaction.extras key: "public" or "private" while the deferred "thinking…" is unresolved
_THINKING = "saybot.thinking"


async def think(interaction: Interaction, *, private: bool) -> None:
    """Acknowledge at once (Discord's 3 s deadline); the answer comes later."""
    await interaction.response.defer(thinking=True, ephemeral=private)
    interaction.extras[_THINKING] = "private" if private else "public"


async def think_once_admitted(
    interaction: Interaction,
    work: Callable[[Callable[[], None]], Awaitable[T]],
    *,
    private: bool = False,
) -> T:
    """Run ``work(admitted)``; acknowledge with "thinking…" once it calls ``admitted`` (or
    after ``EARLY_CHECK_S``, well inside Discord's 3 s), while it goes on. What it refuses
    before that is answered in one private message, with no public trace; what it answers
    before that (a cache hit) in one public response."""
    admitted = asyncio.Event()
    task = asyncio.ensure_future(work(admitted.set))
    try:
        waiter = asyncio.ensure_future(admitted.wait())
        await asyncio.wait({task, waiter}, timeout=EARLY_CHECK_S, return_when=FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            return task.result()
        await think(interaction, private=private)
    except BaseException:
        task.cancel()
        task.add_done_callback(retrieve_outcome)  # it may have failed already: no "never retrieved"
        raise
    return await task


def retrieve_outcome(task: asyncio.Future[Any]) -> None:
    """Done-callback for work nobody awaits any more: no "exception never retrieved"."""
    if not task.cancelled():
        task.exception()


async def answer(
    interaction: Interaction, content: str, *, files: list[discord.File] | None = None
) -> None:
    """Resolve the "thinking…" message with ``content`` (and ``files``); answer directly if
    the interaction was not acknowledged yet."""
    if not interaction.response.is_done():
        await interaction.response.send_message(content, files=files or discord.utils.MISSING)
        return
    if files:
        await interaction.edit_original_response(content=content, attachments=files)
    else:
        await interaction.edit_original_response(content=content)
    interaction.extras.pop(_THINKING, None)


async def send_result(interaction: Interaction, result: SayResult, *, voice_message: bool) -> None:
    """The spoken audio: a file under the caption, or the caption then a voice message."""
    if not voice_message:
        file = discord.File(io.BytesIO(result.audio), AUDIO_FILENAME)
        await answer(interaction, caption(result), files=[file])
        return
    await answer(interaction, caption(result))  # a voice message can carry no text
    try:
        await send_voice_message(interaction.followup, result.audio, filename=AUDIO_FILENAME)
    except discord.HTTPException as exc:
        if not 400 <= exc.status < 500:
            raise
        # e.g. 50013 (no Send Voice Messages permission) or 50173 (not in this channel)
        log.warning("discord refused a voice message (%s %s); sending a file", exc.status, exc)
        file = discord.File(io.BytesIO(result.audio), AUDIO_FILENAME)
        await interaction.followup.send(file=file)


async def reply_privately(
    interaction: Interaction, text: str, *, view: discord.ui.View | None = None
) -> None:
    """``text`` (with ``view``'s buttons) as a message only the user sees, whatever state the
    interaction is in."""
    buttons = view if view is not None else discord.utils.MISSING
    thinking = interaction.extras.get(_THINKING)
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True, view=buttons)
    elif thinking == "private":
        await interaction.edit_original_response(content=text, view=view)
        interaction.extras.pop(_THINKING, None)
    elif thinking == "public":
        await answer(interaction, ANSWERED_PRIVATELY)
        try:
            await interaction.followup.send(text, ephemeral=True, view=buttons)
        except discord.HTTPException:
            await interaction.edit_original_response(content=text)  # public, but answered
            raise
        await interaction.delete_original_response()
    else:
        await interaction.followup.send(text, ephemeral=True, view=buttons)


def user_text(error: BaseException, *, context: str = "") -> str:
    """The sentence for an error that reached the command tree (unexpected ones are logged
    once, with ``context``)."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
        return OUTDATED  # Discord still shows commands from before a deploy
    return error_text(error, DISCORD_WORDING, context=context)


async def reply_with_error(interaction: Interaction, error: BaseException) -> None:
    """Tell the user (ephemerally) what went wrong; log anything unexpected. Never raises."""
    command = interaction.command.qualified_name if interaction.command else "?"
    context = f"/{command} for user {interaction.user.id} in channel {interaction.channel_id}"
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    try:
        if isinstance(original, ConsentNeeded):  # not an error: the one-time question
            view = ConsentView(state_of(interaction), original.pending_id)
            await reply_privately(interaction, CONSENT_PROMPT, view=view)
            return
        await reply_privately(interaction, user_text(error, context=context))
    except Exception:
        log.exception("could not tell user %s why /%s failed", interaction.user.id, command)
