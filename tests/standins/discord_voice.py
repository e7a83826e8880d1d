"""Discord's voice server, for tests only: the voice WebSocket (v8) over TLS and the UDP
media endpoint, plus the gateway's side of voice (voice states and server updates).

The real discord.py ``VoiceClient`` connects to it unchanged; what it models:

- Gateway: a client's VOICE_STATE (op 4) is answered with VOICE_STATE_UPDATE (its voice
  ``session_id``) then VOICE_SERVER_UPDATE (``token``, ``endpoint``); leaving (``channel_id``
  null) with a VOICE_STATE_UPDATE without a channel. Members join and leave voice channels
  with :meth:`VoiceGateway.member_joins` / :meth:`VoiceGateway.member_leaves`.
- Voice WebSocket: ``wss://{endpoint}/?v=8`` (discord.py hard-codes ``wss``, so it is TLS
  with a certificate made per run: build the client with a connector trusting
  :meth:`VoiceServer.client_ssl_context`). HELLO, IDENTIFY (server id, user id, session id
  and token must be the ones the gateway handed out, else 4004/4006) → READY (ssrc, ip, port,
  modes) → SELECT_PROTOCOL (a mode offered, the address IP discovery reported) →
  SESSION_DESCRIPTION (a 32-byte secret key, ``dave_protocol_version`` 0: no end-to-end
  encryption in the stand-in), heartbeats acknowledged with their nonce, SPEAKING recorded;
  server frames carry ``seq``. Unknown opcodes close with 4001, frames before IDENTIFY 4003.
- UDP: IP discovery (type 1 request of 74 bytes with the session's ssrc → type 2 answer with
  the sender's address and port), then RTP packets, decrypted with the session's key
  (``aead_xchacha20_poly1305_rtpsize``: the RTP header is the associated data, a 32-bit
  big-endian nonce counter is appended). Packets that do not decrypt, come from an unknown
  ssrc or before SPEAKING, or reuse a nonce, are counted in ``rejected`` and not kept.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import secrets
import socket
import ssl
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import nacl.exceptions
import nacl.secret
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from tests.standins.discord_api import DiscordStandin

# Voice gateway opcodes (v8)
V_IDENTIFY, V_SELECT_PROTOCOL, V_READY, V_HEARTBEAT = 0, 1, 2, 3
V_SESSION_DESCRIPTION, V_SPEAKING, V_HEARTBEAT_ACK, V_RESUME = 4, 5, 6, 7
V_HELLO, V_RESUMED, V_CLIENT_CONNECT, V_CLIENT_DISCONNECT = 8, 9, 12, 13

MODES: Final = ("aead_xchacha20_poly1305_rtpsize",)
RTP_HEADER_BYTES: Final = 12
RTP_PAYLOAD_TYPE_OPUS: Final = 0x78  # 120, what Discord uses for Opus
NONCE_BYTES: Final = 4
OPUS_SILENCE: Final = b"\xf8\xff\xfe"  # the frame clients send after speaking
VOICE_CHANNEL_TYPE: Final = 2


@dataclass(frozen=True)
class RtpPacket:
    """One decrypted RTP packet as the voice server received it."""

    ssrc: int
    sequence: int
    timestamp: int
    nonce: int
    payload: bytes  # the Opus frame
    received_at: float  # monotonic; for reports only, tests assert on RTP fields

    @property
    def is_silence(self) -> bool:
        return self.payload == OPUS_SILENCE


@dataclass
class VoiceSession:
    """One voice connection the gateway handed out (guild, user, session id, token)."""

    guild_id: int
    user_id: int
    session_id: str
    token: str
    ssrc: int
    secret_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    ws: web.WebSocketResponse | None = None
    identified: bool = False
    discovered: tuple[str, int] | None = None  # what IP discovery told the client
    mode: str | None = None
    speaking: list[int] = field(default_factory=list)  # SPEAKING flags, in order
    heartbeats: int = 0
    last_nonce: int = -1
    seq: int = 0


class VoiceServer:
    """The voice WebSocket (TLS) and UDP endpoint on 127.0.0.1."""

    def __init__(self, *, heartbeat_interval_ms: int = 13_750) -> None:
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.sessions: list[VoiceSession] = []
        self.packets: list[RtpPacket] = []
        self.rejected: list[str] = []  # why each refused packet was refused
        self.close_codes: list[int] = []  # what the server closed voice sockets with
        self._changed = asyncio.Condition()
        self._closing: set[asyncio.Task[bool]] = set()
        self._ssrcs = iter(range(1001, 1 << 31))
        self._runner: web.AppRunner | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._cert_pem = b""
        self.port = 0
        self.udp_port = 0

    async def __aenter__(self) -> VoiceServer:
        server_ssl = self._make_certificate()
        app = web.Application()
        app.router.add_get("/", self._websocket)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=server_ssl).start()
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=("127.0.0.1", 0)
        )
        self.udp_port = self._udp.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._closing):
            task.cancel()
        for session in self.sessions:
            if session.ws is not None and not session.ws.closed:
                await session.ws.close(code=1001)
        if self._udp is not None:
            self._udp.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def endpoint(self) -> str:
        """VOICE_SERVER_UPDATE's ``endpoint`` (host:port, no scheme, as Discord sends it)."""
        return f"127.0.0.1:{self.port}"

    def client_ssl_context(self) -> ssl.SSLContext:
        """What the client must trust to reach ``wss://{endpoint}``."""
        context = ssl.create_default_context(cadata=self._cert_pem.decode())
        return context

    def _make_certificate(self) -> ssl.SSLContext:
        """A self-signed certificate for 127.0.0.1, made for this run."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "standin voice server")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self._cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as folder:
            cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
            with open(cert_path, "wb") as f:
                f.write(self._cert_pem)
            with open(key_path, "wb") as f:
                f.write(key_pem)
            context.load_cert_chain(cert_path, key_path)
        return context

    # ------------------------------------------------------------------ test-facing API

    def open_session(self, guild_id: int, user_id: int) -> VoiceSession:
        """A voice session the gateway hands out (VOICE_STATE_UPDATE + VOICE_SERVER_UPDATE)."""
        session = VoiceSession(
            guild_id, user_id, secrets.token_hex(16), secrets.token_hex(8), next(self._ssrcs)
        )
        self.sessions.append(session)
        return session

    def end_session(self, session: VoiceSession, code: int = 4014) -> None:
        """The user left or moved: its voice socket is closed (4014: disconnected), in the
        background (the closing handshake waits for the client, which must not hold up the
        gateway events it is waiting for)."""
        if session.ws is not None and not session.ws.closed:
            self.close_codes.append(code)
            task = asyncio.create_task(session.ws.close(code=code))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def received(self, ssrc: int | None = None, *, silence: bool = True) -> list[RtpPacket]:
        """The packets kept so far, in arrival order (``silence=False``: no silence frames)."""
        return [
            p
            for p in self.packets
            if (ssrc is None or p.ssrc == ssrc) and (silence or not p.is_silence)
        ]

    async def wait_for(
        self,
        condition: Callable[[], bool],
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - named like asyncio.wait_for's
        what: str = "the voice condition",
    ) -> None:
        """Until ``condition()`` holds (asked again on every packet and every frame)."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(condition)
        except TimeoutError:
            raise TimeoutError(f"{what} did not happen within {timeout} s") from None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------------ WebSocket

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if request.query.get("v") != "8":
            await ws.close(code=4012, message=b"Unknown protocol version.")
            return ws
        session: VoiceSession | None = None
        await self._send(ws, None, V_HELLO, {"heartbeat_interval": self.heartbeat_interval_ms})
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:  # DAVE binary frames: no DAVE here
                await ws.close(code=4002, message=b"Failed to decode payload.")
                break
            frame = json.loads(msg.data)
            op, d = frame.get("op"), frame.get("d")
            if op == V_IDENTIFY:
                session = await self._identify(ws, d)
            elif op == V_HEARTBEAT:
                if session is not None:
                    session.heartbeats += 1
                await self._send(ws, None, V_HEARTBEAT_ACK, {"t": d["t"]})
            elif session is None:
                await ws.close(code=4003, message=b"Not authenticated.")
            elif op == V_SELECT_PROTOCOL:
                await self._select_protocol(ws, session, d)
            elif op == V_SPEAKING:
                if d.get("ssrc") != session.ssrc:
                    await ws.close(code=4020, message=b"Bad request.")
                session.speaking.append(int(d["speaking"]))
            else:
                await ws.close(code=4001, message=b"Unknown opcode.")
            await self._notify()
        if session is not None and session.ws is ws:
            session.ws = None
        await self._notify()
        return ws

    async def _send(
        self, ws: web.WebSocketResponse, session: VoiceSession | None, op: int, d: Any
    ) -> None:
        frame: dict[str, Any] = {"op": op, "d": d}
        if session is not None:
            session.seq += 1
            frame["seq"] = session.seq
        await ws.send_str(json.dumps(frame))

    async def _identify(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> VoiceSession | None:
        session = next((s for s in self.sessions if s.session_id == d.get("session_id")), None)
        if session is None or d.get("token") != session.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        if d.get("server_id") != str(session.guild_id) or d.get("user_id") != str(session.user_id):
            await ws.close(code=4006, message=b"Session no longer valid.")
            return None
        if not isinstance(d.get("max_dave_protocol_version"), int):
            await ws.close(code=4020, message=b"Bad request.")
            return None
        session.ws, session.identified = ws, True
        ready = {
            "ssrc": session.ssrc,
            "ip": "127.0.0.1",
            "port": self.udp_port,
            "modes": [*MODES, "aead_aes256_gcm_rtpsize"],
            "heartbeat_interval": 1,  # Discord sends a meaningless one here; HELLO's counts
            "experiments": [],
            "streams": [],
        }
        await self._send(ws, session, V_READY, ready)
        return session

    async def _select_protocol(
        self, ws: web.WebSocketResponse, session: VoiceSession, d: dict[str, Any]
    ) -> None:
        data = d.get("data") or {}
        mode = data.get("mode")
        address = (data.get("address"), data.get("port"))
        if d.get("protocol") != "udp" or mode not in MODES:
            await ws.close(code=4016, message=b"Unknown encryption mode.")
            return
        if session.discovered is None or address != session.discovered:
            await ws.close(code=4020, message=b"Bad request.")
            return
        session.mode = mode
        description = {
            "mode": mode,
            "secret_key": list(session.secret_key),
            "dave_protocol_version": 0,
            "audio_codec": "opus",
            "video_codec": None,
            "media_session_id": secrets.token_hex(16),
        }
        await self._send(ws, session, V_SESSION_DESCRIPTION, description)

    # ------------------------------------------------------------------ UDP

    def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) == 74 and data[:4] == struct.pack(">HH", 1, 70):
            self._discovery(data, addr)
        elif len(data) > RTP_HEADER_BYTES and data[0] >> 6 == 2:
            self._rtp(data)
        else:
            self.rejected.append("not IP discovery nor RTP")
        asyncio.get_running_loop().create_task(self._notify())

    def _discovery(self, data: bytes, addr: tuple[str, int]) -> None:
        (ssrc,) = struct.unpack_from(">I", data, 4)
        session = self._by_ssrc(ssrc)
        if session is None or not session.identified:
            self.rejected.append(f"IP discovery for unknown ssrc {ssrc}")
            return
        session.discovered = addr
        answer = bytearray(74)
        struct.pack_into(">HHI", answer, 0, 2, 70, ssrc)
        answer[8 : 8 + len(addr[0])] = addr[0].encode("ascii")
        struct.pack_into(">H", answer, 72, addr[1])
        assert self._udp is not None
        self._udp.sendto(bytes(answer), addr)

    def _rtp(self, data: bytes) -> None:
        first, payload_type, sequence, timestamp, ssrc = struct.unpack_from(">BBHII", data, 0)
        session = self._by_ssrc(ssrc)
        if session is None or session.mode is None:
            self.rejected.append(f"RTP from unknown ssrc {ssrc}")
            return
        if not session.speaking:
            self.rejected.append("RTP before SPEAKING")
            return
        if payload_type & 0x7F != RTP_PAYLOAD_TYPE_OPUS:
            self.rejected.append(f"payload type {payload_type & 0x7F} is not Opus")
            return
        header_end = RTP_HEADER_BYTES + 4 * (first & 0x0F)  # CSRCs
        if first & 0x10:  # an extension: its 4-byte prefix is authenticated, not encrypted
            header_end += 4
        header, body = data[:header_end], data[header_end:-NONCE_BYTES]
        nonce_bytes = data[-NONCE_BYTES:]
        (nonce,) = struct.unpack(">I", nonce_bytes)
        try:
            plain = nacl.secret.Aead(session.secret_key).decrypt(
                body, header, nonce_bytes + bytes(24 - NONCE_BYTES)
            )
        except nacl.exceptions.CryptoError:
            self.rejected.append("did not decrypt")
            return
        if nonce <= session.last_nonce:
            self.rejected.append(f"nonce {nonce} reused")
            return
        session.last_nonce = nonce
        if first & 0x10:  # the extension's body is the start of the decrypted data
            (words,) = struct.unpack_from(">H", data, header_end - 2)
            plain = plain[4 * words :]
        self.packets.append(RtpPacket(ssrc, sequence, timestamp, nonce, plain, time.monotonic()))

    def _by_ssrc(self, ssrc: int) -> VoiceSession | None:
        return next((s for s in reversed(self.sessions) if s.ssrc == ssrc), None)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: VoiceServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server._datagram(data, addr)


@dataclass
class VoiceState:
    """Who is in which voice channel of the stand-in's guild, as the gateway knows it."""

    user_id: int
    channel_id: int
    session_id: str
    username: str | None = None
    bot: bool = False
    self_mute: bool = False
    self_deaf: bool = False


class VoiceGateway:
    """The gateway's side of voice for one :class:`DiscordStandin`."""

    def __init__(self, standin: DiscordStandin, server: VoiceServer) -> None:
        self.standin = standin
        self.server = server
        self.states: dict[int, VoiceState] = {}  # user id → state (one guild)
        self.requests: list[dict[str, Any]] = []  # every op 4 a client sent, in order
        self.channel_id = standin._ids.next()  # the guild's voice channel ("Lounge")
        self.other_channel_id = standin._ids.next()  # and a second one ("Stage Left")
        self.overwrites: list[dict[str, Any]] = []  # the voice channel's permission overwrites
        self._sessions: dict[int, VoiceSession] = {}  # user id → the bot's voice session

    def channels_json(self, guild_id: int) -> list[dict[str, Any]]:
        """The guild's voice channels, for GUILD_CREATE."""
        return [
            self._channel_json(guild_id, self.channel_id, "Lounge", 1),
            self._channel_json(guild_id, self.other_channel_id, "Stage Left", 2),
        ]

    def _channel_json(
        self, guild_id: int, channel_id: int, name: str, position: int
    ) -> dict[str, Any]:
        return {
            "id": str(channel_id),
            "type": VOICE_CHANNEL_TYPE,
            "guild_id": str(guild_id),
            "name": name,
            "position": position,
            "permission_overwrites": self.overwrites,
            "parent_id": None,
            "nsfw": False,
            "bitrate": 64_000,
            "user_limit": 0,
            "rtc_region": None,
            "video_quality_mode": 1,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }

    def guild_voice_states(self) -> list[dict[str, Any]]:
        """GUILD_CREATE's ``voice_states`` (no guild id, no member: as Discord sends them)."""
        return [self._state_json(s) for s in self.states.values()]

    def guild_members(self) -> list[dict[str, Any]]:
        """Members in voice, which GUILD_CREATE's ``members`` includes."""
        return [self._member(s) for s in self.states.values() if not s.bot]

    async def member_joins(
        self, user_id: int, *, channel_id: int | None = None, username: str | None = None
    ) -> None:
        """A (human) member joins a voice channel: VOICE_STATE_UPDATE with the member."""
        state = VoiceState(user_id, channel_id or self.channel_id, secrets.token_hex(16), username)
        self.states[user_id] = state
        await self._dispatch(state)

    async def member_leaves(self, user_id: int) -> None:
        state = self.states.pop(user_id)
        await self._dispatch(state, leaving=True)

    def bot_channel(self) -> int | None:
        state = self.states.get(self.standin.application_id)
        return state.channel_id if state is not None else None

    async def voice_state_op(self, d: dict[str, Any]) -> None:
        """A client's op 4: join, move or leave (``VoiceServer.wait_for`` wakes up after)."""
        try:
            await self._voice_state_op(d)
        finally:
            await self.server._notify()

    async def _voice_state_op(self, d: dict[str, Any]) -> None:
        self.requests.append(d)
        guild_id, channel_id = int(d["guild_id"]), d.get("channel_id")
        bot_id = self.standin.application_id
        if guild_id != self.standin.guild_id:
            return  # Discord ignores voice states for guilds the bot is not in
        if channel_id is not None and int(channel_id) not in (
            self.channel_id,
            self.other_channel_id,
        ):
            return  # not a voice channel of this guild: Discord does nothing
        previous = self._sessions.pop(bot_id, None)
        try:
            await self._move(d, guild_id, bot_id, channel_id)
        finally:
            if previous is not None:
                self.server.end_session(previous)

    async def _move(
        self, d: dict[str, Any], guild_id: int, bot_id: int, channel_id: str | int | None
    ) -> None:
        if channel_id is None:
            state = self.states.pop(bot_id, None)
            if state is not None:
                await self._dispatch(state, leaving=True)
            return
        session = self.server.open_session(guild_id, bot_id)
        self._sessions[bot_id] = session
        state = VoiceState(
            bot_id,
            int(channel_id),
            session.session_id,
            self.standin.bot_user["username"],
            bot=True,
            self_mute=bool(d.get("self_mute")),
            self_deaf=bool(d.get("self_deaf")),
        )
        self.states[bot_id] = state
        await self._dispatch(state)
        await self.standin.dispatch(
            "VOICE_SERVER_UPDATE",
            {"token": session.token, "guild_id": str(guild_id), "endpoint": self.server.endpoint},
            guild_id=guild_id,
        )

    async def _dispatch(self, state: VoiceState, *, leaving: bool = False) -> None:
        data = self._state_json(state) | {
            "guild_id": str(self.standin.guild_id),
            "member": self._member(state),
        }
        if leaving:
            data["channel_id"] = None
        await self.standin.dispatch("VOICE_STATE_UPDATE", data, guild_id=self.standin.guild_id)

    def _state_json(self, state: VoiceState) -> dict[str, Any]:
        return {
            "channel_id": str(state.channel_id),
            "user_id": str(state.user_id),
            "session_id": state.session_id,
            "deaf": False,
            "mute": False,
            "self_deaf": state.self_deaf,
            "self_mute": state.self_mute,
            "self_video": False,
            "self_stream": False,
            "suppress": False,
            "request_to_speak_timestamp": None,
        }

    def _member(self, state: VoiceState) -> dict[str, Any]:
        if state.bot:
            user = self.standin.bot_user
        else:
            user = self.standin._user_json(state.user_id, state.username)
        return self.standin._member_json(user, permissions=None)


INTENT_GUILD_MESSAGES: Final = 1 << 9
INTENT_MESSAGE_CONTENT: Final = 1 << 15  # privileged


async def post_message(
    standin: DiscordStandin,
    content: str,
    *,
    user_id: int,
    username: str | None = None,
    channel_id: int | None = None,
    mentions: tuple[int, ...] = (),
) -> dict[str, Any] | None:
    """A member posts in a text channel of the guild: MESSAGE_CREATE, as Discord sends it to a
    bot, to the guild's shard, if its session asked for GUILD_MESSAGES; ``content`` (and
    embeds, attachments) empty unless it asked for MESSAGE_CONTENT too. Returns the event
    sent, or None when the session was not sent one."""
    guild_id = standin.guild_id
    shard_id = (guild_id >> 22) % standin.shards
    session = await standin.wait_until_connected(shard_id=shard_id)
    intents = int(session.identify.get("intents", 0))
    standin.posted_messages.append(content)
    if not intents & INTENT_GUILD_MESSAGES:
        return None
    author = standin._user_json(user_id, username)
    member = standin._member_json(author, permissions=None)
    member.pop("user")
    mentioned = []
    for mention_id in mentions:
        user = standin._user_json(mention_id)
        mentioned.append(user | {"member": standin._member_json(user, permissions=None)})
        mentioned[-1]["member"].pop("user")
    readable = bool(intents & INTENT_MESSAGE_CONTENT)
    message = {
        "id": str(standin._ids.next()),
        "type": 0,
        "channel_id": str(channel_id or standin.channel_id),
        "guild_id": str(guild_id),
        "author": author,
        "member": member,
        "content": content if readable else "",
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": mentioned,
        "mention_roles": [],
        "mention_channels": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "flags": 0,
        "components": [],
        "nonce": None,
    }
    await standin.dispatch("MESSAGE_CREATE", message, guild_id=guild_id)
    return message
