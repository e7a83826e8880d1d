"""A protocol-level stand-in for Discord's gateway, REST API and CDN, for tests only.

The real discord.py client talks to it over loopback HTTP and WebSocket; nothing in
discord.py is mocked. Two class attributes point the client here (see
:func:`discord_pointed_at`): ``discord.http.Route.BASE`` (REST and interaction
webhooks) and ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY``.

What it models, because a bot can get each of these wrong:

- Gateway: HELLO, IDENTIFY → READY (+ GUILD_CREATE with the GUILDS intent),
  heartbeat ACKs, sequence numbers, RECONNECT (op 7) and RESUME with replay,
  sharding (guilds are routed by ``(guild_id >> 22) % shard_count``).
- Interactions: the 3 s window for the first response (10062 Unknown interaction),
  one response only (40060), followups before any response (10015 Unknown Webhook),
  the first followup after a deferral *resolving the loading message* and
  inheriting its ephemeral flag, upload size (40005), empty/too-long content
  (50006/50035), voice-message rules (50159/50160/50161/50162).
- Message components: messages keep their ``components``; :meth:`DiscordStandin.press_component`
  sends a MESSAGE_COMPONENT interaction (type 3) for a button on a stored message (ephemeral
  ones too), which may be answered with a new message (4, 5) or by updating the pressed
  message (6 DEFERRED_UPDATE_MESSAGE, 7 UPDATE_MESSAGE); after 6/7 ``@original`` of its
  webhook is the pressed message. A press on a custom_id the message does not show (any
  more), or on a disabled button, is refused unless ``check=False``.
- Commands: bulk overwrite per scope with stable ids and basic validation (50035).
- CDN: registered attachments are served and every request to one is counted,
  so a test can prove that a bot never fetched an oversized or non-audio clip.
- Voice (``tests.standins.discord_voice``): a voice channel in the guild, VOICE_STATE (op 4)
  answered with VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE, members joining and leaving voice,
  a voice server (TLS WebSocket v8, UDP with IP discovery and encrypted RTP), and members'
  messages (MESSAGE_CREATE, gated by the session's GUILD_MESSAGES and MESSAGE_CONTENT intents).

Every HTTP request is recorded as a :class:`Call`; :meth:`DiscordStandin.fail_next`
injects faults (429 replies carry ``Via`` so discord.py treats them as Discord's).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import datetime
import itertools
import json
import logging
import mimetypes
import re
import secrets
import socket
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import pytest
import yarl
from aiohttp import web

with warnings.catch_warnings():
    # discord.py imports audioop, deprecated since Python 3.11 (PEP 594): a library
    # import-time warning that filterwarnings=error would turn into a collection error
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    import discord.gateway
    import discord.http

from tests.standins.discord_voice import VoiceGateway, VoiceServer

_log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v10"
GATEWAY_PATH: Final = "/gateway"
RESUME_GATEWAY_PATH: Final = "/gateway/resume"
DISCORD_EPOCH_MS: Final = 1_420_070_400_000
DEFAULT_ATTACHMENT_SIZE_LIMIT: Final = 10 * 1024 * 1024  # what Discord gives unboosted guilds
INTERACTION_RESPONSE_WINDOW_S: Final = 3.0  # Discord drops the interaction after this

# Message flags
FLAG_SUPPRESS_EMBEDS: Final = 1 << 2
FLAG_EPHEMERAL: Final = 1 << 6
FLAG_LOADING: Final = 1 << 7
FLAG_IS_VOICE_MESSAGE: Final = 1 << 13

# Gateway intents and opcodes
INTENT_GUILDS: Final = 1 << 0
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME, OP_RECONNECT = 0, 1, 2, 6, 7
OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 9, 10, 11
OP_VOICE_STATE: Final = 4

# Interaction callback types
CALLBACK_PONG, CALLBACK_MESSAGE, CALLBACK_DEFERRED_MESSAGE = 1, 4, 5
CALLBACK_DEFERRED_UPDATE, CALLBACK_UPDATE_MESSAGE = 6, 7

# Application command option types
OPTION_SUB_COMMAND, OPTION_STRING, OPTION_INTEGER, OPTION_BOOLEAN = 1, 3, 4, 5
OPTION_NUMBER, OPTION_ATTACHMENT = 10, 11

_PERMISSIONS_MEMBER: Final = str(
    (1 << 6)  # ADD_REACTIONS
    | (1 << 10)  # VIEW_CHANNEL
    | (1 << 11)  # SEND_MESSAGES
    | (1 << 14)  # EMBED_LINKS
    | (1 << 15)  # ATTACH_FILES
    | (1 << 16)  # READ_MESSAGE_HISTORY
    | (1 << 18)  # USE_EXTERNAL_EMOJIS
    | (1 << 20)  # CONNECT
    | (1 << 21)  # SPEAK
    | (1 << 31)  # USE_APPLICATION_COMMANDS
    | (1 << 46)  # SEND_VOICE_MESSAGES
)
_COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")
_NO_DEFAULT: Any = object()


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def _error(code: int, message: str) -> dict[str, Any]:
    return {"message": message, "code": code}


def _form_error(path: list[str | int], code: str, message: str) -> dict[str, Any]:
    """Discord's nested ``Invalid Form Body`` shape (code 50035)."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        errors = {str(key): errors}
    return {"message": "Invalid Form Body", "code": 50035, "errors": errors}


@dataclass(frozen=True)
class AttachmentSpec:
    """A file a user attaches to a slash command option.

    ``size`` overrides the size Discord reports (to claim 30 MB without sending it).
    """

    filename: str
    content_type: str | None
    data: bytes
    size: int | None = None


@dataclass(frozen=True)
class UploadedFile:
    """One ``files[n]`` part of a multipart request."""

    name: str
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Call:
    """One HTTP request the stand-in received (REST under ``/api/v10`` or CDN).

    ``path`` is relative to ``/api/v10`` for REST calls (``/webhooks/…``) and the
    server path for CDN calls (``/attachments/…``). ``json`` is the JSON body, or
    the parsed ``payload_json`` part of a multipart body. ``seq`` orders arrivals.
    """

    method: str
    path: str
    json: Any
    files: list[UploadedFile]
    at: float
    seq: int
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0
    response: Any = None


@dataclass
class _Fault:
    path_contains: str
    status: int
    body: Any
    times: int
    method: str | None
    headers: dict[str, str]


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    files: list[UploadedFile]


@dataclass
class _StoredAttachment:
    id: int
    filename: str
    content_type: str
    data: bytes
    json: dict[str, Any]


@dataclass
class _Interaction:
    payload: dict[str, Any]
    dispatched_at: float
    acknowledged: bool = False
    response_type: int | None = None
    original_id: int | None = None
    loading: bool = False
    ephemeral: bool = False
    message_ids: list[int] = field(default_factory=list)

    @property
    def id(self) -> int:
        return int(self.payload["id"])

    @property
    def token(self) -> str:
        return str(self.payload["token"])


@dataclass
class _GatewaySession:
    session_id: str
    shard: tuple[int, int]
    identify: dict[str, Any]
    ws: web.WebSocketResponse | None
    seq: int = 0
    frames: list[dict[str, Any]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _Snowflakes:
    """Realistic, strictly increasing snowflakes (timestamp << 22 | worker | increment)."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        value = max((ms << 22) | (1 << 17), self._last + 1)
        self._last = value
        return value


_Handler = Callable[[_Request, "re.Match[str]"], Awaitable[_Reply]]


class DiscordStandin:
    """Discord's gateway, REST API and CDN on ``127.0.0.1``, in the caller's event loop.

    Use as ``async with DiscordStandin() as standin, discord_pointed_at(standin): ...``.
    """

    def __init__(
        self,
        *,
        token: str = "standin.bot.token",
        bot_name: str = "saybot",
        shards: int = 1,
        heartbeat_interval_ms: int = 41_250,
        attachment_size_limit: int = DEFAULT_ATTACHMENT_SIZE_LIMIT,
        interaction_response_window_s: float | None = INTERACTION_RESPONSE_WINDOW_S,
        application_flags: int = 1 << 23,  # APPLICATION_COMMAND_BADGE
        max_concurrency: int = 1,
        session_starts_remaining: int = 999,
    ) -> None:
        self._ids = _Snowflakes()
        self.token = token
        self.shards = shards
        # /gateway/bot's session_start_limit; each IDENTIFY uses one start.
        self.max_concurrency = max_concurrency
        self.session_starts_remaining = session_starts_remaining
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.attachment_size_limit = attachment_size_limit
        self.interaction_response_window_s = interaction_response_window_s
        self.application_flags = application_flags
        self.application_id = self._ids.next()
        self.guild_id = self._ids.next()
        self.channel_id = self._ids.next()
        self.owner_id = self._ids.next()
        self.bot_user: dict[str, Any] = {
            "id": str(self.application_id),
            "username": bot_name,
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "verified": True,
            "mfa_enabled": False,
            "email": None,
            "flags": 0,
            "public_flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "primary_guild": None,
        }
        self.url = ""
        # What tests look at
        self.identifies: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []
        self.gateway_connections: list[dict[str, str]] = []
        self.heartbeats = 0
        self.synced_commands: dict[int | None, list[dict[str, Any]]] = {}
        self.cdn_downloads: collections.Counter[int] = collections.Counter()
        self.cdn_held = 0  # CDN requests that arrived while ``hold_cdn`` held them
        self.messages: dict[int, dict[str, Any]] = {}
        self.posted_messages: list[str] = []  # what members posted (discord_voice.post_message)
        # Internals
        self._calls: list[Call] = []
        self._calls_changed = asyncio.Condition()
        self._seq = itertools.count(1)
        self._faults: list[_Fault] = []
        self._cdn_gate: asyncio.Event | None = None
        self._registered: dict[int | None, list[dict[str, Any]]] = {}
        self._attachments: dict[int, _StoredAttachment] = {}
        self._interactions: dict[int, _Interaction] = {}
        self._interactions_by_token: dict[str, _Interaction] = {}
        self._sessions: dict[str, _GatewaySession] = {}
        self._sessions_changed = asyncio.Condition()
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self._routes: list[tuple[str, re.Pattern[str], _Handler]] = self._route_table()
        # Voice: the gateway's voice states and a voice server (tests.standins.discord_voice)
        self.voice_server = VoiceServer()
        self.voice = VoiceGateway(self, self.voice_server)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> DiscordStandin:
        app = web.Application(client_max_size=256 * 1024 * 1024)  # Discord's limit is ours
        app.router.add_get(GATEWAY_PATH, self._gateway)
        app.router.add_get(RESUME_GATEWAY_PATH, self._gateway)
        app.router.add_route("*", "/{tail:.*}", self._http)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._runner = web.AppRunner(app, shutdown_timeout=2.0, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        await self.voice_server.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.voice_server.__aexit__()
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"stand-in shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be."""
        return self.url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` must be (``ws://…/gateway``)."""
        return self.url.replace("http://", "ws://", 1) + GATEWAY_PATH

    # ------------------------------------------------------------------ test-facing API

    def calls(self, path_contains: str | None = None, method: str | None = None) -> list[Call]:
        """Recorded HTTP calls in arrival order, optionally filtered."""
        return [
            c
            for c in sorted(self._calls, key=lambda c: c.seq)
            if (path_contains is None or path_contains in c.path)
            and (method is None or c.method == method.upper())
        ]

    async def wait_for(
        self,
        match: str | Callable[[Call], bool],
        *,
        method: str | None = None,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109 - named like asyncio.wait_for's
    ) -> Call:
        """Wait until ``count`` calls match (a regex searched in ``path``, or a predicate).

        Returns the ``count``-th matching call; already-recorded calls count.
        """

        def matches(c: Call) -> bool:
            if method is not None and c.method != method.upper():
                return False
            return re.search(match, c.path) is not None if isinstance(match, str) else match(c)

        def found() -> list[Call]:
            return [c for c in self.calls() if matches(c)]

        try:
            async with asyncio.timeout(timeout), self._calls_changed:
                await self._calls_changed.wait_for(lambda: len(found()) >= count)
        except TimeoutError:
            seen = "\n  ".join(f"{c.method} {c.path} -> {c.status}" for c in self.calls())
            raise TimeoutError(
                f"no {count} call(s) matching {match!r} within {timeout} s; saw:\n  {seen}"
            ) from None
        return found()[count - 1]

    def fail_next(
        self,
        path_contains: str,
        status: int,
        json_body: Any = _NO_DEFAULT,
        *,
        times: int = 1,
        method: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` instead of handling them.

        A 429 gets ``retry_after`` 0.05 s and the ``Via`` header unless given; note that
        discord.py retries 5xx itself, sleeping 1 s, 3 s, … between attempts.
        """
        extra = dict(headers or {})
        if json_body is _NO_DEFAULT:
            if status == 429:
                json_body = {"message": "You are being rate limited.", "retry_after": 0.05}
                json_body |= {"global": False, "code": 0}
            else:
                json_body = _error(0, f"{status}: injected by the stand-in")
        if status == 429:
            retry_after = json_body.get("retry_after", 0.05) if isinstance(json_body, dict) else 1
            extra.setdefault("Via", "1.1 google")  # without it discord.py suspects Cloudflare
            extra.setdefault("Retry-After", str(max(1, round(retry_after))))
            extra.setdefault("X-RateLimit-Scope", "user")
        fault = _Fault(path_contains, status, json_body, times, method and method.upper(), extra)
        self._faults.append(fault)

    def register_attachment(
        self, spec: AttachmentSpec, *, ephemeral: bool = True, channel_id: int | None = None
    ) -> dict[str, Any]:
        """Put ``spec`` on the CDN; returns Discord's attachment object for it."""
        att_id = self._ids.next()
        content_type = spec.content_type or "application/octet-stream"
        att = self._attachment_json(
            att_id,
            spec.filename,
            size=len(spec.data) if spec.size is None else spec.size,
            content_type=spec.content_type,
            ephemeral=ephemeral,
            channel_id=channel_id or self.channel_id,
        )
        self._attachments[att_id] = _StoredAttachment(
            att_id, spec.filename, content_type, spec.data, att
        )
        return att

    def hold_cdn(self) -> asyncio.Event:
        """Hold every CDN download from now on (a file host that hangs) until the returned
        event is set; set it before the stand-in closes."""
        self._cdn_gate = asyncio.Event()
        return self._cdn_gate

    def cdn_download_count(self, attachment: int | str | dict[str, Any]) -> int:
        """How many requests reached one attachment's CDN URL."""
        att_id = attachment["id"] if isinstance(attachment, dict) else attachment
        return self.cdn_downloads[int(att_id)]

    def command_id(self, name: str, guild_id: int | None = None) -> int | None:
        """The id Discord gave a synced command in that scope (None: global)."""
        for cmd in self._registered.get(guild_id, []):
            if cmd["name"] == name:
                return int(cmd["id"])
        return None

    def slash_command(
        self,
        name: str,
        options: list[dict[str, Any]] | None = None,
        *,
        user_id: int,
        username: str | None = None,
        guild_id: int | None = _NO_DEFAULT,
        channel_id: int | None = None,
        attachments: dict[str, AttachmentSpec] | None = None,
        subcommand: str | None = None,
        locale: str = "en-US",
        member_permissions: str = _PERMISSIONS_MEMBER,
        app_permissions: str = _PERMISSIONS_MEMBER,
    ) -> dict[str, Any]:
        """Build an INTERACTION_CREATE payload for ``/name``, as Discord would send it.

        ``options`` are Discord option objects; ``type`` may be left out for str, int,
        float and bool values. Each of ``attachments`` becomes an attachment option
        resolved in ``data.resolved.attachments`` and served by the CDN. ``guild_id``
        defaults to :attr:`guild_id`; pass ``None`` for the bot's DMs. The command id
        (and ``data.guild_id`` for guild commands) come from the last sync.
        """
        guild = self.guild_id if guild_id is _NO_DEFAULT else guild_id
        channel = channel_id or self.channel_id
        opts = [self._typed_option(o) for o in options or []]
        resolved: dict[str, Any] = {}
        for opt_name, spec in (attachments or {}).items():
            att = self.register_attachment(spec, ephemeral=True, channel_id=channel)
            resolved.setdefault("attachments", {})[att["id"]] = att
            opts.append({"name": opt_name, "type": OPTION_ATTACHMENT, "value": att["id"]})
        if subcommand is not None:
            opts = [{"name": subcommand, "type": OPTION_SUB_COMMAND, "options": opts}]
        data: dict[str, Any] = {"id": None, "name": name, "type": 1, "options": opts}
        if resolved:
            data["resolved"] = resolved
        if guild is not None and (cmd_id := self.command_id(name, guild)) is not None:
            data["id"], data["guild_id"] = str(cmd_id), str(guild)
        else:
            data["id"] = str(self.command_id(name) or self._ids.next())
        return self._interaction_payload(
            2,  # APPLICATION_COMMAND
            data,
            user_id=user_id,
            username=username,
            guild=guild,
            channel=channel,
            locale=locale,
            member_permissions=member_permissions,
            app_permissions=app_permissions,
        )

    def component_interaction(
        self,
        message: dict[str, Any] | int | str,
        custom_id: str,
        *,
        user_id: int,
        username: str | None = None,
        guild_id: int | None = _NO_DEFAULT,
        channel_id: int | None = None,
        locale: str = "en-US",
        member_permissions: str = _PERMISSIONS_MEMBER,
        app_permissions: str = _PERMISSIONS_MEMBER,
        check: bool = True,
    ) -> dict[str, Any]:
        """Build the INTERACTION_CREATE payload of a button press (MESSAGE_COMPONENT, type 3).

        ``message`` is a stored message (a dict as :meth:`interaction_messages` returns, or
        its id); the payload carries it as stored now (after any edits), flags included.
        ``guild_id`` defaults to where the message was sent (``None``: the bot's DMs) and
        ``channel_id`` to its channel. With ``check`` the button must be on the message and
        enabled, as only such buttons can be clicked (``ValueError`` otherwise).
        """
        msg_id = int(message["id"] if isinstance(message, dict) else message)
        stored = self.messages.get(msg_id)
        if stored is None:
            raise ValueError(f"no message {msg_id} (never sent, or deleted)")
        if check:
            button = _find_component(stored.get("components") or [], custom_id)
            if button is None:
                raise ValueError(f"message {msg_id} has no component {custom_id!r}")
            if button.get("disabled"):
                raise ValueError(f"component {custom_id!r} of message {msg_id} is disabled")
        if guild_id is _NO_DEFAULT:
            guild_id = self._message_guild(msg_id)
        data = {"custom_id": custom_id, "component_type": 2}  # BUTTON
        payload = self._interaction_payload(
            3,  # MESSAGE_COMPONENT
            data,
            user_id=user_id,
            username=username,
            guild=guild_id,
            channel=channel_id or int(stored["channel_id"]),
            locale=locale,
            member_permissions=member_permissions,
            app_permissions=app_permissions,
        )
        payload["message"] = copy.deepcopy(stored)
        return payload

    async def press_component(
        self,
        message: dict[str, Any] | int | str,
        custom_id: str,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """:meth:`component_interaction` then :meth:`dispatch_interaction`; returns the payload
        (pass it to :meth:`interaction_calls` / :meth:`interaction_messages`)."""
        return await self.dispatch_interaction(
            self.component_interaction(message, custom_id, **kwargs)
        )

    def _message_guild(self, msg_id: int) -> int | None:
        """The guild a stored message was sent in (``None``: a DM)."""
        for state in self._interactions.values():
            if msg_id in state.message_ids:
                guild = state.payload.get("guild_id")
                return int(guild) if guild else None
        return self.guild_id

    def _interaction_payload(
        self,
        kind: int,
        data: dict[str, Any],
        *,
        user_id: int,
        username: str | None,
        guild: int | None,
        channel: int,
        locale: str,
        member_permissions: str,
        app_permissions: str,
    ) -> dict[str, Any]:
        user = self._user_json(user_id, username)
        payload: dict[str, Any] = {
            "id": str(self._ids.next()),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "channel_id": str(channel),
            "token": "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96),
            "version": 1,
            "locale": locale,
            "app_permissions": app_permissions,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": self.attachment_size_limit,
        }
        if guild is not None:
            payload |= {
                "guild_id": str(guild),
                "guild": {"id": str(guild), "locale": "en-US", "features": []},
                "guild_locale": "en-US",
                "channel": self._channel_json(guild, channel) | {"permissions": member_permissions},
                "member": self._member_json(user, permissions=member_permissions),
                "authorizing_integration_owners": {"0": str(guild)},
                "context": 0,  # GUILD
            }
        else:
            payload |= {
                "user": user,
                "channel": {
                    "id": str(channel),
                    "type": 1,  # DM
                    "last_message_id": None,
                    "flags": 0,
                    "recipients": [user],
                },
                "authorizing_integration_owners": {"0": "0"},
                "context": 1,  # BOT_DM
            }
        return payload

    async def dispatch_interaction(
        self,
        interaction: dict[str, Any],
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - bounds the wait for a connected shard
    ) -> dict[str, Any]:
        """Send an INTERACTION_CREATE on the right shard; the response window starts now."""
        state = _Interaction(interaction, dispatched_at=asyncio.get_running_loop().time())
        self._interactions[state.id] = state
        self._interactions_by_token[state.token] = state
        guild_id = interaction.get("guild_id")
        await self.dispatch("INTERACTION_CREATE", interaction, guild_id=guild_id, timeout=timeout)
        return interaction

    async def send_slash_command(
        self, name: str, options: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """:meth:`slash_command` then :meth:`dispatch_interaction`."""
        return await self.dispatch_interaction(self.slash_command(name, options, **kwargs))

    def guild_on_shard(self, shard_id: int) -> int:
        """A guild id that Discord routes to ``shard_id`` (``(id >> 22) % shards``)."""
        stamp = self._ids.next() >> 22
        stamp += (shard_id - stamp) % self.shards  # a few ms ahead at most
        return stamp << 22 | 1 << 17

    async def dispatch(
        self,
        event: str,
        data: dict[str, Any],
        *,
        guild_id: int | str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - bounds the wait for a connected shard
    ) -> None:
        """Send any dispatch event (op 0) to the shard that owns ``guild_id``."""
        shard_id = (int(guild_id) >> 22) % self.shards if guild_id else 0
        session = await self.wait_until_connected(shard_id=shard_id, timeout=timeout)
        await self._send_dispatch(session, event, data)

    async def wait_until_connected(
        self,
        *,
        shard_id: int = 0,
        timeout: float = 10.0,  # noqa: ASYNC109 - named like asyncio.wait_for's
    ) -> _GatewaySession:
        """Wait until the shard has identified (or resumed) on an open socket."""

        def live() -> _GatewaySession | None:
            for s in self._sessions.values():
                if s.shard[0] == shard_id and s.ws is not None and not s.ws.closed:
                    return s
            return None

        try:
            async with asyncio.timeout(timeout), self._sessions_changed:
                await self._sessions_changed.wait_for(lambda: live() is not None)
        except TimeoutError:
            raise TimeoutError(f"shard {shard_id} did not connect within {timeout} s") from None
        session = live()
        assert session is not None
        return session

    async def reconnect_gateway(
        self,
        *,
        shard_id: int = 0,
        timeout: float = 10.0,  # noqa: ASYNC109 - named like asyncio.wait_for's
    ) -> None:
        """Send RECONNECT (op 7) and wait until the client has RESUMEd."""
        session = await self.wait_until_connected(shard_id=shard_id, timeout=timeout)
        resumed = len(self.resumes)
        assert session.ws is not None
        await session.ws.send_str(json.dumps({"op": OP_RECONNECT, "d": None, "s": None, "t": None}))
        try:
            async with asyncio.timeout(timeout), self._sessions_changed:
                await self._sessions_changed.wait_for(
                    lambda: len(self.resumes) > resumed and session.ws is not None
                )
        except TimeoutError:
            raise TimeoutError(f"shard {shard_id} did not resume within {timeout} s") from None

    def dispatched_events(
        self, event: str | None = None, *, shard_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Gateway dispatch frames sent so far (``{"op": 0, "t", "s", "d"}``), in order."""
        return [
            frame
            for session in self._sessions.values()
            if shard_id is None or session.shard[0] == shard_id
            for frame in session.frames
            if event is None or frame["t"] == event
        ]

    def interaction_messages(self, interaction: dict[str, Any]) -> list[dict[str, Any]]:
        """The messages an interaction produced (original first), as Discord stores them.

        For a component interaction answered with 6 or 7 the original is the pressed message.
        """
        state = self._interactions[int(interaction["id"])]
        return [self.messages[i] for i in state.message_ids if i in self.messages]

    def interaction_calls(self, interaction: dict[str, Any]) -> list[Call]:
        """The REST calls made for one interaction, in order: its callback and every
        request to its webhook (followups, edits, fetches, deletes)."""
        return [c for c in self.calls() if self._for_interaction(c, interaction)]

    def interaction_response_type(self, interaction: dict[str, Any]) -> int | None:
        """The callback type that acknowledged the interaction (``None``: not yet)."""
        state = self._interactions[int(interaction["id"])]
        return state.response_type if state.acknowledged else None

    async def wait_for_interaction_call(
        self,
        interaction: dict[str, Any],
        path_contains: str = "",
        *,
        method: str | None = None,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109 - named like asyncio.wait_for's
    ) -> Call:
        """:meth:`wait_for` restricted to :meth:`interaction_calls` (``path_contains``:
        ``"/callback"``, ``"/messages/@original"``...; ``""`` for any)."""
        return await self.wait_for(
            lambda c: self._for_interaction(c, interaction) and path_contains in c.path,
            method=method,
            count=count,
            timeout=timeout,
        )

    def _for_interaction(self, call: Call, interaction: dict[str, Any]) -> bool:
        token = interaction["token"]
        return call.path == f"/interactions/{interaction['id']}/{token}/callback" or (
            call.path + "/"
        ).startswith(f"/webhooks/{self.application_id}/{token}/")

    # ------------------------------------------------------------------ gateway

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        self.gateway_connections.append({"path": request.path, **request.query})
        session: _GatewaySession | None = None
        try:
            await self._send_op(ws, OP_HELLO, {"heartbeat_interval": self.heartbeat_interval_ms})
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                frame = json.loads(msg.data)
                op, d = frame.get("op"), frame.get("d")
                if op == OP_HEARTBEAT:
                    self.heartbeats += 1
                    await self._send_op(ws, OP_HEARTBEAT_ACK, None)
                elif op == OP_IDENTIFY:
                    session = await self._identify(ws, d)
                elif op == OP_RESUME:
                    session = await self._resume(ws, d)
                elif op == OP_VOICE_STATE:
                    await self.voice.voice_state_op(d)
                elif op in (3, 8):  # presence, request members: accepted
                    continue
                else:
                    await ws.close(code=4001, message=b"Unknown opcode.")
                    break
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
            async with self._sessions_changed:
                self._sessions_changed.notify_all()
        return ws

    async def _send_op(self, ws: web.WebSocketResponse, op: int, d: Any) -> None:
        await ws.send_str(json.dumps({"op": op, "d": d, "s": None, "t": None}))

    async def _send_dispatch(self, session: _GatewaySession, event: str, data: Any) -> None:
        async with session.lock:
            session.seq += 1
            frame = {"op": OP_DISPATCH, "t": event, "s": session.seq, "d": data}
            session.frames.append(frame)
            if session.ws is None or session.ws.closed:
                raise ConnectionError(f"shard {session.shard[0]} has no open gateway socket")
            await session.ws.send_str(json.dumps(frame))

    async def _identify(
        self, ws: web.WebSocketResponse, d: dict[str, Any]
    ) -> _GatewaySession | None:
        self.identifies.append(d)
        self.session_starts_remaining = max(0, self.session_starts_remaining - 1)
        if d.get("token") != self.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        if "intents" not in d:
            await ws.close(code=4013, message=b"Invalid intent(s).")
            return None
        shard_id, shard_count = d.get("shard", [0, 1])
        if shard_count != self.shards or not 0 <= shard_id < shard_count:
            await ws.close(code=4010, message=b"Invalid shard.")
            return None
        session = _GatewaySession(secrets.token_hex(16), (shard_id, shard_count), d, ws)
        self._sessions[session.session_id] = session
        guilds = [g for g in (self.guild_id,) if (g >> 22) % shard_count == shard_id]
        ready: dict[str, Any] = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(g), "unavailable": True} for g in guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.url.replace("http://", "ws://", 1) + RESUME_GATEWAY_PATH,
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["standin"],
            "user_settings": {},
            "auth": {},
            "application": {"id": str(self.application_id), "flags": self.application_flags},
            "_trace": ['["standin-gateway",{"micros":0}]'],
        }
        if "shard" in d:
            ready["shard"] = [shard_id, shard_count]
        await self._send_dispatch(session, "READY", ready)
        if int(d["intents"]) & INTENT_GUILDS:
            for g in guilds:
                await self._send_dispatch(session, "GUILD_CREATE", self._guild_json(g))
        async with self._sessions_changed:
            self._sessions_changed.notify_all()
        return session

    async def _resume(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> _GatewaySession | None:
        self.resumes.append(d)
        session = self._sessions.get(d.get("session_id", ""))
        if session is None or d.get("token") != self.token:
            await self._send_op(ws, OP_INVALID_SESSION, False)
            return None
        async with session.lock:
            session.ws = ws
            for frame in session.frames:
                if frame["s"] > (d.get("seq") or 0):
                    await ws.send_str(json.dumps(frame))
        await self._send_dispatch(session, "RESUMED", {"_trace": ['["standin-gateway"]']})
        async with self._sessions_changed:
            self._sessions_changed.notify_all()
        return session

    # ------------------------------------------------------------------ HTTP plumbing

    async def _http(self, request: web.Request) -> web.StreamResponse:
        seq = next(self._seq)
        at = time.monotonic()
        path = request.path
        if path.startswith(API_PREFIX):
            path = path[len(API_PREFIX) :]
        req = _Request(
            request.method,
            path,
            dict(request.query),
            {k.lower(): v for k, v in request.headers.items()},
            *await self._read_body(request),
        )
        reply = self._injected_fault(req)
        if reply is None:
            try:
                reply = await self._route(req, api=request.path.startswith(API_PREFIX))
            except Exception as exc:  # a stand-in bug must not look like a Discord reply
                _log.exception("stand-in failed on %s %s", req.method, req.path)
                reply = _Reply(500, _error(0, f"stand-in error: {exc!r}"))
        call = Call(
            req.method,
            req.path,
            req.json,
            req.files,
            at,
            seq,
            req.query,
            req.headers,
            reply.status,
            reply.body,
        )
        async with self._calls_changed:
            self._calls.append(call)
            self._calls_changed.notify_all()
        return self._to_response(reply)

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, list[UploadedFile]]:
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            payload: Any = None
            files: list[UploadedFile] = []
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader):
                    continue
                if part.name == "payload_json":
                    payload = json.loads(await part.text())
                else:
                    files.append(
                        UploadedFile(
                            part.name or "",
                            part.filename or "",
                            part.headers.get("Content-Type", "application/octet-stream"),
                            bytes(await part.read()),
                        )
                    )
            return payload, files
        body = await request.read()
        if body and content_type.startswith("application/json"):
            return json.loads(body), []
        return None, []

    def _injected_fault(self, req: _Request) -> _Reply | None:
        for fault in self._faults:
            if fault.path_contains in req.path and fault.method in (None, req.method):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return _Reply(fault.status, fault.body, dict(fault.headers))
        return None

    @staticmethod
    def _to_response(reply: _Reply) -> web.Response:
        if reply.raw is not None:
            return web.Response(
                status=reply.status,
                body=reply.raw,
                headers={"Content-Type": reply.content_type, **reply.headers},
            )
        if reply.body is None:
            return web.Response(status=reply.status, headers=reply.headers)
        # Exactly "application/json": with "; charset=utf-8" discord.py keeps the body a str
        return web.Response(
            status=reply.status,
            body=json.dumps(reply.body).encode(),
            headers={"Content-Type": "application/json", **reply.headers},
        )

    async def _route(self, req: _Request, *, api: bool) -> _Reply:
        if not api:
            if self._cdn_gate is not None and not self._cdn_gate.is_set():
                self.cdn_held += 1
                await self._cdn_gate.wait()
            return self._cdn(req)
        known_path = False
        for method, pattern, handler in self._routes:
            m = pattern.fullmatch(req.path)
            if m is None:
                continue
            known_path = True
            if method == req.method:
                if not self._authorized(req):
                    return _Reply(401, _error(0, "401: Unauthorized"))
                return await handler(req, m)
        if known_path:
            return _Reply(405, _error(0, "405: Method Not Allowed"))
        return _Reply(404, _error(0, "404: Not Found"))

    def _authorized(self, req: _Request) -> bool:
        # Interaction callbacks and webhooks carry their token in the URL instead
        if req.path.startswith(("/interactions/", "/webhooks/")):
            return True
        return req.headers.get("authorization") == f"Bot {self.token}"

    def _route_table(self) -> list[tuple[str, re.Pattern[str], _Handler]]:
        app = r"(?P<app>\d+)"
        tok = r"(?P<token>[^/]+)"
        msg = r"(?P<message>@original|\d+)"
        table: list[tuple[str, str, _Handler]] = [
            ("GET", r"/gateway", self._get_gateway),
            ("GET", r"/gateway/bot", self._get_gateway_bot),
            ("GET", r"/users/@me", self._get_me),
            ("GET", r"/oauth2/applications/@me", self._get_application),
            ("GET", rf"/applications/{app}/commands", self._get_commands),
            ("PUT", rf"/applications/{app}/commands", self._put_commands),
            ("GET", rf"/applications/{app}/guilds/(?P<guild>\d+)/commands", self._get_commands),
            ("PUT", rf"/applications/{app}/guilds/(?P<guild>\d+)/commands", self._put_commands),
            ("POST", rf"/interactions/(?P<interaction>\d+)/{tok}/callback", self._callback),
            ("POST", rf"/webhooks/{app}/{tok}", self._followup),
            ("GET", rf"/webhooks/{app}/{tok}/messages/{msg}", self._get_message),
            ("PATCH", rf"/webhooks/{app}/{tok}/messages/{msg}", self._edit_message),
            ("DELETE", rf"/webhooks/{app}/{tok}/messages/{msg}", self._delete_message),
            ("POST", r"/channels/(?P<channel>\d+)/messages", self._channel_message),
        ]
        return [(method, re.compile(p), h) for method, p, h in table]

    # ------------------------------------------------------------------ REST: bot and app

    async def _get_gateway(self, req: _Request, m: re.Match[str]) -> _Reply:
        return _Reply(200, {"url": self.gateway_url})

    async def _get_gateway_bot(self, req: _Request, m: re.Match[str]) -> _Reply:
        limit = {
            "total": 1000,
            "remaining": self.session_starts_remaining,
            "reset_after": 14_400_000,
            "max_concurrency": self.max_concurrency,
        }
        return _Reply(
            200, {"url": self.gateway_url, "shards": self.shards, "session_start_limit": limit}
        )

    async def _get_me(self, req: _Request, m: re.Match[str]) -> _Reply:
        return _Reply(200, self.bot_user)

    async def _get_application(self, req: _Request, m: re.Match[str]) -> _Reply:
        owner = self._user_json(self.owner_id, "owner")
        return _Reply(
            200,
            {
                "id": str(self.application_id),
                "name": self.bot_user["username"],
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "hook": True,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": secrets.token_hex(32),
                "owner": owner,
                "team": None,
                "flags": self.application_flags,
                "bot": self.bot_user,
                "redirect_uris": [],
                "interactions_endpoint_url": None,  # set, discord.py warns it gets no events
                "role_connections_verification_url": None,
                "tags": [],
                "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "0"},
                "integration_types_config": {"0": {}},
                "approximate_guild_count": 1,
            },
        )

    def _scope(self, m: re.Match[str]) -> int | None:
        guild = m.groupdict().get("guild")
        return int(guild) if guild else None

    async def _get_commands(self, req: _Request, m: re.Match[str]) -> _Reply:
        if int(m["app"]) != self.application_id:
            return _Reply(403, _error(50001, "Missing Access"))
        return _Reply(200, self._registered.get(self._scope(m), []))

    async def _put_commands(self, req: _Request, m: re.Match[str]) -> _Reply:
        if int(m["app"]) != self.application_id:
            return _Reply(403, _error(50001, "Missing Access"))
        body = req.json
        if not isinstance(body, list):
            return _Reply(400, _form_error([], "BASE_TYPE_LIST", "Must be a list."))
        if (problem := _validate_commands(body)) is not None:
            return _Reply(400, problem)
        scope = self._scope(m)
        self.synced_commands[scope] = body
        previous = {(c["name"], c["type"]): c["id"] for c in self._registered.get(scope, [])}
        registered = []
        for cmd in body:
            kind = cmd.get("type", 1)
            out = {
                "id": previous.get((cmd["name"], kind)) or str(self._ids.next()),
                "application_id": str(self.application_id),
                "version": str(self._ids.next()),
                "type": kind,
                "name": cmd["name"],
                "description": cmd.get("description", ""),
                "options": cmd.get("options", []),
                "default_member_permissions": cmd.get("default_member_permissions"),
                "nsfw": cmd.get("nsfw", False),
                "integration_types": cmd.get("integration_types") or [0],
                "contexts": cmd.get("contexts"),
                "name_localizations": cmd.get("name_localizations"),
                "description_localizations": cmd.get("description_localizations"),
            }
            if scope is not None:
                out["guild_id"] = str(scope)
            else:
                out["dm_permission"] = cmd.get("dm_permission", True)
            registered.append(out)
        self._registered[scope] = registered
        return _Reply(200, registered)

    # ------------------------------------------------------------------ REST: interactions

    def _interaction_for(self, token: str) -> _Interaction | None:
        return self._interactions_by_token.get(token)

    async def _callback(self, req: _Request, m: re.Match[str]) -> _Reply:
        state = self._interactions.get(int(m["interaction"]))
        loop_now = asyncio.get_running_loop().time()
        window = self.interaction_response_window_s
        if state is None or state.token != m["token"]:
            return _Reply(404, _error(10062, "Unknown interaction"))
        if state.acknowledged:
            return _Reply(400, _error(40060, "Interaction has already been acknowledged."))
        if window is not None and loop_now - state.dispatched_at > window:
            return _Reply(404, _error(10062, "Unknown interaction"))
        body = req.json or {}
        kind = body.get("type")
        data = body.get("data") or {}
        if kind not in (CALLBACK_MESSAGE, CALLBACK_DEFERRED_MESSAGE, 8, 9, 10, 12) and not (
            kind in (CALLBACK_DEFERRED_UPDATE, CALLBACK_UPDATE_MESSAGE)
            and "message" in state.payload  # a component's (or a modal's from one)
        ):
            return _Reply(400, _form_error(["type"], "BASE_TYPE_CHOICES", "Invalid type."))
        message: dict[str, Any] | None = None
        if kind in (CALLBACK_DEFERRED_UPDATE, CALLBACK_UPDATE_MESSAGE):
            target = self.messages.get(int(state.payload["message"]["id"]))
            if target is None:
                return _Reply(404, _error(10008, "Unknown Message"))
            if kind == CALLBACK_UPDATE_MESSAGE:
                message, problem = self._apply_edit(state, target, data, req.files)
                if problem is not None:
                    return problem
            elif int(target["id"]) not in state.message_ids:
                state.message_ids.append(int(target["id"]))
            # From now on @original of this interaction's webhook is the pressed message
            state.original_id = int(target["id"])
            state.ephemeral = bool(target["flags"] & FLAG_EPHEMERAL)
        elif kind == CALLBACK_MESSAGE:
            if (problem := self._check_message(data, req.files, state)) is not None:
                return problem
            message = self._store_message(state, data, req.files, flags=data.get("flags", 0))
            state.original_id = int(message["id"])
            state.ephemeral = bool(message["flags"] & FLAG_EPHEMERAL)
        elif kind == CALLBACK_DEFERRED_MESSAGE:
            flags = FLAG_LOADING | (data.get("flags", 0) & FLAG_EPHEMERAL)
            message = self._store_message(state, {"content": ""}, [], flags=flags)
            state.original_id, state.loading = int(message["id"]), True
            state.ephemeral = bool(flags & FLAG_EPHEMERAL)
        state.acknowledged, state.response_type = True, kind
        if req.query.get("with_response", "").lower() not in ("1", "true"):
            return _Reply(204)
        callback: dict[str, Any] = {"id": str(state.id), "type": state.payload["type"]}
        resource: dict[str, Any] = {"type": kind}
        if message is not None:
            callback |= {
                "response_message_id": message["id"],
                "response_message_loading": state.loading,
                "response_message_ephemeral": state.ephemeral,
            }
            resource["message"] = message
        return _Reply(200, {"interaction": callback, "resource": resource})

    async def _followup(self, req: _Request, m: re.Match[str]) -> _Reply:
        state = self._interaction_for(m["token"])
        if int(m["app"]) != self.application_id or state is None or not state.acknowledged:
            return _Reply(404, _error(10015, "Unknown Webhook"))
        data = req.json or {}
        if (problem := self._check_message(data, req.files, state)) is not None:
            return problem
        flags = data.get("flags", 0) or 0
        if state.loading and state.original_id is not None:
            # The first followup after a deferral resolves the "thinking…" message and
            # keeps its ephemerality, whatever flags the followup asks for.
            flags = (flags & ~FLAG_EPHEMERAL) | (FLAG_EPHEMERAL if state.ephemeral else 0)
            state.loading = False
            message = self._store_message(
                state, data, req.files, flags=flags, message_id=state.original_id
            )
        else:
            message = self._store_message(state, data, req.files, flags=flags, kind=0)
        return _Reply(200, message)

    def _message_for(
        self, m: re.Match[str]
    ) -> tuple[_Interaction | None, dict[str, Any] | None, _Reply | None]:
        state = self._interaction_for(m["token"])
        if int(m["app"]) != self.application_id or state is None:
            return None, None, _Reply(404, _error(10015, "Unknown Webhook"))
        msg_id = state.original_id if m["message"] == "@original" else int(m["message"])
        message = self.messages.get(msg_id) if msg_id in state.message_ids else None
        if message is None:
            return state, None, _Reply(404, _error(10008, "Unknown Message"))
        return state, message, None

    async def _get_message(self, req: _Request, m: re.Match[str]) -> _Reply:
        _, message, problem = self._message_for(m)
        return problem or _Reply(200, message)

    async def _edit_message(self, req: _Request, m: re.Match[str]) -> _Reply:
        state, message, problem = self._message_for(m)
        if problem is not None:
            return problem
        assert state is not None and message is not None
        edited, problem = self._apply_edit(state, message, req.json or {}, req.files)
        if problem is not None:
            return problem
        if m["message"] == "@original":
            state.loading = False
        return _Reply(200, edited)

    def _apply_edit(
        self,
        state: _Interaction,
        message: dict[str, Any],
        data: dict[str, Any],
        files: list[UploadedFile],
    ) -> tuple[dict[str, Any] | None, _Reply | None]:
        """Edit a stored message (a webhook PATCH, or an UPDATE_MESSAGE callback): fields
        left out are kept; who sent it, when, and for which interaction do not change."""
        if message["flags"] & FLAG_IS_VOICE_MESSAGE:
            return None, _Reply(400, _error(50162, "Voice messages cannot be edited."))
        keep_ids = None
        if "attachments" in data:  # kept ones by snowflake, new files by their part index
            keep_ids = {str(a["id"]) for a in data["attachments"]}
        kept = [a for a in message["attachments"] if keep_ids is None or a["id"] in keep_ids]
        previous = {k: message[k] for k in ("content", "embeds", "components")}
        merged = previous | data
        if (problem := self._check_message(merged, files, state, kept=kept)) is not None:
            return None, problem
        flags = (message["flags"] & (FLAG_EPHEMERAL | FLAG_IS_VOICE_MESSAGE)) | (
            (data.get("flags") or 0) & FLAG_SUPPRESS_EMBEDS
        )
        old = dict(message)
        edited = self._store_message(
            state,
            merged,
            files,
            flags=flags,
            message_id=int(message["id"]),
            kind=message["type"],
            kept_attachments=kept,
        )
        for key in ("webhook_id", "application_id", "interaction_metadata"):
            if key in old:
                edited[key] = old[key]
            else:
                edited.pop(key, None)
        edited |= {k: old[k] for k in ("channel_id", "timestamp", "author")}
        edited["edited_timestamp"] = _now_iso()
        return edited, None

    async def _delete_message(self, req: _Request, m: re.Match[str]) -> _Reply:
        _, message, problem = self._message_for(m)
        if problem is not None:
            return problem
        assert message is not None
        del self.messages[int(message["id"])]
        return _Reply(204)

    async def _channel_message(self, req: _Request, m: re.Match[str]) -> _Reply:
        data = req.json or {}
        if (problem := self._check_message(data, req.files, None)) is not None:
            return problem
        channel_id = int(m["channel"])
        return _Reply(
            200,
            self._store_message(None, data, req.files, flags=data.get("flags", 0), kind=0)
            | {"channel_id": str(channel_id)},
        )

    # ------------------------------------------------------------------ messages

    def _check_message(
        self,
        data: dict[str, Any],
        files: list[UploadedFile],
        state: _Interaction | None,
        *,
        kept: list[dict[str, Any]] | None = None,
    ) -> _Reply | None:
        """Discord's checks on a message body; a `_Reply` error or None."""
        content = data.get("content") or ""
        limit = state.payload["attachment_size_limit"] if state else self.attachment_size_limit
        if len(content) > 2000:
            return _Reply(
                400,
                _form_error(
                    ["content"], "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."
                ),
            )
        if any(len(f.data) > limit for f in files):
            return _Reply(413, _error(40005, "Request entity too large"))
        body_parts = ("embeds", "components", "poll", "sticker_ids")
        if not (content or files or kept or any(data.get(k) for k in body_parts)):
            return _Reply(400, _error(50006, "Cannot send an empty message"))
        if (data.get("flags") or 0) & FLAG_IS_VOICE_MESSAGE:
            if content or data.get("embeds"):
                return _Reply(
                    400, _error(50159, "Voice messages do not support additional content.")
                )
            metas = data.get("attachments") or []
            audio = [f for f in files if self._content_type(f).startswith("audio/")]
            if len(files) != 1 or len(audio) != 1:
                return _Reply(
                    400, _error(50160, "Voice messages must have a single audio attachment.")
                )
            if len(metas) != 1 or "waveform" not in metas[0] or "duration_secs" not in metas[0]:
                return _Reply(400, _error(50161, "Voice messages must have supporting metadata."))
        return None

    @staticmethod
    def _content_type(f: UploadedFile) -> str:
        # discord.py labels every part application/octet-stream; Discord looks at the file
        if f.content_type and f.content_type != "application/octet-stream":
            return f.content_type
        return mimetypes.guess_type(f.filename)[0] or "application/octet-stream"

    def _store_message(
        self,
        state: _Interaction | None,
        data: dict[str, Any],
        files: list[UploadedFile],
        *,
        flags: int,
        message_id: int | None = None,
        kind: int = 20,  # CHAT_INPUT_COMMAND
        kept_attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        msg_id = message_id or self._ids.next()
        ephemeral = bool(flags & FLAG_EPHEMERAL)
        channel_id = int(state.payload["channel_id"]) if state else self.channel_id
        # New files are described by {"id": n} for their files[n] part; kept ones by snowflake
        metas = {str(a.get("id")): a for a in data.get("attachments") or []}
        attachments = list(kept_attachments or [])
        for index, f in enumerate(files):
            meta = metas.get(_file_index(f.name) or str(index), {})
            att_id = self._ids.next()
            content_type = self._content_type(f)
            att = self._attachment_json(
                att_id,
                meta.get("filename") or f.filename,
                size=len(f.data),
                content_type=content_type,
                ephemeral=ephemeral,
                channel_id=channel_id,
            )
            for key in ("description", "title", "waveform", "duration_secs"):
                if key in meta:
                    att[key] = meta[key]
            self._attachments[att_id] = _StoredAttachment(
                att_id, att["filename"], content_type, f.data, att
            )
            attachments.append(att)
        message: dict[str, Any] = {
            "id": str(msg_id),
            "type": kind,
            "channel_id": str(channel_id),
            "author": {k: self.bot_user[k] for k in _PUBLIC_USER_KEYS},
            "content": data.get("content") or "",
            "attachments": attachments,
            "embeds": data.get("embeds") or [],
            "components": data.get("components") or [],
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": bool(data.get("tts")),
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "flags": flags,
        }
        if state is not None:
            user = state.payload.get("member", {}).get("user") or state.payload.get("user")
            metadata: dict[str, Any] = {
                "id": str(state.id),
                "type": state.payload["type"],
                "user": user,
                "authorizing_integration_owners": state.payload.get(
                    "authorizing_integration_owners", {}
                ),
            }
            if state.payload["type"] == 2:  # APPLICATION_COMMAND
                metadata["name"] = state.payload["data"].get("name")
                metadata["command_type"] = state.payload["data"].get("type", 1)
            elif "message" in state.payload:  # a component's: the message it was on
                metadata["interacted_message_id"] = state.payload["message"]["id"]
            message |= {
                "webhook_id": str(self.application_id),
                "application_id": str(self.application_id),
                "interaction_metadata": metadata,
            }
            if msg_id not in state.message_ids:
                state.message_ids.append(msg_id)
        self.messages[msg_id] = message
        return message

    def _attachment_json(
        self,
        att_id: int,
        filename: str,
        *,
        size: int,
        content_type: str | None,
        ephemeral: bool,
        channel_id: int,
    ) -> dict[str, Any]:
        now = int(time.time())
        folder = "ephemeral-attachments" if ephemeral else "attachments"
        url = (
            f"{self.url}/{folder}/{channel_id}/{att_id}/{quote(filename)}"
            f"?ex={now + 86_400:x}&is={now:x}&hm={secrets.token_hex(32)}&"
        )
        att: dict[str, Any] = {
            "id": str(att_id),
            "filename": filename,
            "size": size,
            "url": url,
            "proxy_url": url,
            "content_scan_version": 0,
        }
        if content_type is not None:
            att["content_type"] = content_type
        if ephemeral:
            att["ephemeral"] = True
        return att

    def _cdn(self, req: _Request) -> _Reply:
        m = re.fullmatch(r"/(?:ephemeral-)?attachments/\d+/(?P<id>\d+)/[^/]+", req.path)
        stored = self._attachments.get(int(m["id"])) if m else None
        if stored is None:
            return _Reply(404, raw=b"Not Found", content_type="text/plain")
        self.cdn_downloads[stored.id] += 1
        return _Reply(200, raw=stored.data, content_type=stored.content_type)

    # ------------------------------------------------------------------ payload pieces

    @staticmethod
    def _typed_option(option: dict[str, Any]) -> dict[str, Any]:
        if "type" in option:
            return option
        value = option["value"]
        if isinstance(value, bool):
            kind = OPTION_BOOLEAN
        elif isinstance(value, int):
            kind = OPTION_INTEGER
        elif isinstance(value, float):
            kind = OPTION_NUMBER
        else:
            kind = OPTION_STRING
        return {"type": kind, **option}

    def _user_json(self, user_id: int, username: str | None = None) -> dict[str, Any]:
        name = username or f"user{user_id % 10_000}"
        return {
            "id": str(user_id),
            "username": name,
            "discriminator": "0",
            "global_name": name.title(),
            "avatar": None,
            "avatar_decoration_data": None,
            "banner": None,
            "accent_color": None,
            "public_flags": 0,
            "flags": 0,
            "primary_guild": None,
            "collectibles": None,
        }

    def _member_json(self, user: dict[str, Any], *, permissions: str | None) -> dict[str, Any]:
        member: dict[str, Any] = {
            "user": user,
            "roles": [],
            "joined_at": "2024-01-01T00:00:00.000000+00:00",
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": None,
            "avatar": None,
            "banner": None,
            "communication_disabled_until": None,
            "unusual_dm_activity_until": None,
        }
        if permissions is not None:
            member["permissions"] = permissions
        return member

    def _channel_json(self, guild_id: int, channel_id: int) -> dict[str, Any]:
        return {
            "id": str(channel_id),
            "type": 0,  # GUILD_TEXT
            "guild_id": str(guild_id),
            "name": "general",
            "position": 0,
            "permission_overwrites": [],
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }

    def _guild_json(self, guild_id: int) -> dict[str, Any]:
        everyone = {
            "id": str(guild_id),
            "name": "@everyone",
            "permissions": _PERMISSIONS_MEMBER,
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }
        bot_member = self._member_json(self.bot_user, permissions=None)
        return {
            "id": str(guild_id),
            "name": "Stand-in Guild",
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "features": [],
            "roles": [everyone],
            "emojis": [],
            "stickers": [],
            "system_channel_id": str(self.channel_id),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "max_members": 500_000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "application_id": None,
            "joined_at": "2024-01-01T00:00:00.000000+00:00",
            "large": False,
            "unavailable": False,
            "member_count": 2,
            "lazy": True,
            "members": [bot_member, *self.voice.guild_members()],
            "channels": [
                self._channel_json(guild_id, self.channel_id),
                *self.voice.channels_json(guild_id),
            ],
            "threads": [],
            "presences": [],
            "voice_states": self.voice.guild_voice_states(),
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }


_PUBLIC_USER_KEYS: Final = (
    "id",
    "username",
    "discriminator",
    "global_name",
    "avatar",
    "bot",
    "public_flags",
    "flags",
    "avatar_decoration_data",
    "primary_guild",
)


def _find_component(components: list[dict[str, Any]], custom_id: str) -> dict[str, Any] | None:
    """The interactive component with ``custom_id`` in a message's component tree."""
    for component in components:
        if component.get("custom_id") == custom_id:
            return component
        children = list(component.get("components") or [])
        if isinstance(component.get("accessory"), dict):  # a section's button
            children.append(component["accessory"])
        if (found := _find_component(children, custom_id)) is not None:
            return found
    return None


def _file_index(part_name: str) -> str:
    m = re.fullmatch(r"files\[(\d+)\]", part_name)
    return m[1] if m else ""


def _validate_commands(body: list[Any]) -> dict[str, Any] | None:
    """The subset of Discord's command checks that catches real mistakes; None if valid."""
    seen: set[tuple[str, int]] = set()
    for i, cmd in enumerate(body):
        name, kind = cmd.get("name", ""), cmd.get("type", 1)
        if (name, kind) in seen:
            return _form_error([i, "name"], "APPLICATION_COMMANDS_DUPLICATE_NAME", "Duplicate name")
        seen.add((name, kind))
        if kind == 1:
            if not _COMMAND_NAME.fullmatch(name) or name != name.lower():
                return _form_error([i, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Invalid name")
            if not 1 <= len(cmd.get("description", "")) <= 100:
                return _form_error(
                    [i, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100."
                )
        if (problem := _validate_options(cmd.get("options") or [], [i, "options"])) is not None:
            return problem
    return None


def _validate_options(
    options: list[dict[str, Any]], path: list[str | int]
) -> dict[str, Any] | None:
    if len(options) > 25:
        return _form_error(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    optional_seen = False
    for j, opt in enumerate(options):
        if not _COMMAND_NAME.fullmatch(opt.get("name", "")):
            return _form_error([*path, j, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Invalid")
        if opt.get("type") in (1, 2):  # subcommand (group): its own option list
            if (problem := _validate_options(opt.get("options") or [], [*path, j])) is not None:
                return problem
            continue
        if opt.get("required"):
            if optional_seen:
                return _form_error(
                    [*path, j],
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            optional_seen = True
    return None


@contextlib.asynccontextmanager
async def discord_pointed_at(standin: DiscordStandin) -> AsyncIterator[DiscordStandin]:
    """Point discord.py's REST base and default gateway at ``standin``; restore them after.

    Only these two class attributes are touched; the CDN URLs the stand-in hands out
    are absolute, so ``Attachment.read()`` reaches it unchanged.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(discord.http.Route, "BASE", standin.api_base)
        mp.setattr(
            discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(standin.gateway_url)
        )
        yield standin


@contextlib.asynccontextmanager
async def running_client(
    client: discord.Client, token: str, *, ready_timeout: float = 10.0
) -> AsyncIterator[discord.Client]:
    """Log ``client`` in, connect it in a task, wait for ``on_ready``; close it after.

    Build the client with ``guild_ready_timeout=0``: otherwise ``on_ready`` waits 2 s
    for GUILD_CREATEs. Use inside :func:`discord_pointed_at`.
    """
    await client.login(token)
    task = asyncio.create_task(client.connect(reconnect=True), name="standin-discord-connect")
    try:
        ready = asyncio.ensure_future(client.wait_until_ready())
        try:
            done, _ = await asyncio.wait(
                {ready, task}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        if ready not in done:
            if task in done:
                task.result()  # raises why connect() ended
                raise RuntimeError("client.connect() returned before the client was ready")
            raise TimeoutError(f"client not ready within {ready_timeout} s")
        yield client
    finally:
        await client.close()
        async with asyncio.timeout(10):
            with contextlib.suppress(asyncio.CancelledError):
                await task
