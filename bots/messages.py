"""What users read: one friendly sentence per error, and the captions of replies.

Each platform passes its own wording for the few sentences that name its
commands, so there is one table per platform and one shared base.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping

from bots.chosen_voice import CLONING_OFF
from bots.community import SettingsView
from bots.consent import CONSENT_WORDING
from bots.errors import (
    ClipDownloadFailed,
    CloningDisabled,
    ConsentLapsed,
    InvalidInput,
    InvalidSetting,
    NoSavedVoice,
    NotAnAdmin,
    NotYourClip,
    QuotaExceeded,
    RateLimited,
    SayError,
    StorageProblem,
    TextBlocked,
    TTSBusy,
    TTSServerError,
    TTSTimeout,
    TTSUnavailable,
    UserBlocked,
    VoiceClipRejected,
    VoiceCloningUnavailable,
)
from bots.quotas import day_month
from bots.say import Erased, SavedVoice, SayResult, VoiceStatus
from storage.voices import ForgetReport

log = logging.getLogger(__name__)

UNEXPECTED = "Something went wrong on my side — please try again in a moment."
# For a request the bot was still working on when it had to stop.
GAVE_UP = "I had to restart before I could finish that — please try again in a moment."
BUILT_IN_AGAIN = "Back to the built-in voice."


def privacy_line(url: str | None) -> str:
    """The last line of every help: where to read what is kept, and how to erase it."""
    where = url or "docs/privacy.md in saybot's repository"
    return f"What I keep, for how long, and how to erase it: {where}"


# Asked once per recording, before it is first cloned (bots.consent).
CONSENT_PROMPT = (
    f"Before I use this recording, please confirm: “{CONSENT_WORDING}”\n"
    "I ask once per recording. Until you answer, nothing is stored or cloned."
)
CONSENT_YES = "Yes, I confirm"
CONSENT_NO = "No, delete it"
CONSENT_RECORDED = "✅ Confirmed. Thank you — your consent is recorded for this recording."
CONSENT_DECLINED = "Deleted that clip: nothing was stored or cloned."


def _seconds(value: float | None) -> str:
    return f"{max(1, math.ceil(value or 1))} s"


def _until(when: dt.datetime) -> str:
    """How long until ``when``: "3 h 5 min", "12 min"."""
    minutes = max(1, math.ceil((when - dt.datetime.now(dt.UTC)).total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _quota_text(error: QuotaExceeded) -> str:
    cached = "I can still answer with audio I've made before"
    if error.scope == "budget":
        return (
            f"This bot has used its voice-engine budget for the month — {cached}, and the "
            f"budget renews on {day_month(error)} (UTC)."
        )
    who = "You've" if error.scope == "user" else "Everyone here together has"
    return (
        f"{who} used today's voice-engine time — {cached}, and the limit resets at midnight "
        f"UTC (in {_until(error.resets_at)})."
    )


def error_text(
    error: BaseException, overrides: Mapping[type[SayError], str] = {}, *, context: str = ""
) -> str:
    """The one sentence a user sees for ``error``; unexpected errors are logged (once, here,
    with ``context``: which message or command), not shown."""
    for kind, text in overrides.items():
        if isinstance(error, kind):
            return text
    match error:
        case UserBlocked():
            return "This bot doesn't take requests from you."
        case TextBlocked():
            where = "on this bot" if error.where == "bot" else "here"
            return f"I won't say that: it has a word that is blocked {where}."
        case CloningDisabled():
            if error.where == "bot":
                return "Voice cloning is turned off on this bot — send your text without a clip."
            return f"The admins here have turned {error.what} off."
        case QuotaExceeded():
            return _quota_text(error)
        case InvalidSetting():
            return f"I can't change that: {error.message}."
        case NotAnAdmin():
            return "Only the admins here can change these settings."
        case RateLimited():
            return f"You're going a bit fast — try again in {_seconds(error.retry_after_s)}."
        case InvalidInput():
            return f"I can't say that: {error.message}."
        case VoiceClipRejected():
            return f"I can't use that voice clip: {error.message}."
        case NotYourClip():
            return f"I won't clone that: {error.message}."
        case ConsentLapsed():
            return "That question has lapsed and its clip is gone — please send it again."
        case ClipDownloadFailed():
            return f"I couldn't download your clip ({error.message}) — please send it again."
        case VoiceCloningUnavailable():
            return (
                "Voice cloning needs the GPU engine, which isn't running right now — "
                "send your text without a voice clip."
            )
        case NoSavedVoice():
            return "You have no saved voice."
        case StorageProblem():
            return "I can't reach my storage right now, so nothing was changed — try again soon."
        case TTSBusy():
            wait = f"in {_seconds(error.retry_after_s)}" if error.retry_after_s else "shortly"
            return f"The voice engine is busy right now — please try again {wait}."
        case TTSTimeout():
            return (
                "The voice engine took too long to answer (it may be warming up) — "
                "please try again in a minute."
            )
        case TTSServerError():
            return UNEXPECTED
        case TTSUnavailable():
            return "The voice engine is unavailable right now — please try again later."
        case SayError():
            return f"I couldn't do that: {error.message}."
    log.error(
        "unexpected error reached a user%s", f" ({context})" if context else "", exc_info=error
    )
    return UNEXPECTED


# Every reply says it is synthetic first (the EU AI Act's Art. 50 transparency duty).
AI_MARKER = "🤖🔊 AI voice"


def caption(result: SayResult) -> str:
    """That the audio is AI-generated, which voice spoke and for how long, plus why a saved
    voice was not used."""
    text = f"{AI_MARKER} · {result.voice.value} · {result.duration_s:.1f} s"
    if result.note:
        text += f" ({result.note})"
    return text


def saved_text(saved: SavedVoice) -> str:
    """The answer to "save my voice"."""
    later = "" if saved.usable_now else f" ({CLONING_OFF}, so I'll use it once it's back)"
    return f"Saved: /say now speaks in this voice{later}."


def voice_status_text(status: VoiceStatus, how: str) -> str:
    """The answer to ``/voice`` alone: which voice speaks, and the consents on record."""
    voice = (
        f"your saved voice ({status.default_voice_id[:8]}…)"
        if status.default_voice_id
        else "the built-in voice"
    )
    lines = [f"/say speaks in {voice}."]
    if status.consents:
        last = status.consents[-1]
        when = dt.datetime.fromtimestamp(last.given_at, dt.UTC).date().isoformat()
        lines.append(
            f"You confirmed {len(status.consents)} recording(s) as your own voice; the last "
            f"on {when} (wording version {last.wording_version})."
        )
    else:
        lines.append("You have confirmed no recording as your own voice.")
    lines.append(how)
    return "\n".join(lines)


def forget_text(erased: Erased) -> str:
    """The answer to "forget everything of mine": what was deleted, in numbers."""
    if not erased.anything_removed:
        return "There was nothing of yours to delete."
    deleted = _voices_deleted(erased.voices) if erased.voices.anything_removed else []
    if erased.consents:
        deleted.append(f"your {erased.consents} consent record(s)")
    if erased.waiting_clips:
        deleted.append(f"the {erased.waiting_clips} clip(s) waiting for your answer")
    if erased.usage_counters:
        deleted.append("your usage history")
    *first, last = deleted
    listed = f"{', '.join(first)} and {last}" if first else last
    return f"Done: deleted {listed}."


def _voices_deleted(report: ForgetReport) -> list[str]:
    clips = len(report.voices_deleted) + len(report.voices_still_owned_by_others)
    deleted = [f"your {clips} saved voice clip(s)"] if clips else []
    if report.attached_voices_forgotten:
        sent_once = len(report.attached_voices_forgotten)
        deleted.append(f"the {sent_once} voice(s) you sent with a request")
    if report.default_cleared:
        deleted.append("your default voice")
    made_with = "them" if deleted else "your voices"
    deleted.append(f"{report.cache_entries_deleted} recording(s) made with {made_with}")
    return deleted


def settings_text(view: SettingsView, how: str, *, reader: bool = False) -> str:
    """``/settings``: what this community's admins chose, and what is in effect here
    (``reader``: with the Discord channel reader's own setting)."""
    chat = view.chat

    def toggle(on: bool) -> str:
        return "on" if on else "off"

    cloning = toggle(chat.cloning) if view.cloning_on_bot else "off on this bot"
    rate = "no limit" if view.rate_per_minute is None else f"{view.rate_per_minute:g} a minute"
    bot_rate = "none" if view.bot_rate_per_minute is None else f"{view.bot_rate_per_minute:g}"
    quota = f"{view.quota_s:g} s a day" if view.quota_s else "no limit"
    bot_quota = f"{view.bot_quota_s:g} s" if view.bot_quota_s else "none"
    defaults = (
        ", ".join(f"{name} {value:g}" for name, value in sorted(chat.defaults.items()))
        or "the engine's own"
    )
    blocked = ", ".join(sorted(chat.blocked)) or "none"
    lines = [
        "Settings here:",
        f"• voice cloning: {cloning}",
        f"• saved voices: {toggle(chat.saved_voices and chat.cloning and view.cloning_on_bot)}",
        f"• longest text: {view.max_text} characters",
        f"• requests per person: {rate} (the bot's limit: {bot_rate})",
        f"• GPU time for everyone here: {quota} (the bot's limit: {bot_quota})",
        f"• default options: {defaults}",
        f"• blocked words: {blocked}",
    ]
    if reader:
        lines.append(f'• the channel reader says "<name> said": {toggle(chat.read_names)}')
    lines.append(how)
    return "\n".join(lines)
