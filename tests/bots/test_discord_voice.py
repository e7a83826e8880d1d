"""Voice channels: saybot's real discord.py client joins the stand-in's voice server
(gateway voice states, the TLS voice WebSocket, UDP with IP discovery and encrypted RTP).

Every assertion is on what the voice server received and decrypted: the Opus payloads are
the answer file's own packets, in order, with RTP sequence numbers one apart and timestamps
960 samples (20 ms at 48 kHz) apart.
"""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import av
import pytest
from redis.asyncio import Redis

from bots.discord_bot.client import SayBot, stop_discord
from bots.say import SayFlow, SayRequest
from storage.settings import StorageSettings
from tests.bots.harness import Service, say_flow
from tests.bots.test_discord_bot import Bot, Outcome, discord_bot
from tests.standins.discord_api import DiscordStandin, discord_pointed_at
from tests.standins.discord_voice import (
    INTENT_GUILD_MESSAGES,
    INTENT_MESSAGE_CONTENT,
    RtpPacket,
    post_message,
)

pytestmark = pytest.mark.slow

ALICE, BOB, CAROL = 80351110224678912, 80351110224678913, 80351110224678914
SAMPLES_PER_FRAME = 960  # 20 ms at 48 kHz
MANAGE_CHANNELS = str((1 << 4) | (1 << 10) | (1 << 11) | (1 << 31))
MANAGE_GUILD = str((1 << 5) | (1 << 10) | (1 << 11) | (1 << 31))
LONG = (
    "This is a long answer, long enough to still be playing when someone skips it: "
    "it goes on about the weather, the sea, the mountains and the long road home, "
    "and then it goes on a little more, just to be sure it takes a while to say."
)


def answer_packets(ogg: bytes) -> list[bytes]:
    """The Opus packets of an answer file, demuxed here on their own (not by saybot)."""
    with av.open(io.BytesIO(ogg), mode="r", format="ogg") as container:
        stream = container.streams.audio[0]
        return [bytes(p) for p in container.demux(stream) if p.size]


@dataclass
class VoiceBot(Bot):
    async def in_voice(self, *users: int) -> None:
        for user in users:
            await self.standin.voice.member_joins(user)

    async def join(self, user: int = ALICE) -> Outcome:
        outcome = await self.command("join", user_id=user)
        assert "Joined" in outcome.message()["content"], outcome.messages
        return outcome

    async def spoken(self, text: str, user: int = ALICE) -> list[bytes]:
        """``/say text``: the answer's packets (the file it attached)."""
        outcome = await self.say(text, user_id=user)
        return answer_packets(outcome.upload().data)

    def heard(self) -> list[RtpPacket]:
        return self.standin.voice_server.received()

    async def heard_until(self, payloads: list[bytes]) -> list[RtpPacket]:
        """Wait until ``payloads`` have all arrived, in order, and playing stopped after them
        (the silence frames discord.py sends when a source ends)."""

        def done() -> bool:
            got = [p.payload for p in self.heard()]
            end = _find(got, payloads)
            return end is not None and any(p.is_silence for p in self.heard()[end:])

        await self.standin.voice_server.wait_for(done, what="the answer's packets")
        return self.heard()


def _find(haystack: list[bytes], needle: list[bytes]) -> int | None:
    """Where ``needle`` ends as a contiguous run in ``haystack`` (None: not there)."""
    for start in range(len(haystack) - len(needle) + 1):
        if haystack[start : start + len(needle)] == needle:
            return start + len(needle)
    return None


def assert_paced(packets: list[RtpPacket]) -> None:
    """One stream: sequence numbers one apart, timestamps one 20 ms frame apart."""
    for before, after in itertools.pairwise(packets):
        assert after.sequence == (before.sequence + 1) % 65536, (before, after)
        assert after.timestamp == (before.timestamp + SAMPLES_PER_FRAME) % 2**32, (before, after)
        assert after.nonce > before.nonce


@contextlib.asynccontextmanager
async def voice_bot(
    redis: Redis, storage: StorageSettings, service: Service, **overrides: Any
) -> AsyncIterator[VoiceBot]:
    async with (
        DiscordStandin() as standin,
        discord_pointed_at(standin),
        say_flow(redis, storage, service.url) as flow,
        started(standin, flow, **overrides) as client,
    ):
        yield VoiceBot(standin, client, flow, service, client.settings)


def started(
    standin: DiscordStandin, flow: SayFlow, **overrides: Any
) -> contextlib.AbstractAsyncContextManager[SayBot]:
    """saybot's client, trusting the voice server's certificate (``wss://`` is hard-coded)."""
    connector = aiohttp.TCPConnector(ssl=standin.voice_server.client_ssl_context())
    return discord_bot(standin, flow, client_options={"connector": connector}, **overrides)


@pytest.fixture
async def bot(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> AsyncIterator[VoiceBot]:
    async with voice_bot(redis_client, open_storage, service) as running:
        yield running


# --- /join, /say in the channel ------------------------------------------------------------


async def test_say_plays_the_answers_own_opus_packets_in_the_callers_channel(bot: VoiceBot) -> None:
    await bot.in_voice(ALICE)
    await bot.join()
    (session,) = bot.standin.voice_server.sessions
    assert session.mode == "aead_xchacha20_poly1305_rtpsize"
    assert bot.standin.voice.bot_channel() == bot.standin.voice.channel_id
    assert bot.standin.voice.requests[-1]["self_deaf"] is True  # it never needs to listen

    payloads = await bot.spoken("Hello from the voice channel.")
    heard = await bot.heard_until(payloads)

    speech = [p for p in heard if not p.is_silence]
    assert [p.payload for p in speech] == payloads  # not re-encoded: the very same packets
    assert_paced(heard)  # the silence frames that end it continue the same stream
    assert {p.ssrc for p in heard} == {session.ssrc}
    assert not bot.standin.voice_server.rejected
    assert session.speaking[0] == 0 and 1 in session.speaking  # SPEAKING before the audio


async def test_say_outside_the_bots_channel_only_answers_with_the_file(bot: VoiceBot) -> None:
    await bot.in_voice(ALICE)
    await bot.join()
    outcome = await bot.say("Only a file for Bob.", user_id=BOB)  # Bob is in no voice channel
    assert outcome.upload().data
    payloads = await bot.spoken("And this one for Alice.")
    heard = await bot.heard_until(payloads)
    assert [p.payload for p in heard if not p.is_silence] == payloads  # Bob's was not played


async def test_join_without_a_voice_channel_says_why(bot: VoiceBot) -> None:
    outcome = await bot.command("join", user_id=ALICE)
    assert "Join a voice channel" in outcome.private_text()
    assert bot.standin.voice.requests == []


async def test_join_does_not_take_the_bot_from_people_elsewhere(bot: VoiceBot) -> None:
    await bot.in_voice(ALICE)
    await bot.standin.voice.member_joins(BOB, channel_id=bot.standin.voice.other_channel_id)
    await bot.join(ALICE)
    busy = await bot.command("join", user_id=BOB)
    assert "in use in another voice channel" in busy.private_text()
    assert bot.standin.voice.bot_channel() == bot.standin.voice.channel_id

    moved = await bot.command("join", user_id=BOB, member_permissions=MANAGE_CHANNELS)
    assert "Joined 🔊 Stage Left" in moved.message()["content"]
    assert bot.standin.voice.bot_channel() == bot.standin.voice.other_channel_id
    payloads = await bot.spoken("Heard in the second channel.", user=BOB)
    heard = await bot.heard_until(payloads)
    assert [p.payload for p in heard if not p.is_silence] == payloads
    assert bot.standin.voice_server.sessions[-1].speaking  # the new session carried it


async def test_join_where_the_bot_may_not_connect_says_why(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with DiscordStandin() as standin:
        # The channel denies the bot CONNECT (in GUILD_CREATE, before the bot starts).
        deny = {"id": str(standin.application_id), "type": 1, "allow": "0", "deny": str(1 << 20)}
        standin.voice.overwrites.append(deny)
        async with (
            discord_pointed_at(standin),
            say_flow(redis_client, open_storage, service.url) as flow,
            started(standin, flow) as client,
        ):
            bot = VoiceBot(standin, client, flow, service, client.settings)
            await bot.in_voice(ALICE)
            outcome = await bot.command("join", user_id=ALICE)
            assert "couldn't join that voice channel" in outcome.private_text()
            assert standin.voice.requests == []


# --- the queue -------------------------------------------------------------------------------


async def test_queue_plays_in_order_and_skip_is_for_the_requester(bot: VoiceBot) -> None:
    await bot.in_voice(ALICE, BOB)
    await bot.join()
    first = await bot.spoken(LONG, user=ALICE)
    second = await bot.spoken("Bob's turn comes second.", user=BOB)
    third = await bot.spoken("Alice again, third.", user=ALICE)
    await bot.standin.voice_server.wait_for(lambda: len(bot.heard()) >= 5, what="the first packets")

    refused = await bot.command("skip", user_id=BOB)
    assert "Only whoever asked for it" in refused.private_text()
    skipped = await bot.command("skip", user_id=ALICE)
    assert skipped.private_text() == "Skipped."

    heard = await bot.heard_until(third)
    played = [p.payload for p in heard if not p.is_silence]
    cut = _find(played, second)
    assert cut is not None
    head = played[: cut - len(second)]
    assert 5 <= len(head) < len(first) and head == first[: len(head)]  # cut short, from the start
    assert played[cut:] == third  # then Bob's whole answer, then Alice's, in the asked order


async def test_stop_ends_ones_own_answers_or_everything_with_manage_channels(
    bot: VoiceBot,
) -> None:
    await bot.in_voice(ALICE, BOB)
    await bot.join()
    first = await bot.spoken(LONG, user=ALICE)
    never = await bot.spoken("Bob changes his mind.", user=BOB)
    await bot.standin.voice_server.wait_for(lambda: len(bot.heard()) >= 5, what="first packets")

    bobs = await bot.command("stop", user_id=BOB)
    assert bobs.private_text() == "Stopped 1 answer(s)."  # his own, not Alice's
    everything = await bot.command("stop", user_id=BOB, member_permissions=MANAGE_CHANNELS)
    assert everything.private_text() == "Stopped 1 answer(s)."  # Alice's, playing

    after = await bot.spoken("After the stop.", user=ALICE)
    heard = await bot.heard_until(after)
    played = [p.payload for p in heard if not p.is_silence]
    end = _find(played, after)
    assert end == len(played)
    head = played[: end - len(after)]
    assert len(head) < len(first) and head == first[: len(head)]
    assert _find(played, never[:3]) is None  # Bob's was never heard


# --- leaving -----------------------------------------------------------------------------------


async def test_leaves_when_alone_and_a_restart_rejoins_nowhere(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with voice_bot(redis_client, open_storage, service, discord_voice_idle_s=0.2) as bot:
        await bot.in_voice(ALICE, BOB)
        await bot.join()
        await bot.standin.voice.member_leaves(ALICE)
        # Bob is still there: the bot stays, well past the idle time (the answer is longer).
        payloads = await bot.spoken("Bob is still listening, so I stay.", user=BOB)
        assert len(payloads) * 0.02 > 0.2 * 5
        heard = await bot.heard_until(payloads)
        assert [p.payload for p in heard if not p.is_silence] == payloads
        assert bot.standin.voice.bot_channel() is not None

        await bot.standin.voice.member_leaves(BOB)
        await bot.standin.voice_server.wait_for(
            lambda: bot.standin.voice.bot_channel() is None, what="the idle leave"
        )
        assert bot.standin.voice.requests[-1]["channel_id"] is None

        await bot.in_voice(ALICE)
        await bot.join()
        await stop_discord(bot.client, drain_timeout_s=10)
        # Stopping left the channel; a new process starts in none, and stays out.
        assert bot.standin.voice.bot_channel() is None
        asked = len(bot.standin.voice.requests)
        async with started(bot.standin, bot.flow) as again:
            bot.client = again
            outcome = await bot.say("After the restart.", user_id=ALICE)
            assert outcome.upload().data
            assert len(bot.standin.voice.requests) == asked
            assert again.voice_clients == []


async def test_leave(bot: VoiceBot) -> None:
    await bot.in_voice(ALICE)
    await bot.join()
    outcome = await bot.command("leave", user_id=ALICE)
    assert outcome.message()["content"] == "Left the voice channel."
    assert bot.standin.voice.bot_channel() is None
    again = await bot.command("leave", user_id=ALICE)
    assert again.private_text() == "I'm not in a voice channel here."


# --- the channel reader ------------------------------------------------------------------------


async def test_reader_speaks_messages_of_members_in_the_voice_channel(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with voice_bot(redis_client, open_storage, service, discord_read_channels=True) as bot:
        intents = bot.standin.identifies[0]["intents"]
        assert intents & INTENT_GUILD_MESSAGES and intents & INTENT_MESSAGE_CONTENT
        await bot.in_voice(ALICE)
        await bot.join()
        refused = await bot.command("read", user_id=ALICE, subcommand="start")
        assert "manage channels" in refused.private_text()
        started_ = await bot.command(
            "read", user_id=ALICE, subcommand="start", member_permissions=MANAGE_CHANNELS
        )
        assert "Reading this channel aloud" in started_.message()["content"]

        await post_message(bot.standin, "Carol is not in voice.", user_id=CAROL)
        await post_message(
            bot.standin,
            "Hiii <@80351110224678913>!!!!!! see https://example.com ```print(1)```",
            user_id=ALICE,
            mentions=(BOB,),
        )
        payloads = await read_aloud(bot, "Hiii User8913!!! see a link")
        heard = await bot.heard_until(payloads)
        assert [p.payload for p in heard if not p.is_silence] == payloads  # Carol's: nothing

        names = await bot.command(
            "settings",
            [{"name": "on", "value": True}],
            subcommand="read_names",
            user_id=ALICE,
            member_permissions=MANAGE_GUILD,
        )
        assert '"<name> said": on' in names.private_text()
        await post_message(bot.standin, "Second one.", user_id=ALICE)
        second = await read_aloud(bot, "User8912 said: Second one.")
        heard = await bot.heard_until(second)
        assert [p.payload for p in heard if not p.is_silence] == payloads + second

        # Leaving ends the reading: back in the channel, messages are not read until asked.
        await bot.command("leave", user_id=ALICE)
        await bot.join()
        await post_message(bot.standin, "Not read any more.", user_id=ALICE)
        last = await bot.spoken("Only this.", user=ALICE)
        heard = await bot.heard_until(last)
        assert [p.payload for p in heard if not p.is_silence] == payloads + second + last


async def read_aloud(bot: VoiceBot, text: str) -> list[bytes]:
    """The packets of what the reader made of a message: ``text`` spoken as ALICE in the
    channel. Once the reader's audio starts playing its synthesis is in the cache, so this
    same request is answered from there (``from_cache``), which proves the reader asked for
    exactly ``text``."""
    before = len(bot.heard())
    await bot.standin.voice_server.wait_for(
        lambda: any(not p.is_silence for p in bot.heard()[before:]), what="the reader's audio"
    )
    expected = await bot.flow.say(
        SayRequest(
            platform="discord",
            user_id=str(ALICE),
            chat_id=str(bot.standin.channel_id),
            text=text,
            params={},
            clip=None,
            server_id=str(bot.standin.guild_id),
        )
    )
    assert expected.from_cache, text
    return answer_packets(expected.audio)


async def test_without_the_reader_no_message_content_is_asked_for(bot: VoiceBot) -> None:
    intents = bot.standin.identifies[0]["intents"]
    assert intents == 1 | 1 << 7  # GUILDS, GUILD_VOICE_STATES: nothing privileged
    await bot.in_voice(ALICE)
    await bot.join()
    assert await post_message(bot.standin, "Nobody reads this.", user_id=ALICE) is None
    outcome = await bot.command(
        "read", user_id=ALICE, subcommand="start", member_permissions=MANAGE_CHANNELS
    )
    assert "turned off on this bot" in outcome.private_text()
