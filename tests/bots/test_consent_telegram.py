"""Cloning only with the speaker's say-so, through saybot's real python-telegram-bot
application: whose voice note it is, the one-time question with its two buttons, and
"forget everything of mine".

Full path: Bot API stand-in → PTB → SayFlow → Valkey → a real TTS service whose engine clones
(Piper behind a cloning engine's face). Assertions are on what the stand-in received and on
what Valkey holds.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from bots.chosen_voice import prepare_voice
from bots.consent import CONSENT_WORDING_VERSION
from bots.messages import (
    AI_MARKER,
    CONSENT_DECLINED,
    CONSENT_NO,
    CONSENT_PROMPT,
    CONSENT_RECORDED,
    CONSENT_YES,
)
from storage import keys
from storage.settings import StorageSettings
from tests.bots.harness import Service, running_service
from tests.bots.test_telegram_bot import Bot, running_bot
from tests.standins.telegram_api import Call
from tests.tts_service.audio_samples import clip
from tests.tts_service.engine_wrappers import CloningPiper
from tts_service.engines.piper import PiperEngine

ALICE, BOB = 1001, 1002
GROUP = -4242
NOTHING_TO_DELETE = "There was nothing of yours to delete."
NOT_THE_SENDER = "I won't clone that: only the person who sent the clip can answer that."
LAPSED = "That question has lapsed and its clip is gone — please send it again."
SOMEONE_ELSES = (
    "I won't clone that: that voice note was sent by someone else; I only clone a voice from "
    "a clip its owner sends."
)
FORWARDED = (
    "I won't clone that: that voice note was forwarded; send a recording of your own voice "
    "yourself."
)


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture(scope="module")
def cloning_service(piper_engine: PiperEngine) -> Iterator[Service]:
    with running_service(CloningPiper(piper_engine)) as running:
        yield running


@pytest.fixture
async def bot(
    redis_client: Redis, open_storage: StorageSettings, cloning_service: Service
) -> AsyncIterator[Bot]:
    async with running_bot(redis_client, open_storage, cloning_service) as running:
        yield running


# --- helpers ---------------------------------------------------------------------------------


async def answers_to(bot: Bot, message: dict[str, Any]) -> list[Call]:
    """Every reply to ``message``, once everything queued so far has been handled."""
    await bot.settled()
    return bot.replies_to(message)


async def question_for(bot: Bot, message: dict[str, Any]) -> dict[str, Any]:
    """The one reply to ``message``, which must be the consent question with its two buttons;
    returns the question's message as the bot sent it."""
    replies = await answers_to(bot, message)
    assert [(c.method, c.params.get("text")) for c in replies] == [
        ("sendMessage", CONSENT_PROMPT)
    ], [c.params for c in replies]
    prompt: dict[str, Any] = replies[0].result
    (row,) = prompt["reply_markup"]["inline_keyboard"]
    assert [button["text"] for button in row] == [CONSENT_YES, CONSENT_NO]
    yes, no = (button["callback_data"] for button in row)
    pending = re.fullmatch(r"consent:([\w-]+):yes", yes)
    assert pending is not None and no == f"consent:{pending[1]}:no", row
    return prompt


def button(prompt: dict[str, Any], label: str) -> str:
    """The callback data of the question's button labelled ``label``."""
    (row,) = prompt["reply_markup"]["inline_keyboard"]
    return next(str(b["callback_data"]) for b in row if b["text"] == label)


async def press(
    bot: Bot, prompt: dict[str, Any], label: str, user_id: int, **kwargs: Any
) -> dict[str, Any]:
    """``user_id`` presses the button labelled ``label`` under ``prompt``; returns the
    query's answer once saybot has finished with the press."""
    chat = prompt["chat"]["id"]
    query = bot.tg.press_button(chat, user_id, prompt, button(prompt, label), **kwargs)
    await bot.settled()
    return bot.tg.callback_answers[query["id"]]


def now_shown(bot: Bot, message: dict[str, Any]) -> dict[str, Any]:
    """A message of the chat as it is now (after the bot's edits)."""
    chat, message_id = message["chat"]["id"], message["message_id"]
    return next(m for m in bot.tg.chat_history(chat) if m["message_id"] == message_id)


async def voice_keys(redis: Redis) -> list[str]:
    """Every key of a voice (clip, owners, audio made with it), tombstones aside."""
    found = [keys.as_text(k) async for k in redis.scan_iter(match=f"{keys.PREFIX}voice:*")]
    return sorted(k for k in found if not k.endswith(":forgotten"))


async def user_keys(redis: Redis, user_id: int) -> list[str]:
    """The keys of one Telegram user: voices, default, attached voices, consents."""
    pattern = f"{keys.PREFIX}user:telegram:{user_id}:*"
    return sorted([keys.as_text(k) async for k in redis.scan_iter(match=pattern)])


async def usage_fields(redis: Redis, user_id: int) -> list[str]:
    """The user's per-user usage counts, on every day kept."""
    found = []
    async for key in redis.scan_iter(match=keys.usage_users("*")):
        fields = [keys.as_text(f) for f in await redis.hkeys(key)]
        found += [f for f in fields if f.startswith(f"telegram:{user_id}|")]
    return found


def without_buttons(message: dict[str, Any]) -> bool:
    return "reply_markup" not in message


# --- your own voice only -----------------------------------------------------------------------


async def test_only_a_voice_note_its_sender_sent_is_taken(bot: Bot, redis_client: Redis) -> None:
    """Alice replies /voice to Bob's voice note, then to one she forwarded: each refused,
    saying why, nothing downloaded; neither has anything stored afterwards."""
    tg = bot.tg
    before = bot.service.counter.tts_requests
    bob = tg.set_user(BOB, first_name="Bob")
    bobs = tg.send_voice(GROUP, BOB, clip("ogg_opus"), duration=3, chat_type="group")
    taken = tg.send_command(GROUP, ALICE, "voice", chat_type="group", reply_to=bobs)
    (refused,) = await answers_to(bot, taken)
    assert (refused.method, refused.params["text"]) == ("sendMessage", SOMEONE_ELSES)

    origin = {"type": "user", "date": int(time.time()) - 60, "sender_user": bob}
    forwarded = tg.send_voice(
        GROUP, ALICE, clip("ogg_opus"), duration=3, chat_type="group", forward_origin=origin
    )
    assert forwarded["from"]["id"] == ALICE  # sent by Alice, but Bob's recording
    taken = tg.send_command(GROUP, ALICE, "voice", chat_type="group", reply_to=forwarded)
    (refused,) = await answers_to(bot, taken)
    assert (refused.method, refused.params["text"]) == ("sendMessage", FORWARDED)
    spoken = tg.send_command(GROUP, ALICE, "say", "In his voice.", chat_type="group", reply_to=bobs)
    (refused,) = await answers_to(bot, spoken)
    assert (refused.method, refused.params["text"]) == ("sendMessage", SOMEONE_ELSES)

    assert (tg.getfile_count, tg.download_count()) == (0, 0)  # never even looked at
    assert bot.service.counter.tts_requests == before
    forget = tg.send_command(GROUP, BOB, "forget", chat_type="group")
    (forgot,) = await answers_to(bot, forget)
    assert forgot.params["text"] == NOTHING_TO_DELETE
    assert await voice_keys(redis_client) == []
    assert await user_keys(redis_client, ALICE) == []
    status = tg.send_command(GROUP, ALICE, "voice", chat_type="group")
    (shown,) = await answers_to(bot, status)
    assert shown.params["text"].startswith("/say speaks in the built-in voice.\n")
    assert "You have confirmed no recording as your own voice." in shown.params["text"]


# --- the question and its buttons --------------------------------------------------------------


async def test_yes_saves_the_voice_and_the_same_recording_is_not_asked_about_again(
    bot: Bot, redis_client: Redis
) -> None:
    tg = bot.tg
    recording = clip("ogg_opus")
    voice_id = (await prepare_voice(recording)).voice_id
    note = tg.send_voice(ALICE, ALICE, recording, duration=3)
    command = tg.send_command(ALICE, ALICE, "voice", reply_to=note)
    prompt = await question_for(bot, command)
    assert prompt["reply_to_message"]["message_id"] == command["message_id"]
    assert tg.download_count() == 1  # fetched to know which recording it is, then only held
    assert await voice_keys(redis_client) == []
    assert await user_keys(redis_client, ALICE) == []

    answer = await press(bot, prompt, CONSENT_YES, ALICE)
    assert not answer.get("show_alert") and not answer.get("text")
    shown = now_shown(bot, prompt)
    assert shown["text"] == CONSENT_RECORDED and without_buttons(shown)
    question, saved = await answers_to(bot, command)
    assert question.seq < saved.seq and saved.params["text"].startswith("Saved: /say now speaks")
    consents = await redis_client.hgetall(keys.user_consents("telegram", str(ALICE)))
    assert list(consents) == [voice_id.encode()]
    record = json.loads(consents[voice_id.encode()])
    assert record["wording"] == CONSENT_WORDING_VERSION == 1
    assert abs(record["at"] - time.time()) < 60
    assert await redis_client.get(keys.user_default("telegram", str(ALICE))) == voice_id.encode()

    status = tg.send_command(ALICE, ALICE, "voice")
    (shown_status,) = await answers_to(bot, status)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert shown_status.params["text"].splitlines()[:2] == [
        f"/say speaks in your saved voice ({voice_id[:8]}…).",
        f"You confirmed 1 recording(s) as your own voice; the last on {today} (wording version 1).",
    ]

    again = tg.send_voice(ALICE, ALICE, recording, duration=3, caption="/voice")
    (at_once,) = await answers_to(bot, again)  # no question this time
    assert at_once.params["text"].startswith("Saved: /say now speaks")
    assert len(await redis_client.hkeys(keys.user_consents("telegram", str(ALICE)))) == 1


async def test_say_with_your_own_voice_note_speaks_in_it_once_you_confirm(bot: Bot) -> None:
    before = bot.service.counter.tts_requests
    captioned = bot.tg.send_voice(
        ALICE, ALICE, clip("ogg_opus"), duration=3, caption="/say Hello in my own voice."
    )
    prompt = await question_for(bot, captioned)
    assert bot.service.counter.tts_requests == before  # nothing cloned before the answer
    await press(bot, prompt, CONSENT_YES, ALICE)
    assert now_shown(bot, prompt)["text"] == CONSENT_RECORDED
    _, spoken = await answers_to(bot, captioned)
    assert spoken.method == "sendVoice" and spoken.files["voice"]
    assert spoken.params["caption"].startswith(AI_MARKER)
    assert "the voice you sent" in spoken.params["caption"]
    assert bot.service.counter.tts_requests == before + 1


async def test_no_deletes_the_clip_and_stores_nothing(bot: Bot, redis_client: Redis) -> None:
    before = bot.service.counter.tts_requests
    note = bot.tg.send_voice(ALICE, ALICE, clip("ogg_opus"), duration=3, caption="/voice")
    said = bot.tg.send_voice(ALICE, ALICE, clip("ogg_opus", 2.5), duration=3, caption="/say Hi.")
    for message in (note, said):
        prompt = await question_for(bot, message)
        answer = await press(bot, prompt, CONSENT_NO, ALICE)
        assert not answer.get("show_alert")
        shown = now_shown(bot, prompt)
        assert shown["text"] == CONSENT_DECLINED and without_buttons(shown)
        assert len(await answers_to(bot, message)) == 1  # the question, nothing after it
    assert await voice_keys(redis_client) == []
    assert await user_keys(redis_client, ALICE) == []
    assert bot.service.counter.tts_requests == before


async def test_only_the_sender_can_answer_and_the_question_stays_for_them(
    bot: Bot, redis_client: Redis
) -> None:
    tg = bot.tg
    mine = tg.send_voice(GROUP, ALICE, clip("ogg_opus"), duration=3, chat_type="group")
    command = tg.send_command(GROUP, ALICE, "voice", chat_type="group", reply_to=mine)
    prompt = await question_for(bot, command)
    for label in (CONSENT_YES, CONSENT_NO):
        answer = await press(bot, prompt, label, BOB, chat_type="group")
        assert (answer.get("show_alert"), answer.get("text")) == (True, NOT_THE_SENDER)
    shown = now_shown(bot, prompt)
    assert shown["text"] == CONSENT_PROMPT and shown["reply_markup"] == prompt["reply_markup"]
    assert len(await answers_to(bot, command)) == 1
    assert await user_keys(redis_client, BOB) == []
    assert await user_keys(redis_client, ALICE) == []

    await press(bot, prompt, CONSENT_YES, ALICE, chat_type="group")
    assert now_shown(bot, prompt)["text"] == CONSENT_RECORDED
    _, saved = await answers_to(bot, command)
    assert saved.params["text"].startswith("Saved: ")
    assert await redis_client.hlen(keys.user_consents("telegram", str(ALICE))) == 1


async def test_a_button_pressed_again_gets_the_lapsed_sentence(bot: Bot) -> None:
    note = bot.tg.send_voice(ALICE, ALICE, clip("ogg_opus"), duration=3, caption="/voice")
    prompt = await question_for(bot, note)
    first = await press(bot, prompt, CONSENT_YES, ALICE)
    assert not first.get("show_alert")
    edits = bot.tg.calls("editMessageText")
    # A client still showing the old keyboard sends its data again (the stand-in lets it).
    for label in (CONSENT_YES, CONSENT_NO):
        again = await press(bot, prompt, label, ALICE)
        assert (again.get("show_alert"), again.get("text")) == (True, LAPSED)
    assert bot.tg.calls("editMessageText") == edits  # the answer shown stays as it was
    assert now_shown(bot, prompt)["text"] == CONSENT_RECORDED
    assert len(await answers_to(bot, note)) == 2  # the question and one "Saved"


# --- forget everything -------------------------------------------------------------------------


async def test_forget_deletes_voices_consents_recordings_and_usage(
    bot: Bot, redis_client: Redis
) -> None:
    tg = bot.tg
    saved_id = (await prepare_voice(clip("ogg_opus"))).voice_id
    sent_id = (await prepare_voice(clip("ogg_opus", 2.5))).voice_id
    note = tg.send_voice(ALICE, ALICE, clip("ogg_opus"), duration=3, caption="/voice")
    await press(bot, await question_for(bot, note), CONSENT_YES, ALICE)
    said = tg.send_voice(ALICE, ALICE, clip("ogg_opus", 2.5), duration=3, caption="/say Once.")
    await press(bot, await question_for(bot, said), CONSENT_YES, ALICE)
    in_saved = tg.send_command(ALICE, ALICE, "say", "In my saved voice.")
    (spoken,) = await answers_to(bot, in_saved)
    assert "your saved voice" in spoken.params["caption"]
    waiting = tg.send_voice(ALICE, ALICE, clip("ogg_opus", 2.0), duration=2, caption="/voice")
    unanswered = await question_for(bot, waiting)
    bobs = tg.send_command(BOB, BOB, "say", "Bob's own answer.")
    await answers_to(bot, bobs)
    await bot.flow.settled()  # the usage counted so far is written
    answers_made = [
        keys.as_text(k)
        for voice_id in (saved_id, sent_id)
        for k in await redis_client.smembers(keys.voice_audio(voice_id))
    ]
    assert len(answers_made) == 2
    assert await redis_client.hlen(keys.user_consents("telegram", str(ALICE))) == 2
    assert await usage_fields(redis_client, ALICE) and await usage_fields(redis_client, BOB)

    forget = tg.send_command(ALICE, ALICE, "forget")
    (forgot,) = await answers_to(bot, forget)
    assert forgot.params["text"] == (
        "Done: deleted your 1 saved voice clip(s), the 1 voice(s) you sent with a request, "
        "your default voice, 2 recording(s) made with them, your 2 consent record(s), the 1 "
        "clip(s) waiting for your answer and your usage history."
    )
    assert await user_keys(redis_client, ALICE) == []
    assert await voice_keys(redis_client) == []
    assert not any([await redis_client.exists(k) for k in answers_made])
    assert await usage_fields(redis_client, ALICE) == []
    assert await usage_fields(redis_client, BOB)  # someone else's history stays

    lapsed = await press(bot, unanswered, CONSENT_YES, ALICE)  # its clip went with the rest
    assert lapsed.get("text") == LAPSED
    again = tg.send_command(ALICE, ALICE, "voice", "forget")
    (nothing,) = await answers_to(bot, again)
    assert nothing.params["text"] == NOTHING_TO_DELETE
