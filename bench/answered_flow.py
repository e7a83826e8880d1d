"""A diagnostic flow for the chat benchmarks: the adapter's own cost, with nothing behind it."""

from __future__ import annotations

from bots.say import SayFlow, SayRequest, SayResult


class AnsweredFlow(SayFlow):
    """``say`` returns one prepared result; nothing else of the flow runs."""

    def __init__(self, flow: SayFlow, result: SayResult) -> None:
        super().__init__(flow.tts, flow.cache, flow.voices, flow.limiter, flow.usage)
        self.result = result

    async def say(self, request: SayRequest) -> SayResult:
        return self.result
