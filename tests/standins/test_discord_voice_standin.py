"""The voice stand-in refuses what Discord's voice server refuses (by hand, without discord.py;
discord.py's own voice client against it is tested in tests/bots/test_discord_voice.py)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import nacl.secret
import pytest

from tests.standins.discord_voice import VoiceServer, VoiceSession

GUILD, USER = 1234, 5678


@pytest.fixture
async def server() -> AsyncIterator[VoiceServer]:
    async with VoiceServer() as running:
        yield running


async def connect(
    server: VoiceServer, http: aiohttp.ClientSession
) -> aiohttp.ClientWebSocketResponse:
    ssl = server.client_ssl_context()
    return await http.ws_connect(f"wss://{server.endpoint}/?v=8", ssl=ssl)


async def frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    data: dict[str, Any] = msg.json()
    return data


def identify(session: VoiceSession, **changes: Any) -> dict[str, Any]:
    d = {
        "server_id": str(session.guild_id),
        "user_id": str(session.user_id),
        "session_id": session.session_id,
        "token": session.token,
        "max_dave_protocol_version": 1,
    }
    return {"op": 0, "d": d | changes}


async def test_identify_with_a_wrong_token_is_closed_4004(server: VoiceServer) -> None:
    session = server.open_session(GUILD, USER)
    async with aiohttp.ClientSession() as http, await connect(server, http) as ws:
        assert (await frame(ws))["op"] == 8  # HELLO first
        await ws.send_json(identify(session, token="not-it"))
        closed = await asyncio.wait_for(ws.receive(), 5)
        assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4004


async def test_anything_before_identify_is_closed_4003(server: VoiceServer) -> None:
    async with aiohttp.ClientSession() as http, await connect(server, http) as ws:
        await frame(ws)
        await ws.send_json({"op": 5, "d": {"speaking": 1, "delay": 0, "ssrc": 1}})
        closed = await asyncio.wait_for(ws.receive(), 5)
        assert closed.data == 4003


async def test_handshake_then_only_well_sealed_fresh_packets_are_kept(server: VoiceServer) -> None:
    session = server.open_session(GUILD, USER)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setblocking(False)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http, await connect(server, http) as ws:
        await frame(ws)
        await ws.send_json(identify(session))
        ready = await frame(ws)
        assert ready["op"] == 2 and ready["seq"] == 1
        ssrc, port = ready["d"]["ssrc"], ready["d"]["port"]
        assert "aead_xchacha20_poly1305_rtpsize" in ready["d"]["modes"]
        await loop.sock_connect(udp, ("127.0.0.1", port))
        await loop.sock_sendall(udp, struct.pack(">HHI", 1, 70, ssrc) + bytes(66))
        answer = await asyncio.wait_for(loop.sock_recv(udp, 100), 5)
        assert len(answer) == 74 and answer[1] == 2
        ip = answer[8 : answer.index(0, 8)].decode()
        (my_port,) = struct.unpack_from(">H", answer, 72)
        assert (ip, my_port) == udp.getsockname()

        mode = "aead_xchacha20_poly1305_rtpsize"
        await ws.send_json(
            {
                "op": 1,
                "d": {"protocol": "udp", "data": {"address": ip, "port": my_port, "mode": mode}},
            }
        )
        description = await frame(ws)
        assert description["op"] == 4 and description["d"]["dave_protocol_version"] == 0
        key = bytes(description["d"]["secret_key"])

        def packet(sequence: int, nonce: int, payload: bytes, key: bytes = key) -> bytes:
            header = struct.pack(">BBHII", 0x80, 0x78, sequence, sequence * 960, ssrc)
            nonce_bytes = struct.pack(">I", nonce)
            sealed = nacl.secret.Aead(key).encrypt(payload, header, nonce_bytes + bytes(20))
            return header + sealed.ciphertext + nonce_bytes

        await loop.sock_sendall(udp, packet(1, 0, b"\xfc early"))  # before SPEAKING
        await ws.send_json({"op": 5, "d": {"speaking": 1, "delay": 0, "ssrc": ssrc}})
        await ws.send_json({"op": 3, "d": {"t": 42, "seq_ack": 2}})
        assert await frame(ws) == {"op": 6, "d": {"t": 42}}  # the ack comes after SPEAKING
        await loop.sock_sendall(udp, packet(2, 1, b"\xfc one"))
        await loop.sock_sendall(udp, packet(3, 1, b"\xfc replayed"))
        await loop.sock_sendall(udp, packet(4, 2, b"\xfc forged", key=bytes(32)))
        await loop.sock_sendall(udp, packet(5, 3, b"\xfc two"))
        await server.wait_for(lambda: len(server.packets) + len(server.rejected) == 5)
    udp.close()
    assert [(p.sequence, p.payload) for p in server.packets] == [(2, b"\xfc one"), (5, b"\xfc two")]
    assert server.rejected == ["RTP before SPEAKING", "nonce 1 reused", "did not decrypt"]
