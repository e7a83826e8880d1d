"""Serve an ASGI app as a task inside saybot's own event loop (local TTS, admin endpoint).

uvicorn normally takes over SIGINT/SIGTERM; here the process's one shutdown
sequence owns the signals, so a server stops when the product says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator
from typing import Any

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serve_app(app: Any, host: str, port: int) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (0 = any free port); yields its base URL."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = EmbeddedServer(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError(f"the server on {host}:{bound_port} stopped during startup")
            await asyncio.sleep(0.01)
        shown_host = f"[{host}]" if family == socket.AF_INET6 else host
        yield f"http://{shown_host}:{bound_port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
