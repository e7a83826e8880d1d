"""The one-time consent question on Discord: two buttons under a message only its user sees.

Pressing one acknowledges at once (Discord's 3 s), then the flow records the answer and
does what the clip was sent for: the audio is posted for everyone (as ``/say`` would
have), a saved voice is confirmed privately, a "no" drops the clip. Only the clip's sender
can answer; anyone else is told so privately and the question stays open.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import discord

from bots.consent import PENDING_TTL_S
from bots.discord_bot.state import BotState, Interaction
from bots.errors import ConsentLapsed, NotYourClip
from bots.messages import (
    CONSENT_DECLINED,
    CONSENT_NO,
    CONSENT_RECORDED,
    CONSENT_YES,
    caption,
    error_text,
    saved_text,
)
from bots.say import SavedVoice, SayResult

log = logging.getLogger(__name__)

PLATFORM = "discord"
AUDIO_FILENAME = "say.ogg"


class ConsentButton(discord.ui.Button["ConsentView"]):
    def __init__(self, label: str, style: discord.ButtonStyle, pending_id: str, accepted: bool):
        super().__init__(label=label, style=style, custom_id=f"consent:{pending_id}:{accepted}")
        self.accepted = accepted

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        assert self.view is not None
        await self.view.answer(interaction, self.accepted)


class ConsentView(discord.ui.View):
    def __init__(self, bot: BotState, pending_id: str) -> None:
        super().__init__(timeout=PENDING_TTL_S)
        self.bot = bot
        self.pending_id = pending_id
        self.add_item(ConsentButton(CONSENT_YES, discord.ButtonStyle.success, pending_id, True))
        self.add_item(ConsentButton(CONSENT_NO, discord.ButtonStyle.secondary, pending_id, False))

    async def answer(self, interaction: Interaction, accepted: bool) -> None:
        await interaction.response.defer()  # acknowledged; the question's message is edited
        try:
            outcome = await self.bot.flow.answer_consent(
                PLATFORM, str(interaction.user.id), self.pending_id, accepted
            )
        except NotYourClip as refused:
            await interaction.followup.send(error_text(refused), ephemeral=True)
            return
        except ConsentLapsed as lapsed:
            self.stop()  # its clip is gone: these buttons have nothing left to answer
            await interaction.followup.send(error_text(lapsed), ephemeral=True)
            return
        except Exception as exc:
            context = f"consent answer of user {interaction.user.id}"
            await interaction.followup.send(error_text(exc, context=context), ephemeral=True)
            return
        self.stop()
        if outcome is None:
            await interaction.edit_original_response(content=CONSENT_DECLINED, view=None)
        elif isinstance(outcome, SavedVoice):
            content = f"{CONSENT_RECORDED}\n{saved_text(outcome)}"
            await interaction.edit_original_response(content=content, view=None)
        else:
            await interaction.edit_original_response(content=CONSENT_RECORDED, view=None)
            await self._post(interaction, outcome)

    async def _post(self, interaction: Interaction, result: SayResult) -> None:
        """The answer the clip was sent for, where everyone sees it (as ``/say`` posts it)."""
        file = discord.File(io.BytesIO(result.audio), AUDIO_FILENAME)
        await interaction.followup.send(caption(result), file=file)
