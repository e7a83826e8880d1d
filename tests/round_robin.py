"""A small round-robin HTTP proxy: the one entry point in front of several webhook workers
(what nginx or a cloud load balancer is in production). Each request goes, whole, to the
next upstream in turn; its answer comes back as it is."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

Message = MutableMapping[str, Any]


class RoundRobin:
    """ASGI app forwarding to ``upstreams`` (base URLs) in turn; ``sent`` counts requests per
    upstream, ``paths`` per method and path (``"POST /v1/tts"``)."""

    def __init__(self, upstreams: list[str]) -> None:
        self.upstreams = upstreams
        self.sent = dict.fromkeys(upstreams, 0)
        self.paths: Counter[str] = Counter()
        self._next = itertools.cycle(upstreams)
        self._http: httpx.AsyncClient | None = None

    async def __call__(
        self,
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            if self._http is not None:
                await self._http.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self._http is None:
            # A fresh connection per request: reusing one the upstream is just closing (its
            # keep-alive ran out) fails after the upstream may have taken the update.
            self._http = httpx.AsyncClient(
                timeout=60, limits=httpx.Limits(max_keepalive_connections=0)
            )
        upstream = next(self._next)
        self.sent[upstream] += 1
        self.paths[f"{scope['method']} {scope['path']}"] += 1
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k != b"host"]
        answer = await self._http.request(
            scope["method"], upstream + scope["path"], content=body, headers=headers
        )
        await send(
            {
                "type": "http.response.start",
                "status": answer.status_code,
                "headers": [
                    (k.encode(), v.encode())
                    for k, v in answer.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding")
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer.content})
