"""Cloning only with the speaker's say-so: whose clip it is, and the one-time confirmation.

A clip is cloned (saved, or used for one request) only when the person asking sent it
themselves: not a reply to someone else's voice note, not a forwarded one. Before a
recording is first used, its sender confirms once, with a button, the wording below; the
confirmation is kept as a consent record (``storage.consents``). Until then the clip waits
here, in this process's memory only, for a few minutes: nothing is stored and nothing is
cloned, and declining (or not answering) drops it at once.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from bots.chosen_voice import PreparedVoice
from bots.clips import ClipSource
from bots.errors import ConsentLapsed, NotYourClip

if TYPE_CHECKING:
    from bots.say import SayRequest

CONSENT_WORDING_VERSION = 1
CONSENT_WORDING = (
    "This is my own voice (or I have the speaker's permission), and I understand saybot "
    "will speak text in it."
)
PENDING_TTL_S = 600.0  # an unanswered question lapses, and its clip with it
MAX_PENDING = 1_000  # per process: the oldest question lapses first


def check_own_clip(clip: ClipSource, user_id: str) -> None:
    """``NotYourClip`` unless the person asking sent the clip themselves."""
    if clip.forwarded:
        raise NotYourClip(
            "that voice note was forwarded; send a recording of your own voice yourself"
        )
    if clip.sender_id != user_id:
        raise NotYourClip(
            "that voice note was sent by someone else; I only clone a voice from a clip "
            "its owner sends"
        )


@dataclass(frozen=True)
class PendingClip:
    """A prepared clip waiting for its sender's confirmation, and what it was sent for."""

    id: str
    platform: str
    user_id: str
    action: Literal["say", "save"]
    voice: PreparedVoice
    request: SayRequest | None  # for "say": the request to answer once confirmed
    expires_at: float


class PendingConsents:
    """Clips waiting for a yes or a no, in memory only, each for ``PENDING_TTL_S``."""

    def __init__(self, ttl_s: float = PENDING_TTL_S, max_pending: int = MAX_PENDING) -> None:
        self._ttl_s = ttl_s
        self._max = max_pending
        self._waiting: OrderedDict[str, PendingClip] = OrderedDict()

    def add(
        self,
        platform: str,
        user_id: str,
        action: Literal["say", "save"],
        voice: PreparedVoice,
        request: SayRequest | None = None,
    ) -> PendingClip:
        self._drop_lapsed()
        while len(self._waiting) >= self._max:
            self._waiting.popitem(last=False)
        pending = PendingClip(
            id=secrets.token_urlsafe(12),
            platform=platform,
            user_id=user_id,
            action=action,
            voice=voice,
            request=request,
            expires_at=time.monotonic() + self._ttl_s,
        )
        self._waiting[pending.id] = pending
        return pending

    def take(self, pending_id: str, platform: str, user_id: str) -> PendingClip:
        """The clip waiting under ``pending_id`` for this user, no longer waiting. Raises
        ``ConsentLapsed`` (unknown or lapsed) or ``NotYourClip`` (someone else's: theirs
        stays waiting)."""
        pending = self.check(pending_id, platform, user_id)
        del self._waiting[pending_id]
        return pending

    def check(self, pending_id: str, platform: str, user_id: str) -> PendingClip:
        """``take`` without taking: the clip stays waiting."""
        self._drop_lapsed()
        pending = self._waiting.get(pending_id)
        if pending is None:
            raise ConsentLapsed("that question has lapsed and its clip is gone; send it again")
        if (pending.platform, pending.user_id) != (platform, user_id):
            raise NotYourClip("only the person who sent the clip can answer that")
        return pending

    def drop_user(self, platform: str, user_id: str) -> int:
        """Forget every clip the user left waiting (their "forget everything")."""
        theirs = [
            key
            for key, pending in self._waiting.items()
            if (pending.platform, pending.user_id) == (platform, user_id)
        ]
        for key in theirs:
            del self._waiting[key]
        return len(theirs)

    def _drop_lapsed(self) -> None:
        now = time.monotonic()
        while self._waiting:
            oldest = next(iter(self._waiting.values()))
            if oldest.expires_at > now:
                return
            self._waiting.popitem(last=False)
