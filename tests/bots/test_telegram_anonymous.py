"""Anonymous group admins (issue #13): Telegram sends all of them, in every group, as one
user (GroupAnonymousBot, with ``sender_chat`` = the group). saybot counts them as their
group: no saved voice (one admin could otherwise replace or delete another's, across groups),
and one rate limit per group."""

from __future__ import annotations

import re

from redis.asyncio import Redis

from bots.telegram_bot.handlers import NO_VOICE_AS_A_CHAT
from storage.settings import StorageSettings
from tests.bots.harness import Service, consented_before
from tests.bots.test_telegram_bot import running_bot
from tests.standins.telegram_api import GROUP_ANONYMOUS_BOT_ID as ANONYMOUS
from tests.tts_service.audio_samples import clip

GROUP = -1001
OTHER_GROUP = -1002
USER = 1001


async def test_anonymous_admins_cannot_save_or_forget_a_voice(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with running_bot(redis_client, open_storage, service) as bot:
        tg = bot.tg
        note = tg.send_voice(GROUP, ANONYMOUS, clip("ogg_opus"), duration=3, chat_type="group")
        assert note["sender_chat"]["id"] == GROUP
        for args in ("", "default", "forget"):
            command = tg.send_command(
                GROUP, ANONYMOUS, "voice", args, chat_type="group", reply_to=note
            )
            refused = await bot.reply_to(command, "sendMessage")
            assert refused.params["text"] == NO_VOICE_AS_A_CHAT
        assert tg.download_count() == 0
        voices = bot.flow.voices
        for who in (GROUP, ANONYMOUS):
            assert await voices.default_voice("telegram", str(who)) is None

        # A person in the group keeps their own voice, whatever anonymous admins send.
        await consented_before(bot.flow, "telegram", str(USER), clip("ogg_opus"))
        mine = tg.send_voice(GROUP, USER, clip("ogg_opus"), duration=3, chat_type="group")
        saved = await bot.reply_to(
            tg.send_command(GROUP, USER, "voice", chat_type="group", reply_to=mine), "sendMessage"
        )
        assert "Saved" in saved.params["text"]
        forget = tg.send_command(OTHER_GROUP, ANONYMOUS, "voice", "forget", chat_type="group")
        assert (await bot.reply_to(forget, "sendMessage")).params["text"] == NO_VOICE_AS_A_CHAT
        assert await voices.default_voice("telegram", str(USER)) is not None

        spoken = await bot.reply_to(
            tg.send_command(GROUP, ANONYMOUS, "say", "Speaking for the group.", chat_type="group"),
            "sendVoice",
        )
        assert "built-in voice" in spoken.params["caption"]


async def test_anonymous_admins_share_their_groups_rate_limit(
    redis_client: Redis, storage_settings: StorageSettings, service: Service
) -> None:
    limited = storage_settings.model_copy(update={"ratelimit_burst": 1, "ratelimit_per_minute": 1})
    async with running_bot(redis_client, limited, service) as bot:
        tg = bot.tg

        def say(chat: int, sender: int, text: str) -> dict[str, object]:
            return tg.send_command(chat, sender, "say", text, chat_type="group")

        await bot.reply_to(say(GROUP, ANONYMOUS, "First admin."), "sendVoice")
        refused = await bot.reply_to(say(GROUP, ANONYMOUS, "Second admin."), "sendMessage")
        assert re.search(r"going a bit fast", refused.params["text"]), refused.params
        # Another group's anonymous admins, and a person in this group, have their own.
        await bot.reply_to(say(OTHER_GROUP, ANONYMOUS, "Other group."), "sendVoice")
        await bot.reply_to(say(GROUP, USER, "A person."), "sendVoice")
