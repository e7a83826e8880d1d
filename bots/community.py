"""Community and operator controls: who may use the bot, what it may say, and how.

Two layers apply to every ``/say``, before anything is downloaded or synthesised:

* the operator's (``OperatorRules``, from ``BotSettings``): blocked users, blocked words for
  every chat, and cloning on or off for the whole bot;
* a community's (``storage.chat_settings.ChatSettings``: a Discord server, a Telegram group),
  changed by its admins with ``/settings`` (``bots.settings_changes``): cloning and saved
  voices on or off, the longest text, a per-user rate, a daily GPU quota, blocked words and
  default voice options (used where the user gave none). A community may only tighten the
  operator's rate and quota, never loosen them.

Blocked words of both layers are matched whole-word, ignoring case and accents
(``bots.word_filter``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from bots.errors import (
    CloningDisabled,
    InvalidInput,
    TextBlocked,
    UserBlocked,
    storage_errors_as_say_errors,
)
from bots.quotas import QuotaLimits
from bots.requests import SayRequest, parse_params
from bots.settings_changes import DEFAULTS, SettingChange, fields_of
from bots.word_filter import WordFilter
from storage.chat_settings import NO_SETTINGS, ChatSettings, ChatSettingsStore
from storage.settings import RateRule, StorageSettings
from tts_service.schema import MAX_TEXT_CHARS, TTSParams

# Why a user's saved voice did not speak (the reply's caption says so).
CLONING_OFF_ON_BOT = "voice cloning is off on this bot"
CLONING_OFF_HERE = "voice cloning is off here"
SAVED_VOICES_OFF_HERE = "saved voices are off here"


@dataclass(frozen=True)
class OperatorRules:
    """The operator's rules for every chat (``BLOCKED_WORDS_FILE``, ``CLONING_ENABLED``,
    ``BLOCKED_USERS``, the ``QUOTA_*`` and ``GPU_BUDGET_USD_PER_MONTH``)."""

    blocked_words: WordFilter = field(default_factory=WordFilter)
    cloning_enabled: bool = True
    blocked_users: frozenset[str] = frozenset()  # "platform:user_id"
    quotas: QuotaLimits = field(default_factory=QuotaLimits)  # GPU-time limits (bots.quotas)

    def check_user(self, platform: str, user_id: str) -> None:
        """``UserBlocked`` for a user the operator blocked: nothing else happens for them."""
        if f"{platform}:{user_id}" in self.blocked_users:
            raise UserBlocked("the operator has blocked you")


@dataclass(frozen=True)
class SettingsView:
    """A community's settings and what is in effect there, for ``/settings``."""

    chat: ChatSettings
    cloning_on_bot: bool
    max_text: int  # in effect: the community's, or the contract's
    rate_per_minute: float | None  # in effect per user (None: no limit)
    bot_rate_per_minute: float | None
    quota_s: float  # GPU seconds a day for the community, in effect (0: no limit)
    bot_quota_s: float


@dataclass(frozen=True)
class Community:
    """The two layers of rules, and a community's settings as its admins see and change them."""

    store: ChatSettingsStore
    operator: OperatorRules
    storage: StorageSettings  # the bot's own rate limits

    async def settings_of(self, platform: str, server_id: str | None) -> ChatSettings:
        """The community's settings (one read); the defaults outside a community."""
        if server_id is None:
            return NO_SETTINGS
        return await self.store.get(platform, server_id)

    def check(self, request: SayRequest, chat: ChatSettings) -> TTSParams:
        """The request's text and options under both layers' rules, or the error that
        refuses it: blocked words first, then the defaults filled in, the options' ranges,
        the longest text, and whether a clip may be cloned here."""
        if self.operator.blocked_words.blocks(request.text):
            raise TextBlocked("bot")
        if chat.blocked and WordFilter(chat.blocked).blocks(request.text):
            raise TextBlocked("here")
        defaults = {name: value for name, value in chat.defaults.items() if name in DEFAULTS}
        if defaults:
            request = dataclasses.replace(request, params={**defaults, **request.params})
        params = parse_params(request)
        if chat.max_text and len(params.text) > chat.max_text:
            raise InvalidInput(
                f"the text is {len(params.text)} characters long; the limit here is {chat.max_text}"
            )
        if request.clip is not None:
            self.check_cloning(chat)
        return params

    def check_cloning(self, chat: ChatSettings) -> None:
        """``CloningDisabled`` where no clip may be cloned (checked before any download)."""
        if not self.operator.cloning_enabled:
            raise CloningDisabled("bot")
        if not chat.cloning:
            raise CloningDisabled("here")

    def saved_voice_off(self, chat: ChatSettings) -> str | None:
        """Why a saved voice may not speak here (None: it may)."""
        if not self.operator.cloning_enabled:
            return CLONING_OFF_ON_BOT
        if not chat.cloning:
            return CLONING_OFF_HERE
        if not chat.saved_voices:
            return SAVED_VOICES_OFF_HERE
        return None

    def rate_rule(self, platform: str, chat: ChatSettings) -> RateRule | None:
        """The community's rate under the bot's own (None: the bot's rule applies)."""
        if not chat.rate_per_minute:
            return None
        bot = self.storage.rate_rule(platform)
        per_minute = float(chat.rate_per_minute)
        if self.storage.ratelimit_enabled:
            per_minute = min(per_minute, bot.per_minute)
        return RateRule(per_minute=per_minute, burst=max(1, min(bot.burst, int(per_minute))))

    async def view(self, platform: str, server_id: str) -> SettingsView:
        with storage_errors_as_say_errors():
            return self._view(platform, await self.store.read(platform, server_id))

    async def change(
        self, platform: str, server_id: str, changes: Sequence[SettingChange]
    ) -> SettingsView:
        """Apply ``changes`` (``InvalidSetting`` if one cannot be taken) and show the result."""
        with storage_errors_as_say_errors():
            current = await self.store.read(platform, server_id)
            put, drop = fields_of(changes, current.blocked)
            changed = await self.store.change(platform, server_id, put, drop)
        return self._view(platform, changed)

    def _view(self, platform: str, chat: ChatSettings) -> SettingsView:
        bot_rate = self.storage.rate_rule(platform).per_minute
        bot_rate_or_none = bot_rate if self.storage.ratelimit_enabled else None
        rule = self.rate_rule(platform, chat)
        return SettingsView(
            chat=chat,
            cloning_on_bot=self.operator.cloning_enabled,
            max_text=chat.max_text or MAX_TEXT_CHARS,
            rate_per_minute=rule.per_minute if rule is not None else bot_rate_or_none,
            bot_rate_per_minute=bot_rate_or_none,
            quota_s=self.operator.quotas.server_s(chat),
            bot_quota_s=self.operator.quotas.server_s_per_day,
        )
