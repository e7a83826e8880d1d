"""An answer's Opus packets as a discord.py ``AudioSource``: no decoding, no re-encoding.

The service answers Ogg/Opus at 48 kHz in 20 ms frames, which is what Discord's voice
carries: demuxing the Ogg pages (PyAV) gives the packets to send as they are, and
discord.py's player sends one every 20 ms when the source says ``is_opus()``. No FFmpeg
binary, no libopus at play time. Each packet's duration is read from its own TOC byte
(RFC 6716 §3.1), so a file with other frame sizes (which the player would pace wrongly)
is refused before anything plays.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import discord

from bots.discord_bot.voice.errors import NotPlayable

OPUS_RATE = 48_000
FRAME_US = 20_000  # what discord.py's player sends per read()
MAX_PACKETS = 15 * 60 * 50  # 15 minutes: far more than any answer; a bound on the work
_SILK_US = (10_000, 20_000, 40_000, 60_000)
_HYBRID_US = (10_000, 20_000)
_CELT_US = (2_500, 5_000, 10_000, 20_000)


def packet_duration_us(packet: bytes) -> int:
    """How long an Opus packet plays, from its TOC byte (and frame count byte)."""
    if not packet:
        raise NotPlayable("an empty Opus packet")
    config, code = packet[0] >> 3, packet[0] & 0x03
    if config < 12:
        frame = _SILK_US[config % 4]
    elif config < 16:
        frame = _HYBRID_US[config % 2]
    else:
        frame = _CELT_US[config % 4]
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        if len(packet) < 2:
            raise NotPlayable("an Opus packet without its frame count")
        frames = packet[1] & 0x3F
    return frame * frames


def opus_packets(ogg: bytes) -> list[bytes]:
    """The Opus packets of an Ogg/Opus file, each checked to last 20 ms."""
    import av  # FFmpeg's libraries: loaded only once something plays

    try:
        with av.open(io.BytesIO(ogg), mode="r", format="ogg") as container:
            if not container.streams.audio:
                raise NotPlayable("no audio stream")
            stream = container.streams.audio[0]
            if stream.codec_context.name != "opus" or stream.sample_rate != OPUS_RATE:
                raise NotPlayable(f"{stream.codec_context.name} at {stream.sample_rate} Hz")
            packets: list[bytes] = []
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream flush
                data = bytes(packet)
                if packet_duration_us(data) != FRAME_US:
                    raise NotPlayable("Opus frames other than 20 ms")
                packets.append(data)
                if len(packets) > MAX_PACKETS:
                    raise NotPlayable("longer than a voice answer can be")
    except av.error.FFmpegError as exc:
        raise NotPlayable(f"not an Ogg/Opus file: {exc}") from exc
    if not packets:
        raise NotPlayable("no audio")
    return packets


class OpusPackets(discord.AudioSource):
    """Already-encoded 20 ms Opus packets, read one at a time by discord.py's player thread."""

    def __init__(self, packets: Sequence[bytes]) -> None:
        self._packets = list(packets)
        self._next = 0

    @classmethod
    def of_ogg(cls, ogg: bytes) -> OpusPackets:
        return cls(opus_packets(ogg))

    def read(self) -> bytes:
        if self._next >= len(self._packets):
            return b""  # the player's end of stream
        packet = self._packets[self._next]
        self._next += 1
        return packet

    def is_opus(self) -> bool:
        return True
