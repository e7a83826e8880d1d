"""The real python-telegram-bot application of saybot against a Bot API stand-in.

Full path: stand-in → PTB → SayFlow → Valkey → real TTS service with Piper.
Assertions are on what the stand-in received.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import soundfile as sf
from pydantic import SecretStr
from redis.asyncio import Redis

from bots.say import SayFlow
from bots.settings import BotSettings
from storage.redis import make_client
from storage.settings import StorageSettings
from tests.bots.harness import Service, running_service, say_flow, telegram_app
from tests.redis_fixtures import free_port, make_settings, start_valkey
from tests.standins.telegram_api import BOT_USERNAME, Call, TelegramStandin
from tests.tts_service.audio_samples import clip
from tts_service.engines.piper import PiperEngine

USER = 1001


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture(scope="module")
def service(piper_engine: PiperEngine) -> Iterator[Service]:
    with running_service(piper_engine) as running:
        yield running


@dataclass
class Bot:
    tg: TelegramStandin
    flow: SayFlow
    service: Service
    settings: BotSettings

    async def reply_to(
        self,
        message: dict[str, Any],
        method: str,
        timeout: float = 30,  # noqa: ASYNC109 - one bound per awaited reply reads best here
    ) -> Call:
        """The bot's reply (``method``) quoting ``message``; fails if another kind came first."""
        chat_id, message_id = message["chat"]["id"], message["message_id"]

        def answers(call: Call) -> bool:
            params = call.params
            target = (params.get("reply_parameters") or {}).get("message_id") or params.get(
                "reply_to_message_id"
            )
            return params.get("chat_id") == chat_id and target == message_id

        reply = await asyncio.wait_for(self._first_reply(answers), timeout)
        assert reply.method == method, f"expected {method}, got {reply.method}: {reply.params}"
        return reply

    async def _first_reply(self, answers: Any) -> Call:
        while True:
            for call in self.tg.calls():
                sent = call.method in ("sendVoice", "sendMessage", "sendAudio", "sendDocument")
                if sent and call.done and answers(call):
                    return call
            await asyncio.sleep(0.02)

    def replies(self) -> list[Call]:
        return [c for c in self.tg.calls() if c.method in ("sendVoice", "sendMessage")]


@contextlib.asynccontextmanager
async def running_bot(
    redis: Redis, storage: StorageSettings, service: Service, **overrides: Any
) -> AsyncIterator[Bot]:
    async with (
        TelegramStandin(privacy_mode=False) as tg,
        say_flow(redis, storage, service.url) as flow,
        telegram_app(tg, flow, **overrides) as settings,
    ):
        yield Bot(tg, flow, service, settings)


@pytest.fixture
def open_storage(storage_settings: StorageSettings) -> StorageSettings:
    """Rate limiting off: most tests send several requests as one user."""
    return storage_settings.model_copy(update={"ratelimit_enabled": False})


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
    assert first.files["voice"] == second.files["voice"]


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
    assert not any(
        (c.params.get("reply_parameters") or {}).get("message_id") == ignored["message_id"]
        for c in bot.replies()
    )


async def test_commands_are_registered(bot: Bot) -> None:
    call = await bot.tg.wait_for("setMyCommands")
    names = [command["command"] for command in call.params["commands"]]
    assert names == ["start", "help", "say", "voice"]
    help_reply = await bot.reply_to(bot.tg.send_command(USER, USER, "help"), "sendMessage")
    assert "/say" in help_reply.params["text"]


# --- bad input: one clear sentence each, nothing lost ------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("", "tell me what to say"),
        ("x" * 1001, "the limit is 1000"),
        ("exaggeration=9 Hello", "exaggeration must be a number from 0.25 to 2"),
        ("seed=abc Hello", "seed must be a whole number ≥ 0"),
        ("speed=2 Hello", "unknown option speed=; the options are exaggeration="),
    ],
)
async def test_bad_say_gets_a_clear_text_reply(bot: Bot, args: str, expected: str) -> None:
    before = bot.service.counter.tts_requests
    reply = await bot.reply_to(bot.tg.send_command(USER, USER, "say", args), "sendMessage")
    assert expected in reply.params["text"]
    assert bot.service.counter.tts_requests == before


async def test_cloning_with_piper_says_it_needs_the_gpu_engine(bot: Bot) -> None:
    message = bot.tg.send_voice(USER, USER, clip("ogg_opus"), duration=3, caption="/say Hi")
    reply = await bot.reply_to(message, "sendMessage")
    assert "Voice cloning needs the GPU engine" in reply.params["text"]
    assert bot.tg.download_count() == 0  # refused before downloading anything


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
    assert "deleted your 1 voice clip(s)" in forgot.params["text"]
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
