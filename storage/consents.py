"""Consent records: a user confirmed that a clip is their own voice (or that they have the
speaker's permission) before saybot clones it.

One hash per user, ``voice id → {"at": Unix time, "wording": version}``: which recording
(by the sha256 of its normalised samples), when, and which wording they agreed to. It
lives as long as a saved voice would (the same idle TTL, restarted by each consent), and
"forget everything of mine" deletes it. Reads degrade to "no consent" when Redis is down
(the user is simply asked again); writes raise ``StorageUnavailable``: nobody is told
"recorded" when it was not.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from storage import keys
from storage.client import RedisClient
from storage.metrics import StorageMetrics
from storage.settings import StorageSettings


@dataclass(frozen=True)
class Consent:
    voice_id: str
    given_at: float  # Unix time
    wording_version: int


class ConsentStore:
    def __init__(
        self, redis: RedisClient, settings: StorageSettings, metrics: StorageMetrics | None = None
    ) -> None:
        self._redis = redis
        self._settings = settings
        self.metrics = metrics if metrics is not None else StorageMetrics()

    async def record(
        self, platform: str, user_id: str, voice_id: str, wording_version: int
    ) -> Consent:
        keys.check_voice_id(voice_id)
        key = keys.user_consents(platform, user_id)
        consent = Consent(voice_id, time.time(), wording_version)
        value = json.dumps({"at": consent.given_at, "wording": wording_version})
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(key, voice_id, value)
        pipe.expire(key, self._settings.voice_idle_ttl_s)
        await self.metrics.required(
            "consent record", pipe.execute, unavailable="the consent could not be recorded"
        )
        return consent

    async def given(self, platform: str, user_id: str, voice_id: str) -> bool:
        """Whether the user consented to this voice; False when Redis cannot say."""
        key = keys.user_consents(platform, user_id)
        found = await self.metrics.guarded(
            "consent check", lambda: self._redis.hexists(key, voice_id), when_down=False
        )
        return bool(found)

    async def of_user(self, platform: str, user_id: str) -> list[Consent]:
        """The user's consent records, oldest first; empty when Redis cannot say."""
        key = keys.user_consents(platform, user_id)
        raw: dict[bytes | str, bytes | str] = await self.metrics.guarded(
            "consent list", lambda: self._redis.hgetall(key), when_down={}
        )
        consents = []
        for voice_id, value in raw.items():
            record = json.loads(value)
            consents.append(
                Consent(keys.as_text(voice_id), float(record["at"]), int(record["wording"]))
            )
        return sorted(consents, key=lambda c: c.given_at)

    async def forget(self, platform: str, user_id: str) -> int:
        """Delete every consent record of the user; returns how many there were."""
        key = keys.user_consents(platform, user_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hlen(key)
        pipe.delete(key)
        count, _ = await self.metrics.required(
            "consent forget",
            pipe.execute,
            unavailable="consents cannot be forgotten right now",
            always_try=True,  # a forget the user asked for is tried even with the breaker open
        )
        return int(count)
