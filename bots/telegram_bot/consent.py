"""The answer to the consent question: a press of one of its two buttons.

Only the clip's sender may answer: anyone else (or a second press) gets an alert and the
question stays as it is. The press is acknowledged at once (Telegram wants it within
seconds; a synthesis may take longer); then yes records the consent and does what the clip
was sent for, no drops the clip.
"""

from __future__ import annotations

import re

from telegram import Message, Update
from telegram.ext import ContextTypes

from bots.errors import ConsentLapsed, NotYourClip
from bots.messages import CONSENT_DECLINED, CONSENT_RECORDED, error_text, saved_text
from bots.say import SavedVoice, SayResult
from bots.telegram_bot.replies import deps_of, handle, send_reply, send_voice

PLATFORM = "telegram"
CONSENT_DATA = re.compile(r"consent:(?P<id>[\w-]+):(?P<answer>yes|no)")


async def on_consent_answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A press of a consent button: only the clip's sender may answer. Yes records the
    consent and does what the clip was sent for; no deletes the clip."""
    query = update.callback_query
    matched = CONSENT_DATA.fullmatch(query.data or "") if query is not None else None
    if query is None or matched is None or not isinstance(query.message, Message):
        return
    prompt = query.message
    original = prompt.reply_to_message or prompt  # the message that brought the clip
    flow = deps_of(context).flow

    async def work() -> None:
        user_id = str(query.from_user.id)
        try:
            flow.check_consent_answer(PLATFORM, user_id, matched["id"])
        except (NotYourClip, ConsentLapsed) as refused:
            await query.answer(error_text(refused), show_alert=True)
            return
        await query.answer()  # at once: Telegram wants it within seconds, a synthesis may not
        outcome = await flow.answer_consent(
            PLATFORM, user_id, matched["id"], matched["answer"] == "yes"
        )
        await prompt.edit_text(CONSENT_DECLINED if outcome is None else CONSENT_RECORDED)
        if isinstance(outcome, SayResult):
            await send_voice(original, context, outcome)
        elif isinstance(outcome, SavedVoice):
            done = saved_text(outcome)
            await send_reply(original, context, lambda: original.reply_text(done, do_quote=True))

    await handle(original, context, work)
