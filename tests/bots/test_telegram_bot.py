"""The real python-telegram-bot application of saybot against a Bot API stand-in.

Full path: stand-in → PTB → SayFlow → Valkey → real TTS service with Piper.
Assertions are on what the stand-in received.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import soundfile as sf
from pydantic import SecretStr
from redis.asyncio import Redis
from telegram.error import NetworkError

from bots.clips import ClipLimits
from bots.messages import GAVE_UP, UNEXPECTED
from bots.say import SayFlow, SayRequest
from bots.settings import BotSettings
from bots.telegram_bot.app import build_application, stop_telegram
from bots.telegram_bot.handlers import HELP, VOICE_NOTE_HELP
from storage import keys
from storage.redis import make_client
from storage.settings import StorageSettings
from tests.bots.harness import (
    Canned,
    CannedAnswers,
    HandledUpdates,
    Service,
    bot_settings,
    consented_before,
    running_service,
    say_flow,
    telegram_app,
)
from tests.redis_fixtures import free_port, make_settings, start_valkey
from tests.standins.telegram_api import BOT_USERNAME, DOWNLOAD, TOKEN, Call, TelegramStandin
from tests.tts_service.audio_samples import clip
from tests.tts_service.engine_wrappers import CloningPiper
from tts_service.engines.piper import PiperEngine

USER = 1001
PTB_READ_TIMEOUT_S = 5  # HTTPXRequest's default read timeout
UNAVAILABLE = "The voice engine is unavailable right now — please try again later."


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


SENDS = frozenset({"sendVoice", "sendMessage", "sendAudio", "sendDocument"})


def answers(call: Call, message: dict[str, Any]) -> bool:
    """Whether ``call`` sends something to ``message``'s chat as a reply to it."""
    params = call.params
    target = (params.get("reply_parameters") or {}).get("message_id") or params.get(
        "reply_to_message_id"
    )
    return (
        call.method in SENDS
        and params.get("chat_id") == message["chat"]["id"]
        and target == message["message_id"]
    )


@dataclass
class Bot:
    tg: TelegramStandin
    flow: SayFlow
    service: Service
    settings: BotSettings
    handled: HandledUpdates

    async def reply_to(
        self,
        message: dict[str, Any],
        method: str,
        timeout: float = 30,  # noqa: ASYNC109 - one bound per awaited reply reads best here
    ) -> Call:
        """The bot's one reply to ``message``, which must be a ``method``.

        Waits until every update queued so far (edits included) has been through all of
        saybot's handlers, so any stray second reply has been sent, then fails unless exactly
        one reply answered ``message``.
        """
        async with asyncio.timeout(timeout):
            await self.settled()
        replies = self.replies_to(message)
        assert len(replies) == 1, f"expected one reply, got {[c.params for c in replies]}"
        reply = replies[0]
        assert reply.method == method, f"expected {method}, got {reply.method}: {reply.params}"
        return await self.tg.wait_for(method, lambda c: c.seq == reply.seq, timeout)

    async def no_reply_to(
        self,
        message: dict[str, Any],
        timeout: float = 30,  # noqa: ASYNC109 - one bound per awaited reply reads best here
    ) -> None:
        """Once everything queued has been handled, nothing answered ``message``."""
        async with asyncio.timeout(timeout):
            await self.settled()
        assert not self.replies_to(message), [c.params for c in self.replies_to(message)]

    async def settled(self) -> None:
        """Every update the stand-in queued has been through all of saybot's handlers."""
        await self.handled.wait_for(lambda: self.tg.issued_update_ids)

    def replies_to(self, message: dict[str, Any]) -> list[Call]:
        """Every send answering ``message``, finished or not, but those Telegram refused
        (400: nobody saw them)."""
        return [c for c in self.tg.calls() if answers(c, message) and c.status != 400]


@contextlib.asynccontextmanager
async def running_bot(
    redis: Redis,
    storage: StorageSettings,
    service: Service,
    standin: TelegramStandin | None = None,
    *,
    clip_limits: ClipLimits | None = None,
    **overrides: Any,
) -> AsyncIterator[Bot]:
    async with (
        standin or TelegramStandin(privacy_mode=False) as tg,
        say_flow(redis, storage, service.url, clip_limits=clip_limits) as flow,
        telegram_app(tg, flow, track_updates=True, **overrides) as running,
    ):
        yield Bot(tg, flow, service, running.settings, running.handled)


@pytest.fixture
async def bot(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> AsyncIterator[Bot]:
    async with running_bot(redis_client, open_storage, service) as running:
        yield running


def decoded_voice(call: Call) -> tuple[Any, bytes]:
    """soundfile's info of the uploaded voice note, and its bytes."""
    data = call.files["voice"]
    return sf.info(io.BytesIO(data)), data


# --- the happy path --------------------------------------------------------------------------


async def test_say_answers_with_a_voice_note_after_recording_actions(bot: Bot) -> None:
    start = bot.tg.mark()
    # Long enough that synthesis outlasts telegram_chat_action_delay_s (instant answers get none).
    text = "Hello from Telegram. " + "This sentence gives the engine some work to do. " * 6
    message = bot.tg.send_command(USER, USER, "say", text)
    reply = await bot.reply_to(message, "sendVoice")
    info, _ = decoded_voice(reply)
    assert (info.format, info.subtype, info.samplerate) == ("OGG", "OPUS", 48000)
    assert 10 < info.duration < 30
    assert reply.params["duration"] == max(1, round(info.duration))
    assert "built-in voice" in reply.params["caption"]
    assert reply.params["caption"].startswith("🤖🔊 AI voice · ")  # says it is synthetic, first
    actions = bot.tg.calls("sendChatAction", after_seq=start)
    assert actions and actions[0].seq < reply.seq
    assert actions[0].params["action"] == "record_voice"
    assert not bot.tg.calls("sendAudio") and not bot.tg.calls("sendDocument")


async def test_second_identical_say_is_served_from_cache(bot: Bot) -> None:
    before = bot.service.counter.tts_requests
    first = await bot.reply_to(
        bot.tg.send_command(USER, USER, "say", "Cache me once."), "sendVoice"
    )
    mark = bot.tg.mark()
    second = await bot.reply_to(
        bot.tg.send_command(USER, USER, "say", "Cache   me once."), "sendVoice"
    )
    assert not bot.tg.calls("sendChatAction", after_seq=mark)  # instant: no "recording…"
    assert bot.service.counter.tts_requests == before + 1
    # The same answer again: sent by the file_id Telegram gave it, no bytes uploaded twice.
    assert first.uploads["voice"] and not second.uploads
    assert second.params["voice"] == first.result["voice"]["file_id"]
    assert second.files["voice"] == first.files["voice"]


async def test_a_file_id_telegram_no_longer_knows_is_uploaded_again(bot: Bot) -> None:
    first = await bot.reply_to(
        bot.tg.send_command(USER, USER, "say", "Send me twice."), "sendVoice"
    )
    bot.tg.files.pop(first.result["voice"]["file_id"])  # Telegram lost it (or another bot's)
    mark = bot.tg.mark()
    again = await bot.reply_to(
        bot.tg.send_command(USER, USER, "say", "Send me twice."), "sendVoice"
    )
    refused = bot.tg.calls("sendVoice", after_seq=mark)[0]
    assert refused.status == 400 and not refused.uploads  # the id was tried first
    assert again.uploads["voice"].data == first.files["voice"]  # then the bytes, in one reply
    third = await bot.reply_to(
        bot.tg.send_command(USER, USER, "say", "Send me twice."), "sendVoice"
    )
    assert third.params["voice"] == again.result["voice"]["file_id"]  # the new id remembered


async def test_options_are_parsed_and_seeded_output_repeats(bot: Bot, redis_client: Redis) -> None:
    before = bot.service.counter.tts_requests
    one = await bot.reply_to(
        bot.tg.send_command(USER, USER, "say", "seed=7 temperature=0.5 Options work."), "sendVoice"
    )
    await redis_client.flushall()  # a second synthesis, not a cache hit, must repeat the bytes
    two = await bot.reply_to(
        bot.tg.send_command(USER, USER, "say", "seed=7 temperature=0.5 Options work."), "sendVoice"
    )
    assert one.files["voice"] == two.files["voice"]
    assert bot.service.counter.tts_requests == before + 2


async def test_say_as_a_reply_speaks_the_replied_text(bot: Bot) -> None:
    original = bot.tg.send_text(USER, USER, "Please read this sentence aloud.")
    await bot.reply_to(original, "sendVoice")  # private chats speak plain text too
    replying = bot.tg.send_command(USER, USER, "say", reply_to=original)
    reply = await bot.reply_to(replying, "sendVoice")
    assert decoded_voice(reply)[0].duration > 1


async def test_plain_text_in_groups_needs_a_mention(bot: Bot) -> None:
    group = -500
    ignored = bot.tg.send_text(group, USER, "nobody asked the bot", chat_type="group")
    mentioned = bot.tg.send_text(group, USER, f"@{BOT_USERNAME} hello group", chat_type="group")
    await bot.reply_to(mentioned, "sendVoice")
    await bot.no_reply_to(ignored)


async def test_group_mentions_are_matched_by_entity_not_substring(bot: Bot) -> None:
    group = -501
    other_bot = bot.tg.send_text(
        group, USER, f"@{BOT_USERNAME}_other please talk", chat_type="group"
    )
    assert other_bot["entities"][0]["length"] == len(f"@{BOT_USERNAME}_other")
    shouting = bot.tg.send_text(
        group, USER, f"hey @{BOT_USERNAME.upper()} speak up", chat_type="group"
    )
    await bot.reply_to(shouting, "sendVoice")
    await bot.no_reply_to(other_bot)


async def test_edited_messages_are_not_answered_again(bot: Bot) -> None:
    before = bot.service.counter.tts_requests
    command = bot.tg.send_command(USER, USER, "say", "Said once.")
    await bot.reply_to(command, "sendVoice")
    bot.tg.edit_text(command, "/say Said once, then edited.")
    text = bot.tg.send_text(USER, USER, "Plain text, said once.")
    await bot.reply_to(text, "sendVoice")
    bot.tg.edit_text(text, "Plain text, edited.")
    await bot.reply_to(command, "sendVoice")  # exactly one each, with the edits handled
    await bot.reply_to(text, "sendVoice")
    assert bot.service.counter.tts_requests == before + 2


async def test_private_plain_text_can_be_switched_off(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with running_bot(
        redis_client, open_storage, service, telegram_speak_private_messages=False
    ) as bot:
        plain = bot.tg.send_text(USER, USER, "Not a command.")
        help_ = await bot.reply_to(plain, "sendMessage")  # a private chat always gets an answer
        assert help_.params["text"] == HELP
        command = bot.tg.send_command(USER, USER, "say", "Still a command.")
        await bot.reply_to(command, "sendVoice")


async def test_text_that_only_looks_like_options_is_spoken(bot: Bot) -> None:
    message = bot.tg.send_command(USER, USER, "say", "Warning=loud noises\nahead, E=mc2.")
    reply = await bot.reply_to(message, "sendVoice")
    assert decoded_voice(reply)[0].duration > 1


async def test_commands_are_registered(bot: Bot) -> None:
    call = await bot.tg.wait_for("setMyCommands")
    names = [command["command"] for command in call.params["commands"]]
    assert names == ["start", "help", "say", "voice", "forget", "settings"]
    help_reply = await bot.reply_to(bot.tg.send_command(USER, USER, "help"), "sendMessage")
    assert "/say" in help_reply.params["text"]
    assert "how to erase it: docs/privacy.md" in help_reply.params["text"]  # /help links it


# --- bad input: one clear sentence each, nothing lost ------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("", "tell me what to say"),
        ("x" * 1001, "the limit is 1000"),
        ("exaggeration=9 Hello", "exaggeration must be a number from 0.25 to 2"),
        ("seed=abc Hello", "seed must be a whole number ≥ 0"),
        ("speed=2 Hello", "unknown option speed=; the options are exaggeration="),
        ("temprature=hot Hello", "unknown option temprature= (did you mean temperature=?)"),
    ],
)
async def test_bad_say_gets_a_clear_text_reply(bot: Bot, args: str, expected: str) -> None:
    before = bot.service.counter.tts_requests
    reply = await bot.reply_to(bot.tg.send_command(USER, USER, "say", args), "sendMessage")
    assert expected in reply.params["text"]
    assert bot.service.counter.tts_requests == before


async def test_text_with_nothing_to_say_gets_the_services_reason(bot: Bot) -> None:
    """Only the engine knows "..." makes no sound: the service's 422 reaches the user."""
    before = bot.service.counter.tts_requests
    reply = await bot.reply_to(bot.tg.send_command(USER, USER, "say", "..."), "sendMessage")
    assert reply.params["text"] == (
        "I can't say that: the text has nothing to say aloud; give some words, "
        "not only punctuation."
    )
    assert bot.service.counter.tts_requests == before + 1
    spoken = await bot.reply_to(bot.tg.send_command(USER, USER, "say", "Words."), "sendVoice")
    assert decoded_voice(spoken)[0].duration > 0.3


async def test_cloning_with_piper_says_it_needs_the_gpu_engine(bot: Bot) -> None:
    message = bot.tg.send_voice(USER, USER, clip("ogg_opus"), duration=3, caption="/say Hi")
    reply = await bot.reply_to(message, "sendMessage")
    assert "Voice cloning needs the GPU engine" in reply.params["text"]
    assert bot.tg.download_count() == 0  # refused before downloading anything


async def test_say_replying_to_a_voice_note_or_audio_clones_it(bot: Bot) -> None:
    note = bot.tg.send_voice(USER, USER, clip("ogg_opus"), duration=3)
    reply = await bot.reply_to(
        bot.tg.send_command(USER, USER, "say", "In that voice.", reply_to=note), "sendMessage"
    )
    assert "Voice cloning needs the GPU engine" in reply.params["text"]
    song = bot.tg.send_audio(USER, USER, clip("wav"), duration=3, file_name="me.wav")
    reply = await bot.reply_to(
        bot.tg.send_command(USER, USER, "say", "Like the song.", reply_to=song), "sendMessage"
    )
    assert "Voice cloning needs the GPU engine" in reply.params["text"]
    captioned = bot.tg.send_audio(
        USER, USER, clip("wav"), duration=3, file_name="me.wav", caption="/say Captioned."
    )
    reply = await bot.reply_to(captioned, "sendMessage")
    assert "Voice cloning needs the GPU engine" in reply.params["text"]
    assert bot.tg.download_count() == 0  # refused before downloading anything
    # The clips themselves, sent with no caption in a private chat, get what to do with them.
    for clip_message in (note, song):
        told = await bot.reply_to(clip_message, "sendMessage")
        assert told.params["text"] == VOICE_NOTE_HELP


async def test_voice_saved_from_an_audio_file(bot: Bot) -> None:
    await consented_before(bot.flow, "telegram", str(USER), clip("wav"))
    song = bot.tg.send_audio(USER, USER, clip("wav"), duration=3, file_name="me.wav")
    saved = await bot.reply_to(
        bot.tg.send_command(USER, USER, "voice", reply_to=song), "sendMessage"
    )
    assert "Saved" in saved.params["text"]
    assert bot.tg.download_count(song["audio"]["file_id"]) == 1


async def test_oversized_clip_is_refused_without_downloading(bot: Bot) -> None:
    message = bot.tg.send_voice(
        USER, USER, clip("ogg_opus"), duration=3, caption="/voice", file_size=15_000_000
    )
    reply = await bot.reply_to(message, "sendMessage")
    assert "15.0 MB; the limit is 10 MB" in reply.params["text"]
    assert bot.tg.download_count() == 0
    long_one = bot.tg.send_voice(USER, USER, clip("ogg_opus"), duration=95, caption="/voice")
    reply = await bot.reply_to(long_one, "sendMessage")
    assert "95 s long; the limit is 60 s" in reply.params["text"]
    assert bot.tg.download_count() == 0


async def test_corrupt_clip_gets_a_clear_reply(bot: Bot) -> None:
    message = bot.tg.send_voice(
        USER, USER, b"OggS" + b"\x00garbage" * 500, duration=3, caption="/voice"
    )
    reply = await bot.reply_to(message, "sendMessage")
    assert (
        "I can't use that voice clip: the voice clip could not be decoded" in reply.params["text"]
    )
    after = await bot.reply_to(
        bot.tg.send_command(USER, USER, "say", "Still serving."), "sendVoice"
    )
    assert after.files["voice"]


# --- voices ----------------------------------------------------------------------------------


async def test_save_use_default_and_forget_a_voice(bot: Bot) -> None:
    await consented_before(bot.flow, "telegram", str(USER), clip("ogg_opus"))
    note = bot.tg.send_voice(USER, USER, clip("ogg_opus"), duration=3)
    saved = await bot.reply_to(
        bot.tg.send_command(USER, USER, "voice", reply_to=note), "sendMessage"
    )
    assert "Saved" in saved.params["text"]
    assert "voice cloning is off right now" in saved.params["text"]
    assert bot.tg.download_count() == 1
    spoken = await bot.reply_to(bot.tg.send_command(USER, USER, "say", "My voice?"), "sendVoice")
    assert "voice cloning is off right now" in spoken.params["caption"]
    forgot = await bot.reply_to(bot.tg.send_command(USER, USER, "voice", "forget"), "sendMessage")
    assert "deleted your 1 saved voice clip(s)" in forgot.params["text"]
    again = await bot.reply_to(bot.tg.send_command(USER, USER, "voice", "forget"), "sendMessage")
    assert again.params["text"] == "There was nothing of yours to delete."
    back = await bot.reply_to(bot.tg.send_command(USER, USER, "voice", "default"), "sendMessage")
    assert back.params["text"] == "Back to the built-in voice."


# --- limits and faults -----------------------------------------------------------------------


async def test_rate_limit_says_when_to_try_again(
    redis_client: Redis, storage_settings: StorageSettings, service: Service
) -> None:
    limited = storage_settings.model_copy(update={"ratelimit_burst": 2, "ratelimit_per_minute": 6})
    async with running_bot(redis_client, limited, service) as bot:
        for n in range(2):
            await bot.reply_to(bot.tg.send_command(USER, USER, "say", f"Number {n}."), "sendVoice")
        refused = await bot.reply_to(
            bot.tg.send_command(USER, USER, "say", "One too many."), "sendMessage"
        )
        # 6 per minute: the next token is at most 10 s away.
        assert re.search(r"try again in (10|9|8) s\.", refused.params["text"]), refused.params
        other_user = await bot.reply_to(
            bot.tg.send_command(USER + 1, USER + 1, "say", "Someone else."), "sendVoice"
        )
        assert other_user.files["voice"]


async def test_voice_uploads_are_rate_limited_before_anything_is_downloaded(
    redis_client: Redis, storage_settings: StorageSettings, service: Service
) -> None:
    """Six /voice in a row with a burst of one: one download, one saved clip, and five
    users told to slow down without a byte fetched."""
    limited = storage_settings.model_copy(update={"ratelimit_burst": 1, "ratelimit_per_minute": 1})
    async with running_bot(redis_client, limited, service) as bot:
        await consented_before(bot.flow, "telegram", str(USER), clip("ogg_opus", seconds=2.0))
        sent = [
            bot.tg.send_voice(
                USER, USER, clip("ogg_opus", seconds=2.0 + n / 10), duration=2, caption="/voice"
            )
            for n in range(6)
        ]
        replies = [(await bot.reply_to(m, "sendMessage")).params["text"] for m in sent]
    assert sum(r.startswith("Saved") for r in replies) == 1, replies
    assert sum("going a bit fast" in r for r in replies) == 5, replies
    assert bot.tg.download_count() == 1
    saved = await redis_client.smembers(keys.user_voices("telegram", str(USER)))
    assert len(saved) == 1


async def test_tts_service_down_gets_a_reply_and_the_bot_keeps_serving(
    redis_client: Redis, open_storage: StorageSettings, piper_engine: PiperEngine
) -> None:
    with running_service(piper_engine) as doomed:
        pass  # stopped: its port now refuses connections
    async with running_bot(redis_client, open_storage, doomed) as bot:
        reply = await bot.reply_to(bot.tg.send_command(USER, USER, "say", "Anyone?"), "sendMessage")
        assert "voice engine is unavailable" in reply.params["text"]
        help_reply = await bot.reply_to(bot.tg.send_command(USER, USER, "help"), "sendMessage")
        assert "/say" in help_reply.params["text"]


async def test_redis_down_still_answers_uncached(service: Service) -> None:
    server = start_valkey()
    storage = make_settings(f"redis://127.0.0.1:{server.port}", ratelimit_enabled=False)
    redis = make_client(f"redis://127.0.0.1:{server.port}", storage)
    try:
        async with running_bot(redis, storage, service) as bot:
            await bot.reply_to(bot.tg.send_command(USER, USER, "say", "Before."), "sendVoice")
            server.stop()
            before = bot.service.counter.tts_requests
            for _ in range(2):
                reply = await bot.reply_to(
                    bot.tg.send_command(USER, USER, "say", "Redis is gone."), "sendVoice"
                )
                assert decoded_voice(reply)[0].duration > 0.5
            assert bot.service.counter.tts_requests == before + 2  # uncached, but answered
    finally:
        await redis.aclose()
        if server.is_running():
            server.stop()


async def test_stop_tells_users_of_messages_it_cannot_wait_for(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with (
        TelegramStandin() as tg,
        say_flow(redis_client, open_storage, service.url) as flow,
        telegram_app(tg, flow) as running,
    ):
        before = service.counter.tts_requests
        message = tg.send_command(USER, USER, "say", "A long answer. " * 60)
        async with asyncio.timeout(10):
            while True:  # the service has the request: synthesis is under way
                if service.counter.tts_requests > before:
                    break
                await asyncio.sleep(0.01)
        await asyncio.wait_for(stop_telegram(running.application, drain_timeout_s=0.1), 30)
        replies = [c for c in tg.calls() if answers(c, message)]
        assert [(c.method, c.params["text"]) for c in replies] == [("sendMessage", GAVE_UP)]
        # The synthesis itself outlives the message (others may share it): it still lands.
        await flow.drain()
        again = await flow.say(SayRequest("telegram", str(USER), str(USER), "A long answer. " * 60))
        assert again.from_cache


async def test_a_timed_out_voice_upload_gets_no_second_reply(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    # PTB gives up reading the answer after 5 s; Telegram may still have taken the voice note.
    bot.tg.delay_next("sendVoice", PTB_READ_TIMEOUT_S + 1)
    message = bot.tg.send_command(USER, USER, "say", "Slow upload.")
    with caplog.at_level(logging.WARNING, logger="bots"):
        reply = await bot.reply_to(message, "sendVoice")  # and no "something went wrong"
    assert reply.status is None  # the bot hung up before the stand-in answered
    assert "may have arrived, so no error reply follows" in caplog.text
    again = await bot.reply_to(bot.tg.send_command(USER, USER, "say", "Fast."), "sendVoice")
    assert again.ok


@pytest.mark.parametrize(
    ("status", "retry_after"), [(500, None), (502, None), (429, 1)], ids=["500", "502", "429"]
)
async def test_a_refused_voice_upload_is_sent_again_once_delivered(
    bot: Bot, status: int, retry_after: int | None
) -> None:
    """Telegram answered that it did not take the voice note: it is sent again, and the
    user gets exactly one voice note, no error sentence."""
    bot.tg.fail_next("sendVoice", status, retry_after=retry_after)
    message = bot.tg.send_command(USER, USER, "say", f"Refused once with {status}.")
    async with asyncio.timeout(30):
        await bot.settled()
    sends = bot.replies_to(message)
    assert [(c.method, c.status) for c in sends] == [("sendVoice", status), ("sendVoice", 200)]
    assert bot.flow.cache.metrics.cache_stores >= 1  # the answer was made once


async def test_a_voice_note_telegram_refuses_is_not_sent_again(bot: Bot) -> None:
    """A 400 is Telegram having read the request and refused it (PTB raises it as a kind
    of NetworkError): the same request again would fail alike, so it is not repeated."""
    bot.tg.fail_next("sendVoice", 400, "Bad Request: VOICE_MESSAGES_FORBIDDEN")
    message = bot.tg.send_command(USER, USER, "say", "Refused for good.")
    async with asyncio.timeout(30):
        await bot.settled()
    sends = [c for c in bot.tg.calls() if answers(c, message)]
    assert [(c.method, c.status) for c in sends] == [("sendVoice", 400), ("sendMessage", 200)]


async def test_every_private_message_gets_an_answer_and_groups_stay_quiet(bot: Bot) -> None:
    unknown = bot.tg.send_command(USER, USER, "nosuchcommand")
    assert (await bot.reply_to(unknown, "sendMessage")).params["text"] == HELP
    captioned = bot.tg.send_voice(USER, USER, clip("ogg_opus"), duration=2, caption="hi there")
    told = await bot.reply_to(captioned, "sendMessage")
    assert told.params["text"] == VOICE_NOTE_HELP
    group = -100
    await bot.no_reply_to(bot.tg.send_command(group, USER, "nosuchcommand", chat_type="group"))
    await bot.no_reply_to(
        bot.tg.send_voice(group, USER, clip("ogg_opus"), duration=2, chat_type="group")
    )
    await bot.no_reply_to(bot.tg.send_text(group, USER, "chatting", chat_type="group"))


async def test_unexpected_error_is_logged_once_with_context(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    note = bot.tg.send_voice(USER, USER, clip("ogg_opus"), duration=3)
    bot.tg.fail_next("getFile", 500)  # PTB raises NetworkError: not one of saybot's errors
    command = bot.tg.send_command(USER, USER, "voice", reply_to=note)
    with caplog.at_level(logging.WARNING):
        reply = await bot.reply_to(command, "sendMessage")
    assert reply.params["text"] == UNEXPECTED
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert f"telegram message {command['message_id']} in chat {USER}" in logged[0].getMessage()
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is NetworkError


async def test_local_mode_reads_clips_from_the_bot_api_servers_disk(
    redis_client: Redis, open_storage: StorageSettings, service: Service, tmp_path: Path
) -> None:
    local_api = TelegramStandin(privacy_mode=False, local_files_dir=tmp_path)
    async with running_bot(
        redis_client, open_storage, service, local_api, telegram_local_mode=True
    ) as bot:
        await consented_before(bot.flow, "telegram", str(USER), clip("ogg_opus"))
        note = bot.tg.send_voice(USER, USER, clip("ogg_opus"), duration=3)
        saved = await bot.reply_to(
            bot.tg.send_command(USER, USER, "voice", reply_to=note), "sendMessage"
        )
        assert "Saved" in saved.params["text"]
        assert bot.tg.getfile_count == 1 and bot.tg.download_count() == 0  # read from disk


def test_local_mode_setting_reaches_the_bot() -> None:
    settings = bot_settings(telegram_bot_token=SecretStr(TOKEN), telegram_local_mode=True)
    assert build_application(settings, cast(SayFlow, None)).bot.local_mode is True
    default = bot_settings(telegram_bot_token=SecretStr(TOKEN))
    assert build_application(default, cast(SayFlow, None)).bot.local_mode is False


async def test_webhook_mode_takes_updates_posted_by_telegram(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    port = free_port()
    public_hook = "https://bot.example.org/telegram/hook"  # what Telegram is told (TLS at a proxy)
    local_hook = f"http://127.0.0.1:{port}/telegram/hook"  # where the proxy forwards to
    secret = "hook-secret-123"
    async with (
        TelegramStandin() as tg,
        say_flow(redis_client, open_storage, service.url) as flow,
        telegram_app(
            tg,
            flow,
            telegram_webhook_url=public_hook,
            telegram_webhook_port=port,
            telegram_webhook_secret=SecretStr(secret),
        ),
        httpx.AsyncClient() as http,
    ):
        registered = await tg.wait_for("setWebhook")
        assert registered.params["url"] == public_hook
        assert registered.params["secret_token"] == secret
        message = tg.send_command(USER, USER, "say", "Delivered by webhook.")
        update = {"update_id": 5_000, "message": message}
        forged = await http.post(
            local_hook, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "x"}
        )
        assert forged.status_code == 403
        delivered = await http.post(
            local_hook, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}
        )
        assert delivered.status_code == 200
        reply = await tg.wait_for("sendVoice", timeout=30)
        assert reply.params["reply_parameters"]["message_id"] == message["message_id"]
        assert not tg.calls("getUpdates")


# --- never a wrong answer: what is not audio, what is not speech -----------------------------


async def test_a_200_that_is_not_audio_is_never_sent_nor_cached(
    redis_client: Redis, open_storage: StorageSettings, piper_engine: PiperEngine
) -> None:
    """A captive portal answers 200 with its HTML page: the user is told the engine is
    unavailable (no voice note of HTML), nothing is cached, and once the way to the
    service is clear the same text is spoken."""
    portal = CannedAnswers(
        Canned(200, "text/html", b"<html><body>Sign in to the Wi-Fi first</body></html>")
    )
    with running_service(piper_engine, wrap=portal.around) as service:
        async with running_bot(redis_client, open_storage, service) as bot:
            text = "Is this really audio?"
            refused = await bot.reply_to(
                bot.tg.send_command(USER, USER, "say", text), "sendMessage"
            )
            assert refused.params["text"] == UNAVAILABLE
            assert (portal.served, service.counter.tts_requests) == (1, 0)
            assert await redis_client.keys("saybot:v1:audio:*") == []
            spoken = await bot.reply_to(bot.tg.send_command(USER, USER, "say", text), "sendVoice")
            assert decoded_voice(spoken)[0].duration > 0.5
            assert service.counter.tts_requests == 1
            assert len(await redis_client.keys("saybot:v1:audio:*")) == 1


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            Canned(
                500,
                "application/json",
                b'{"error": {"code": "internal_error", '
                b'"message": "the service hit an unexpected error"}}',
            ),
            UNEXPECTED,
        ),
        (Canned(502, "text/html", b"<html><h1>502 Bad Gateway</h1></html>"), UNAVAILABLE),
    ],
    ids=["the-services-own-500", "a-proxys-502-page"],
)
async def test_a_failing_service_and_an_unreachable_one_read_differently(
    redis_client: Redis,
    open_storage: StorageSettings,
    piper_engine: PiperEngine,
    answer: Canned,
    expected: str,
) -> None:
    failing = CannedAnswers(answer)
    with running_service(piper_engine, wrap=failing.around) as service:
        async with running_bot(redis_client, open_storage, service) as bot:
            reply = await bot.reply_to(
                bot.tg.send_command(USER, USER, "say", "Who failed here?"), "sendMessage"
            )
            assert reply.params["text"] == expected
            assert failing.served == 1
            again = await bot.reply_to(
                bot.tg.send_command(USER, USER, "say", "Who failed here?"), "sendVoice"
            )
            assert decoded_voice(again)[0].duration > 0.5


async def test_control_characters_are_not_spoken_and_alone_are_refused(bot: Bot) -> None:
    """A NUL used to reach Piper, which raised: "unavailable" for text it could speak."""
    spoken = await bot.reply_to(
        bot.tg.send_command(USER, USER, "say", "\x00\x01\x02 control chars"), "sendVoice"
    )
    assert decoded_voice(spoken)[0].duration > 0.3
    before = bot.service.counter.tts_requests
    refused = await bot.reply_to(bot.tg.send_command(USER, USER, "say", "\x00\x01"), "sendMessage")
    assert refused.params["text"] == (
        "I can't say that: text has nothing to say in it (only control characters)."
    )
    assert bot.service.counter.tts_requests == before  # refused before asking the service


# --- never a late answer: a clip that does not arrive ----------------------------------------


async def test_a_clip_download_that_hangs_is_answered_at_once(
    redis_client: Redis, open_storage: StorageSettings, piper_engine: PiperEngine
) -> None:
    """The file host hangs (for ten minutes): the user is asked to send the clip again as
    soon as CLIP_DOWNLOAD_TIMEOUT_S is up, and the next request is served."""
    limits = bot_settings(clip_download_timeout_s=1).clip_limits()
    assert limits.download_timeout_s == 1
    with running_service(CloningPiper(piper_engine)) as cloning:
        async with running_bot(redis_client, open_storage, cloning, clip_limits=limits) as bot:
            bot.tg.delay_next(DOWNLOAD, 600)
            hung = bot.tg.send_voice(
                USER, USER, clip("ogg_opus"), duration=3, caption="/say In my own voice."
            )
            reply = await bot.reply_to(hung, "sendMessage", timeout=20)  # not after 600 s
            assert re.fullmatch(
                r"I couldn't download your clip \(.+\) — please send it again\.",
                reply.params["text"],
            ), reply.params["text"]
            assert cloning.counter.tts_requests == 0 and bot.tg.download_count() == 0
            await consented_before(bot.flow, "telegram", str(USER), clip("ogg_opus"))
            again = bot.tg.send_voice(
                USER, USER, clip("ogg_opus"), duration=3, caption="/say In my own voice."
            )
            spoken = await bot.reply_to(again, "sendVoice")
            assert decoded_voice(spoken)[0].duration > 0.5
            assert bot.tg.download_count() == 1
