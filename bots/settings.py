"""Settings of the bot process, from the environment or ``.env``; built in ``main()``.

Tokens are ``SecretStr`` so they never show up in logs or reprs.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bots.clips import ClipLimits
from bots.community import OperatorRules
from bots.draining import SHUTDOWN_TIMEOUT_S
from bots.quotas import QuotaLimits
from bots.word_filter import WordFilter, read_word_list
from tts_service.schema import MAX_REFERENCE_BYTES

TELEGRAM_PUBLIC_API = "https://api.telegram.org/bot"
TELEGRAM_PUBLIC_FILES = "https://api.telegram.org/file/bot"


def _split_ids(value: object) -> object:
    if isinstance(value, str):
        return [int(part) for part in value.replace(",", " ").split()]
    return value


class BotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # --- the TTS service ---------------------------------------------------------------------
    tts_service_url: str | None = Field(
        default=None, description="Unset: `saybot run` serves the local Piper engine itself."
    )
    tts_api_token: SecretStr | None = None
    tts_connect_timeout_s: float = Field(default=10.0, gt=0)
    # A cold Chatterbox container needs tens of seconds before its first word.
    tts_read_timeout_s: float = Field(default=180.0, gt=0)
    tts_max_attempts: int = Field(default=3, ge=1, le=10)  # when the service is unreachable
    # Syntheses this process sends at once (the rest wait their turn): the service's own
    # limit (TTS_MAX_IN_FLIGHT), so a burst queues here instead of being answered 503.
    tts_client_max_in_flight: int = Field(default=4, ge=1)
    # How long a request waits for the service's room (busy answers retried, Retry-After
    # honoured) before the user is told it is busy.
    tts_request_deadline_s: float = Field(default=120.0, gt=0, le=900)
    # "local": when the service is away (or a cold GPU has not answered within
    # TTS_FALLBACK_AFTER_S), the bundled Piper voice answers instead, captioned as a stand-in.
    tts_fallback: Literal["none", "local"] = "none"
    tts_fallback_after_s: float = Field(default=20.0, gt=0)
    # The engine's name and version are part of every cache key: re-ask this often, so a
    # redeployed service is noticed even by a bot that only ever hits the cache.
    tts_engine_info_max_age_s: float = Field(default=300.0, gt=0)

    # --- what users may send -----------------------------------------------------------------
    max_voice_clip_bytes: int = Field(default=MAX_REFERENCE_BYTES, gt=0)
    max_voice_clip_seconds: float = Field(default=60.0, gt=0)
    # A clip host that hangs must not hold the request (discord.py's own default is 300 s).
    clip_download_timeout_s: float = Field(default=15.0, gt=0)

    # --- operator controls (bots.community, bots.quotas) --------------------------------------
    # One word or phrase a line, refused in every chat (whole words, any case or accents).
    blocked_words_file: FilePath | None = None  # checked to exist when settings are built
    # false: no clip is ever downloaded or cloned, and saved voices are not used.
    cloning_enabled: bool = True
    # BLOCKED_USERS="telegram:123,discord:456": one sentence for them, nothing else happens.
    blocked_users: Annotated[frozenset[str], NoDecode] = Field(default_factory=frozenset)
    # GPU seconds a day (0 = no limit): per user, and per server or group (whose admins may
    # lower it for themselves with /settings quota).
    quota_user_gpu_s_per_day: float = Field(default=0.0, ge=0)
    quota_server_gpu_s_per_day: float = Field(default=0.0, ge=0)
    # Dollars a month for everyone, priced with PRICE_PER_GPU_SECOND (0 = no budget).
    gpu_budget_usd_per_month: float = Field(default=0.0, ge=0)

    # --- Telegram ----------------------------------------------------------------------------
    telegram_bot_token: SecretStr | None = None
    telegram_api_base_url: str = TELEGRAM_PUBLIC_API
    telegram_file_base_url: str = TELEGRAM_PUBLIC_FILES
    # A self-hosted Bot API server started with `--local` answers getFile with absolute paths.
    telegram_local_mode: bool = False
    telegram_webhook_url: str | None = None
    telegram_webhook_listen: str = "127.0.0.1"
    telegram_webhook_port: int = 8443
    telegram_webhook_secret: SecretStr | None = None
    telegram_speak_private_messages: bool = True
    telegram_chat_action_interval_s: float = Field(default=4.0, gt=0)
    # A cache hit is answered in milliseconds: "recording…" would only flicker, and cost a call.
    telegram_chat_action_delay_s: float = Field(default=0.25, ge=0)
    telegram_poll_timeout_s: int = Field(default=30, ge=0, description="getUpdates long poll")

    # --- Discord -----------------------------------------------------------------------------
    discord_bot_token: SecretStr | None = None
    discord_guild_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    # Shards: DISCORD_SHARD_COUNT in all (DISCORD_SHARDS is its older name); this process
    # runs DISCORD_SHARD_IDS of them ("0,1"; unset: all). Exactly one process should have
    # DISCORD_SYNC_COMMANDS on: syncing is a bulk overwrite, and the others need not repeat it.
    discord_shards: int | None = Field(
        default=None,
        ge=1,
        validation_alias=AliasChoices(
            "discord_shards", "DISCORD_SHARDS", "discord_shard_count", "DISCORD_SHARD_COUNT"
        ),
    )
    discord_shard_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    discord_sync_commands: bool = True
    discord_voice_messages: bool = False
    # Voice channels (/join): leave once no person has been in the channel this long.
    discord_voice_idle_s: float = Field(default=300.0, gt=0)
    # The channel reader (/read) needs the privileged MESSAGE_CONTENT intent: asked for
    # only when this is true (and enabled for the bot in Discord's developer portal).
    discord_read_channels: bool = False

    # --- privacy -------------------------------------------------------------------------------
    # Where users read what is kept and how to erase it (docs/privacy.md, published): /help
    # links it. Unset: /help names the page in saybot's repository.
    privacy_url: str | None = None

    # --- stopping ------------------------------------------------------------------------------
    # Signal to exit, everything included: set the orchestrator's grace period above it.
    shutdown_timeout_s: float = Field(default=SHUTDOWN_TIMEOUT_S, ge=5, le=3600)

    # --- admin endpoint ----------------------------------------------------------------------
    admin_host: str = "127.0.0.1"
    admin_port: int = 8089
    admin_token: SecretStr | None = None

    def clip_limits(self) -> ClipLimits:
        return ClipLimits(
            max_bytes=self.max_voice_clip_bytes,
            max_seconds=self.max_voice_clip_seconds,
            download_timeout_s=self.clip_download_timeout_s,
        )

    def operator_rules(self, price_per_gpu_second: float) -> OperatorRules:
        """The operator's controls; reads ``BLOCKED_WORDS_FILE`` (a missing file fails)."""
        words = read_word_list(self.blocked_words_file) if self.blocked_words_file else []
        return OperatorRules(
            blocked_words=WordFilter.of(words),
            cloning_enabled=self.cloning_enabled,
            blocked_users=self.blocked_users,
            quotas=QuotaLimits(
                user_s_per_day=self.quota_user_gpu_s_per_day,
                server_s_per_day=self.quota_server_gpu_s_per_day,
                budget_usd_per_month=self.gpu_budget_usd_per_month,
                price_per_gpu_second=price_per_gpu_second,
            ),
        )

    @field_validator("blocked_users", mode="before")
    @classmethod
    def _split_users(cls, value: object) -> object:
        """``platform:user_id`` entries, split by commas or spaces."""
        if not isinstance(value, str):
            return value
        users = frozenset(part for part in value.replace(",", " ").split() if part)
        for user in users:
            platform, _, user_id = user.partition(":")
            if not platform or not user_id:
                raise ValueError(f"{user!r} is not platform:user_id, e.g. telegram:123")
        return users

    @field_validator("discord_guild_ids", "discord_shard_ids", mode="before")
    @classmethod
    def _parse_guild_ids(cls, value: object) -> object:
        """``DISCORD_GUILD_IDS=1,2`` or ``"1 2"``: plain ids, not JSON."""
        return _split_ids(value)

    @model_validator(mode="after")
    def _check_shards(self) -> BotSettings:
        ids = self.discord_shard_ids
        if ids and self.discord_shards is None:
            raise ValueError(
                "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT (all shards, over all processes)"
            )
        if self.discord_shards is not None and any(not 0 <= i < self.discord_shards for i in ids):
            raise ValueError(
                f"DISCORD_SHARD_IDS are 0 to {self.discord_shards - 1} (DISCORD_SHARD_COUNT)"
            )
        if len(set(ids)) != len(ids):
            raise ValueError("DISCORD_SHARD_IDS names a shard twice")
        return self
