"""Storage settings, from the environment or ``.env``; build them in ``main()``, never at import.

Field names are prefixed by what they tune (``cache_``, ``voice_``, ``ratelimit_``…) so they
can share one ``.env`` with ``BotSettings`` without colliding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from storage import keys
from storage.clip_cipher import parse_keys


class RateRule(BaseModel):
    """A token bucket: ``per_minute`` tokens refill each minute, at most ``burst`` saved up."""

    per_minute: float = Field(gt=0)
    burst: int = Field(ge=1)


class StorageSettings(BaseSettings):
    # Inputs stay out of validation errors: a mistyped SAYBOT_DATA_KEY or REDIS_URL is a secret.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    # --- connection --------------------------------------------------------------------------
    redis_url: SecretStr | None = Field(
        default=None, description="Unset: an embedded Valkey is started and persisted locally."
    )
    # The audio cache (entries and single-flight locks) may live apart from durable data, on
    # a server that evicts (allkeys-lru) without ever touching voices, usage or tombstones.
    cache_redis_url: SecretStr | None = Field(
        default=None, description="Unset: the cache shares REDIS_URL's server (or is embedded)."
    )
    # REDIS_URL names any node of a Redis Cluster (both URLs, with CACHE_REDIS_URL): the
    # client learns the others from it. A ``redis+sentinel://`` URL needs no flag.
    redis_cluster: bool = False
    embedded_data_dir: Path | None = Field(
        default=None, description="Unset: <user data dir>/saybot/valkey (platformdirs)."
    )
    embedded_port: int | None = Field(default=None, ge=1, le=65535, description="Unset: any free.")
    # Only the embedded servers are configured by us; a managed Redis keeps its own policy.
    # The embedded cache server evicts (allkeys-lru) within this budget; the embedded data
    # server has no budget and never evicts. EMBEDDED_MAXMEMORY is the name it had before.
    embedded_cache_maxmemory: str = Field(
        default="256mb",
        validation_alias=AliasChoices(
            "embedded_cache_maxmemory", "EMBEDDED_CACHE_MAXMEMORY", "EMBEDDED_MAXMEMORY"
        ),
    )
    # Short: a chat reply must not hang on a dead Redis; the callers degrade instead.
    redis_socket_timeout_s: float = Field(default=1.0, gt=0)
    redis_connect_timeout_s: float = Field(default=1.0, gt=0)
    redis_retries: int = Field(default=2, ge=0, le=10)
    redis_max_connections: int = Field(default=64, ge=2)
    redis_health_check_interval_s: int = Field(default=15, ge=0)

    # --- audio cache -------------------------------------------------------------------------
    cache_ttl_s: int = Field(default=keys.AUDIO_TTL_S, gt=0)
    cache_max_entry_bytes: int = Field(default=keys.AUDIO_MAX_ENTRY_BYTES, gt=0)
    singleflight_lock_ttl_ms: int = Field(default=keys.LOCK_TTL_MS, ge=100)
    singleflight_wait_timeout_s: float = Field(default=keys.LOCK_WAIT_TIMEOUT_S, gt=0)

    # --- voices ------------------------------------------------------------------------------
    voice_max_bytes: int = Field(default=keys.VOICE_MAX_BYTES, gt=0)
    voice_idle_ttl_s: int = Field(default=keys.VOICE_IDLE_TTL_S, gt=0)
    # Saving one more drops the user's oldest (and its clip, when nobody else saved it).
    max_voices_per_user: int = Field(default=3, ge=1)
    # Keys sealing clips at rest (storage.clip_cipher): URL-safe base64 of 32 bytes each,
    # comma-separated, the first seals and all open. Unset: the embedded server's key file.
    data_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("data_key", "SAYBOT_DATA_KEY")
    )

    # --- usage -------------------------------------------------------------------------------
    usage_retention_days: int = Field(default=keys.USAGE_RETENTION_DAYS, ge=1)
    # USD; an L4 (the Modal deployment's default GPU) at $0.80/h
    price_per_gpu_second: float = Field(default=0.000222, ge=0)

    # --- rate limits -------------------------------------------------------------------------
    ratelimit_enabled: bool = True
    ratelimit_per_minute: float = Field(default=6.0, gt=0)
    ratelimit_burst: int = Field(default=3, ge=1)
    # JSON, e.g. RATELIMIT_PLATFORMS='{"discord": {"per_minute": 10, "burst": 5}}'
    ratelimit_platforms: dict[str, RateRule] = Field(default_factory=dict)
    # RATELIMIT_ADMINS="telegram:123,discord:456" (commas or spaces)
    ratelimit_admins: Annotated[frozenset[str], NoDecode] = Field(default_factory=frozenset)
    ratelimit_fail_open: bool = True

    @field_validator("data_key")
    @classmethod
    def _check_data_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            parse_keys(value.get_secret_value())  # a bad key fails at start, naming no key
        return value

    @field_validator("ratelimit_admins", mode="before")
    @classmethod
    def _split_admins(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part for part in value.replace(",", " ").split() if part)
        return value

    def rate_rule(self, platform: str) -> RateRule:
        """The bucket for ``platform``: its override, or the global rate and burst."""
        return self.ratelimit_platforms.get(
            platform, RateRule(per_minute=self.ratelimit_per_minute, burst=self.ratelimit_burst)
        )
