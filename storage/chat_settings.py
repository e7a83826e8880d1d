"""A community's own settings (a Discord server, a Telegram group), changed by its admins.

One hash per community, durable (no TTL: the admins chose them), read whole with one
``HGETALL`` by each ``/say`` there. Its fields, each a string:

    cloning, saved_voices      "on" / "off"
    read_names                 "on" / "off": the Discord channel reader says "<name> said"
    max_text                   the longest text, in characters
    rate                       requests a minute per user
    quota                      GPU seconds a day for the whole community
    default:<option>           a number: the default exaggeration, temperature or cfg_weight
    block:<phrase>             "1": one blocked word or phrase, already folded by the caller
                               (one field each, so blocking and unblocking never race)

A field that is absent or does not parse means the bot's own default. The flow's read never
raises: while Redis is down a community's settings read as the defaults, as rate limits fail
open (see the README's "Community and operator controls"). Showing them to the admins and
changing them do raise (``StorageUnavailable``): an admin told "done" must find it done, and
must not be shown defaults as if they were the community's choice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from storage import keys
from storage.client import RedisClient
from storage.metrics import StorageMetrics

CLONING = "cloning"
SAVED_VOICES = "saved_voices"
READ_NAMES = "read_names"
MAX_TEXT = "max_text"
RATE = "rate"
QUOTA = "quota"
DEFAULT_PREFIX = "default:"
BLOCK_PREFIX = "block:"
ON, OFF = "on", "off"
# Whole-number fields, by the attribute of ``ChatSettings`` they fill.
_NUMBERS = {MAX_TEXT: "max_text", RATE: "rate_per_minute", QUOTA: "quota_s"}


@dataclass(frozen=True)
class ChatSettings:
    """What a community's admins chose; None (or empty) is the bot's own default."""

    cloning: bool = True
    saved_voices: bool = True
    read_names: bool = False  # the channel reader starts each message with "<name> said"
    max_text: int | None = None
    rate_per_minute: int | None = None
    quota_s: int | None = None
    blocked: frozenset[str] = frozenset()
    defaults: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, raw: Mapping[bytes | str, bytes | str]) -> ChatSettings:
        fields = {keys.as_text(name): keys.as_text(value) for name, value in raw.items()}
        numbers: dict[str, int] = {}
        for name, attribute in _NUMBERS.items():
            with contextlib.suppress(KeyError, ValueError):
                numbers[attribute] = int(fields[name])
        defaults: dict[str, float] = {}
        for name, value in fields.items():
            if name.startswith(DEFAULT_PREFIX):
                with contextlib.suppress(ValueError):
                    defaults[name.removeprefix(DEFAULT_PREFIX)] = float(value)
        return cls(
            cloning=fields.get(CLONING) != OFF,
            saved_voices=fields.get(SAVED_VOICES) != OFF,
            read_names=fields.get(READ_NAMES) == ON,
            blocked=frozenset(
                name.removeprefix(BLOCK_PREFIX) for name in fields if name.startswith(BLOCK_PREFIX)
            ),
            defaults=defaults,
            **numbers,
        )


NO_SETTINGS = ChatSettings()  # private chats and DMs: the bot's defaults


class ChatSettingsStore:
    def __init__(self, redis: RedisClient, metrics: StorageMetrics | None = None) -> None:
        self._redis = redis
        self.metrics = metrics if metrics is not None else StorageMetrics()

    async def get(self, platform: str, chat_id: str) -> ChatSettings:
        """The community's settings; the defaults if it has none or Redis is down."""
        key = self._key(platform, chat_id)
        empty: dict[bytes | str, bytes | str] = {}
        raw = await self.metrics.guarded(
            "chat settings read", lambda: self._redis.hgetall(key), when_down=empty
        )
        return ChatSettings.from_hash(raw)

    async def read(self, platform: str, chat_id: str) -> ChatSettings:
        """``get`` for showing them to the admins: ``StorageUnavailable`` rather than the
        defaults while Redis is down (they must not read as if nothing were set)."""
        key = self._key(platform, chat_id)
        raw = await self.metrics.required(
            "chat settings read",
            lambda: self._redis.hgetall(key),
            unavailable="the settings cannot be read right now",
        )
        return ChatSettings.from_hash(raw)

    async def change(
        self, platform: str, chat_id: str, put: Mapping[str, str], drop: Iterable[str] = ()
    ) -> ChatSettings:
        """Set the fields in ``put``, remove those in ``drop`` (back to the defaults), and
        return the settings as they are now, in one atomic round trip."""
        key = self._key(platform, chat_id)
        removed = list(drop)
        pipe = self._redis.pipeline(transaction=True)
        if put:
            pipe.hset(key, mapping={name: value for name, value in put.items()})
        if removed:
            pipe.hdel(key, *removed)
        pipe.hgetall(key)
        done = await self.metrics.required(
            "chat settings change",
            pipe.execute,
            unavailable="the settings cannot be changed right now",
        )
        return ChatSettings.from_hash(done[-1])

    @staticmethod
    def _key(platform: str, chat_id: str) -> str:
        return keys.chat_settings(
            keys.check_field("platform", platform), keys.check_field("chat_id", chat_id)
        )
