"""A diagnostic flow for the chat benchmarks: the adapter's own cost, with nothing behind it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from bots.say import SayFlow, SayRequest, SayResult
from storage.sent_files import SentFiles


class HeldInMemory(SentFiles):
    """``SentFiles`` kept in this process: the ids the adapter stored, without Redis."""

    def __init__(self) -> None:  # no Redis: every method is replaced
        self.held: dict[tuple[str, str], str] = {}

    async def remember(self, audio_key: str, sender: str, audio: bytes, file_id: str) -> None:
        self.held[audio_key, sender] = file_id

    async def forget(self, audio_key: str, sender: str) -> None:
        self.held.pop((audio_key, sender), None)


class AnsweredFlow(SayFlow):
    """``say`` returns one prepared result, as a cache hit would with the sender's file id
    (the one the adapter stored after its first upload); nothing else of the flow runs."""

    def __init__(self, flow: SayFlow, result: SayResult) -> None:
        fields = {f.name: getattr(flow, f.name) for f in dataclasses.fields(flow)}
        super().__init__(**{**fields, "sent_files": HeldInMemory()})
        self.result = result

    async def say(
        self, request: SayRequest, *, admitted: Callable[[], None] | None = None
    ) -> SayResult:
        """A prepared answer: like a cache hit, it never calls ``admitted``."""
        assert isinstance(self.sent_files, HeldInMemory) and self.result.audio_key is not None
        held = self.sent_files.held.get((self.result.audio_key, request.sender or ""))
        return dataclasses.replace(self.result, held_as=held)
