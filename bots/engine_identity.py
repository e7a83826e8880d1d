"""The TTS engine's identity (name and model version), which is part of every cache key.

One component owns it: what this process knows, when to ask the service again, and what
every bot process remembers in Redis. Asked once; from then on answered at once, so a
cache hit never waits on the service (on Modal, asking may wake a GPU container). Older
than ``max_age_s`` it is asked again in the background, so a redeployed service is
noticed even by a bot that only serves cache hits; if the service cannot answer, the last
answer stays. A bot that starts while the service is down (or asleep on a cold GPU) starts
from the identity remembered in Redis and serves what is cached. An answer made by
another engine than the known one (a redeploy) makes the next request ask again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from bots.errors import TTSFailure, TTSMisconfigured
from storage.engine_identity import EngineIdentityStore
from tts_service.schema import EngineInfo

log = logging.getLogger(__name__)

# While the service cannot say which engine it runs, keep the stale answer this long at most
# between tries, so cache hits go on being served without each one waiting for the retries.
RETRY_S = 10.0

Fetch = Callable[[], Awaitable[EngineInfo]]


class EngineIdentity:
    def __init__(
        self, fetch: Fetch, store: EngineIdentityStore | None = None, *, max_age_s: float = 300.0
    ) -> None:
        self._fetch = fetch
        self._store = store
        self._max_age_s = max_age_s
        self._known: EngineInfo | None = None
        self._expires = 0.0  # time.monotonic() after which it is asked again
        self._remembered: EngineInfo | None = None  # what the store holds, as far as known
        self._looked_in_store = store is None
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None

    @property
    def known(self) -> EngineInfo | None:
        """The last known identity, stale or not, without asking anyone."""
        return self._known

    async def current(self) -> EngineInfo:
        """The identity: at once when known (asked again in the background when stale)."""
        known = self._known
        if known is None:
            async with self._lock:  # many requests, one question
                return self._known or await self._first()
        if time.monotonic() >= self._expires and self._refresh is None:
            self._refresh = asyncio.create_task(self._refresh_in_background())
        return known

    def observed(self, name: str, model_version: str) -> None:
        """An answer came from this engine; another than the known one means a redeploy,
        so the next request asks before keying again."""
        known = self._known
        if known is not None and (name, model_version) != (known.name, known.model_version):
            log.info(
                "the TTS service now runs %s %s; asking its identity again", name, model_version
            )
            self._known = None

    async def aclose(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            await asyncio.wait([self._refresh])

    async def _first(self) -> EngineInfo:
        """Remembered by any bot (then checked in the background), else asked."""
        if not self._looked_in_store and self._store is not None:
            self._looked_in_store = True
            remembered = self._remembered = await self._store.last_seen()
            if remembered is not None:
                self._known, self._expires = remembered, 0.0
                return await self.current()
        return await self._ask()

    async def _ask(self) -> EngineInfo:
        info = await self._fetch()
        self._known, self._expires = info, time.monotonic() + self._max_age_s
        if info != self._remembered and self._store is not None:
            self._remembered = info
            await self._store.remember(info)
        return info

    async def _refresh_in_background(self) -> None:
        try:
            await self._ask()
        except TTSMisconfigured:
            # Not logged again: the client said it once, naming TTS_API_TOKEN; a warning
            # every RETRY_S would repeat it for as long as the token stays wrong.
            self._expires = time.monotonic() + min(RETRY_S, self._max_age_s)
        except TTSFailure as exc:
            log.warning("keeping the TTS engine's last known identity: %s", exc.message)
            self._expires = time.monotonic() + min(RETRY_S, self._max_age_s)
        except Exception:
            log.exception("asking the TTS engine's identity failed")
        finally:
            self._refresh = None
