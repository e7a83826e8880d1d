"""Telegram's webhook, served by saybot itself on ``TELEGRAM_WEBHOOK_LISTEN:PORT``.

Telegram POSTs every update to the URL given to ``setWebhook``, with the secret given there
in ``X-Telegram-Bot-Api-Secret-Token``. Anyone who finds the URL can POST as well, claiming
to be any user (and, say, make ``/voice forget`` delete that user's voice), so:

- a webhook never runs without a secret: with no ``TELEGRAM_WEBHOOK_SECRET`` a strong one
  is made for each start (``secrets.token_urlsafe(32)``) and given to Telegram;
- the header is compared in constant time (``hmac.compare_digest``; PTB's own tornado
  handler compares with ``!=``, which is why it is not used), and a request without the
  right one is answered 403 before its body is read;
- the body is bounded (``MAX_UPDATE_BYTES``, 413 past it) and must be a JSON update;
- accepted updates go to ``application.update_queue``, where PTB takes them as it takes
  polled ones.

Stopping stops the server; the webhook stays registered with Telegram (as with PTB's own
``Updater.stop``), so updates wait there until the next start sets it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from telegram import Bot, Update

from bots.asgi_server import serve_app
from bots.log_redaction import redact_also
from bots.settings import BotSettings
from tts_service.exposure import secret_value

log = logging.getLogger(__name__)

SECRET_HEADER = b"x-telegram-bot-api-secret-token"
# An update is a few kilobytes (a message with entities, a reply and its quote); this is
# ample for any, and small enough that nobody can make the process buffer much.
MAX_UPDATE_BYTES = 1_000_000

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def webhook_secret(settings: BotSettings) -> tuple[str, bool]:
    """``TELEGRAM_WEBHOOK_SECRET``, or a new strong one; and whether it was generated."""
    configured = secret_value(settings.telegram_webhook_secret)
    if configured is not None:
        return configured, False
    return secrets.token_urlsafe(32), True  # 43 characters of [A-Za-z0-9_-], as Telegram wants


class WebhookApp:
    """ASGI app: a POST on ``path`` carrying ``secret`` puts its update on ``queue``."""

    def __init__(
        self,
        path: str,
        secret: str,
        bot: Bot,
        queue: asyncio.Queue[object],
        max_bytes: int = MAX_UPDATE_BYTES,
    ) -> None:
        self.path = path
        self._secret = secret.encode()
        self.bot = bot
        self.queue = queue
        self.max_bytes = max_bytes
        self.accepted = 0
        self.refused = 0  # requests without the right secret

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets here: uvicorn refuses the handshake
        status = await self._answer(scope, receive)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def _answer(self, scope: Message, receive: Receive) -> int:
        if scope["path"] != self.path:
            return 404
        if scope["method"] != "POST":
            return 405
        if not self._authentic(scope["headers"]):
            self.refused += 1
            # Telegram never sends a wrong secret: these are forgeries, or a proxy that drops
            # the header. Said once at WARNING; a flood of forgeries must not flood the log.
            level = logging.WARNING if self.refused == 1 else logging.DEBUG
            log.log(level, "telegram webhook: refused a request without the secret (403)")
            return 403
        body = await _read_body(scope, receive, self.max_bytes)
        if body is None:
            return 413
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            update = Update.de_json(data, self.bot)
        except Exception as exc:  # not JSON, or not an update: Telegram never sends that
            log.warning("telegram webhook: not an update (%s); answered 400", type(exc).__name__)
            return 400
        await self.queue.put(update)
        self.accepted += 1
        return 200

    def _authentic(self, headers: list[tuple[bytes, bytes]]) -> bool:
        values = [value for name, value in headers if name.lower() == SECRET_HEADER]
        # Exactly one header; compare_digest takes as long whatever prefix matches.
        return len(values) == 1 and hmac.compare_digest(values[0], self._secret)


async def _read_body(scope: Message, receive: Receive, max_bytes: int) -> bytes | None:
    """The request body, or None once it is over ``max_bytes`` (declared or received)."""
    for name, value in scope["headers"]:
        if name.lower() == b"content-length" and (not value.isdigit() or int(value) > max_bytes):
            return None
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None  # the client went away
        body += message.get("body", b"")
        if len(body) > max_bytes:
            return None
        if not message.get("more_body", False):
            return bytes(body)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class TelegramWebhook:
    """The webhook server for one PTB application, from ``start`` to ``stop``."""

    def __init__(self, bot: Bot, queue: asyncio.Queue[object], settings: BotSettings) -> None:
        if not settings.telegram_webhook_url:
            raise ValueError("TELEGRAM_WEBHOOK_URL is not set")
        self.url = settings.telegram_webhook_url
        self.settings = settings
        secret, generated = webhook_secret(settings)
        if generated:
            redact_also(secret)  # PTB logs setWebhook's parameters at DEBUG
        self.secret_generated = generated
        path = urlsplit(self.url).path or "/"
        self.app = WebhookApp(path, secret, bot, queue)
        self._secret = secret
        self._bot = bot
        self._stack = contextlib.AsyncExitStack()
        self.running = False

    async def start(self) -> None:
        """Listen, then tell Telegram where (and with which secret) to send updates."""
        listen, port = self.settings.telegram_webhook_listen, self.settings.telegram_webhook_port
        try:
            await self._stack.enter_async_context(serve_app(self.app, listen, port))
            await self._bot.set_webhook(
                url=self.url, secret_token=self._secret, allowed_updates=Update.ALL_TYPES
            )
        except BaseException:
            await self._stack.aclose()
            raise
        self.running = True
        if self.secret_generated:
            log.info(
                "telegram: no TELEGRAM_WEBHOOK_SECRET; Telegram was given a new secret for "
                "this run (set one to keep it across restarts)"
            )
        log.info("telegram: receiving updates by webhook on %s:%d", listen, port)

    async def stop(self) -> None:
        """Stop listening (the webhook stays set with Telegram: updates wait there)."""
        self.running = False
        await self._stack.aclose()
