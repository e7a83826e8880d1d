"""Community and operator controls through saybot's real python-telegram-bot application:
``/settings`` in groups (admins checked with ``getChatMember``), blocked words, blocked
users and a GPU-time quota.

Full path: Bot API stand-in → PTB → SayFlow → Valkey → a real TTS service. Assertions are on
what the stand-in received.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from bots.community import OperatorRules
from bots.quotas import QuotaLimits
from bots.telegram_bot.community import FOR_GROUPS
from storage.settings import StorageSettings
from tests.bots.harness import RentedGPU, Service, running_service, say_flow, telegram_app
from tests.bots.test_telegram_bot import Bot
from tests.standins.telegram_api import GROUP_ANONYMOUS_BOT_ID as ANONYMOUS
from tests.standins.telegram_api import TelegramStandin
from tests.tts_service.audio_samples import clip
from tts_service.engines.piper import PiperEngine

GROUP = -5005
ADMIN, OWNER, MEMBER = 2001, 2002, 2003
NOT_AN_ADMIN = "Only this group's admins can change its settings."


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture(scope="module")
def gpu(piper_engine: PiperEngine) -> Iterator[Service]:
    with running_service(RentedGPU(piper_engine)) as running:
        yield running


@contextlib.asynccontextmanager
async def group_bot(
    redis: Redis, storage: StorageSettings, service: Service, operator: OperatorRules | None = None
) -> AsyncIterator[Bot]:
    async with (
        TelegramStandin(privacy_mode=False) as tg,
        say_flow(redis, storage, service.url, operator=operator) as flow,
        telegram_app(tg, flow, track_updates=True) as running,
    ):
        tg.set_member_status(GROUP, ADMIN, "administrator")
        tg.set_member_status(GROUP, OWNER, "creator")
        yield Bot(tg, flow, service, running.settings, running.handled)


async def settings(bot: Bot, user: int, args: str = "", chat: int = GROUP) -> str:
    """The bot's one text reply to ``/settings args``."""
    chat_type = "private" if chat > 0 else "group"
    message = bot.tg.send_command(chat, user, "settings", args, chat_type=chat_type)
    reply = await bot.reply_to(message, "sendMessage")
    return str(reply.params["text"])


def say(bot: Bot, user: int, text: str, chat: int = GROUP) -> dict[str, Any]:
    return bot.tg.send_command(
        chat, user, "say", text, chat_type="private" if chat > 0 else "group"
    )


async def test_anyone_sees_the_settings_and_only_admins_change_them(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with group_bot(redis_client, open_storage, service) as bot:
        shown = await settings(bot, MEMBER)
        assert shown.startswith("Settings here:\n• voice cloning: on\n• saved voices: on\n")
        assert "• longest text: 1000 characters" in shown and "/settings cloning off" in shown
        assert await settings(bot, MEMBER, "cloning off") == NOT_AN_ADMIN
        member_checks = bot.tg.calls("getChatMember")
        assert [(c.params["chat_id"], c.params["user_id"]) for c in member_checks] == [
            (GROUP, MEMBER)
        ]
        assert "• voice cloning: on" in await settings(bot, MEMBER)  # nothing changed

        changed = await settings(bot, ADMIN, "cloning off")
        assert "• voice cloning: off" in changed and "• saved voices: off" in changed
        assert "• longest text: 300 characters" in await settings(bot, OWNER, "max_text 300")
        # An anonymous admin posts as the group itself: an admin, with nobody to look up.
        before = len(bot.tg.calls("getChatMember"))
        rate = await settings(bot, ANONYMOUS, "rate 3")
        assert "• requests per person: 3 a minute" in rate
        assert len(bot.tg.calls("getChatMember")) == before
        assert await settings(bot, ADMIN, "rate fast") == (
            "I can't change that: rate is a whole number of requests a minute per user from 1 "
            "to 60 (0 or off: the bot's own), e.g. /settings rate 3."
        )
        assert await settings(bot, MEMBER, chat=MEMBER) == FOR_GROUPS
        assert await settings(bot, MEMBER, "cloning off", chat=MEMBER) == FOR_GROUPS

        # Cloning is off in the group: a voice note is refused before it is downloaded.
        note = bot.tg.send_voice(GROUP, MEMBER, clip("ogg_opus"), duration=3, chat_type="group")
        refused = await bot.reply_to(
            bot.tg.send_command(GROUP, MEMBER, "say", "Hi", chat_type="group", reply_to=note),
            "sendMessage",
        )
        assert refused.params["text"] == "The admins here have turned voice cloning off."
        assert bot.tg.download_count() == 0


async def test_a_blocked_word_is_refused_in_its_group_only(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with group_bot(redis_client, open_storage, service) as bot:
        blocked = await settings(bot, ADMIN, 'block darn "oh heck"')
        assert "• blocked words: darn, oh heck" in blocked
        refused = await bot.reply_to(say(bot, MEMBER, "Well, DÁRN it."), "sendMessage")
        assert refused.params["text"] == "I won't say that: it has a word that is blocked here."
        await bot.reply_to(say(bot, MEMBER, "Darned socks are fine."), "sendVoice")
        await bot.reply_to(say(bot, MEMBER, "Well, darn it.", chat=MEMBER), "sendVoice")
        assert "• blocked words: oh heck" in await settings(bot, ADMIN, "unblock darn")
        await bot.reply_to(say(bot, MEMBER, "Well, DÁRN it."), "sendVoice")


async def test_a_blocked_user_gets_one_sentence_and_nothing_is_downloaded(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    operator = OperatorRules(blocked_users=frozenset({f"telegram:{MEMBER}"}))
    async with group_bot(redis_client, open_storage, service, operator) as bot:
        note = bot.tg.send_voice(GROUP, MEMBER, clip("ogg_opus"), duration=3, chat_type="group")
        for message in (
            bot.tg.send_command(GROUP, MEMBER, "say", "Hi", chat_type="group", reply_to=note),
            bot.tg.send_command(GROUP, MEMBER, "voice", chat_type="group", reply_to=note),
            bot.tg.send_command(GROUP, MEMBER, "settings", chat_type="group"),
        ):
            refused = await bot.reply_to(message, "sendMessage")
            assert refused.params["text"] == "This bot doesn't take requests from you."
        assert bot.tg.download_count() == 0 and not bot.tg.calls("sendVoice")
        await bot.reply_to(say(bot, ADMIN, "Everyone else is fine."), "sendVoice")


async def test_past_the_daily_quota_only_cached_audio_answers(
    redis_client: Redis, open_storage: StorageSettings, gpu: Service
) -> None:
    operator = OperatorRules(quotas=QuotaLimits(user_s_per_day=0.0001))
    async with group_bot(redis_client, open_storage, gpu, operator) as bot:
        first = await bot.reply_to(say(bot, MEMBER, "Spend the GPU time."), "sendVoice")
        again = await bot.reply_to(say(bot, MEMBER, "Spend the GPU time."), "sendVoice")
        assert again.files["voice"] == first.files["voice"]
        refused = await bot.reply_to(say(bot, MEMBER, "Something new."), "sendMessage")
        text = refused.params["text"]
        assert text.startswith(
            "You've used today's voice-engine time — I can still answer with audio I've made "
            "before, and the limit resets at midnight UTC (in "
        )
        assert gpu.counter.tts_requests >= 1
