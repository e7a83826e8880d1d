"""A diagnostic flow for the chat benchmarks: the adapter's own cost, with nothing behind it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from bots.say import SayFlow, SayRequest, SayResult


class AnsweredFlow(SayFlow):
    """``say`` returns one prepared result; nothing else of the flow runs."""

    def __init__(self, flow: SayFlow, result: SayResult) -> None:
        super().__init__(**{f.name: getattr(flow, f.name) for f in dataclasses.fields(flow)})
        self.result = result

    async def say(
        self, request: SayRequest, *, admitted: Callable[[], None] | None = None
    ) -> SayResult:
        """A prepared answer: like a cache hit, it never calls ``admitted``."""
        return self.result
