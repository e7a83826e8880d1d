"""Cloning only with the speaker's say-so, through saybot's real discord.py client: the
one-time question with its two buttons, in a message only the user sees, and "forget
everything of mine".

Full path: Discord stand-in → discord.py → SayFlow → Valkey → a real TTS service whose engine
clones (Piper behind a cloning engine's face). Nothing in discord.py is mocked; assertions
are on what the stand-in received and on what Valkey holds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bots.chosen_voice import prepare_voice
from bots.consent import CONSENT_WORDING_VERSION
from bots.discord_bot.replies import ANSWERED_PRIVATELY
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
from tests.bots.test_discord_bot import USER, Bot, Outcome, decoded, running_bot
from tests.standins.discord_api import FLAG_EPHEMERAL, FLAG_LOADING, AttachmentSpec
from tests.tts_service.audio_samples import clip
from tests.tts_service.engine_wrappers import CloningPiper
from tts_service.engines.piper import PiperEngine

CALLBACK_DEFERRED, CALLBACK_DEFERRED_UPDATE = 5, 6
NOTHING_TO_DELETE = "There was nothing of yours to delete."
DISCORD_UI = ("discord", "ui")  # where discord.py's views live


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
        # Every question was answered: no view is left waiting (its timeout task would be).
        assert view_tasks() == []


def view_tasks() -> list[asyncio.Task[Any]]:
    """The unfinished tasks of discord.py's views: a button's callback, a view's timeout."""
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if task.done() or code is None:
            continue
        if Path(code.co_filename).parts[-3:-1] == DISCORD_UI:
            found.append(task)
    return found


# --- helpers ---------------------------------------------------------------------------------


def voice_clip(seconds: float = 3.0) -> AttachmentSpec:
    return AttachmentSpec("me.ogg", "audio/ogg", clip("ogg_opus", seconds))


def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, custom_id) of each button of a message."""
    return [
        (component["label"], component["custom_id"])
        for row in message["components"]
        for component in row["components"]
    ]


def assert_question(message: dict[str, Any]) -> None:
    """``message`` is the consent question, only its user sees it, with its two buttons."""
    assert message["content"] == CONSENT_PROMPT
    assert message["flags"] & FLAG_EPHEMERAL and not message["flags"] & FLAG_LOADING
    (yes_label, yes), (no_label, no) = buttons(message)
    assert (yes_label, no_label) == (CONSENT_YES, CONSENT_NO)
    pending = re.fullmatch(r"consent:([\w-]+):True", yes)
    assert pending is not None and no == f"consent:{pending[1]}:False", buttons(message)


async def press(bot: Bot, prompt: dict[str, Any], label: str) -> Outcome:
    """The user presses the button labelled ``label`` under ``prompt``; returns what the press
    caused once its callback has finished."""
    custom_id = next(cid for text, cid in buttons(prompt) if text == label)
    payload = await bot.standin.press_component(prompt, custom_id, user_id=USER)
    await bot.standin.wait_for_interaction_call(payload, "/callback", timeout=10)
    callbacks = {t for t in view_tasks() if t.get_name().startswith("discord-ui-view-dispatch-")}
    if callbacks:
        await asyncio.wait(callbacks, timeout=60)
    assert all(t.done() for t in callbacks), "a button's callback did not finish"
    return Outcome(
        bot.standin.interaction_calls(payload), bot.standin.interaction_messages(payload)
    )


def steps(outcome: Outcome) -> list[tuple[str, str]]:
    """(method, last part of the path) of each call, the interaction's token as "followup"."""
    named = []
    for call in outcome.calls:
        last = call.path.rsplit("/", 1)[-1]
        named.append((call.method, "followup" if len(last) > 60 else last))
    return named


async def voice_keys(redis: Redis) -> list[str]:
    """Every key of a voice (clip, owners, audio made with it), tombstones aside."""
    found = [keys.as_text(k) async for k in redis.scan_iter(match=f"{keys.PREFIX}voice:*")]
    return sorted(k for k in found if not k.endswith(":forgotten"))


async def user_keys(redis: Redis, user_id: int = USER) -> list[str]:
    """The keys of one Discord user: voices, default, attached voices, consents."""
    pattern = f"{keys.PREFIX}user:discord:{user_id}:*"
    return sorted([keys.as_text(k) async for k in redis.scan_iter(match=pattern)])


async def usage_fields(redis: Redis, user_id: int = USER) -> list[str]:
    """The user's per-user usage counts, on every day kept."""
    found = []
    async for key in redis.scan_iter(match=keys.usage_users("*")):
        fields = [keys.as_text(f) for f in await redis.hkeys(key)]
        found += [f for f in fields if f.startswith(f"discord:{user_id}|")]
    return found


# --- /voice set --------------------------------------------------------------------------------


async def test_voice_set_asks_privately_and_yes_saves_it(bot: Bot, redis_client: Redis) -> None:
    spec = voice_clip()
    voice_id = (await prepare_voice(spec.data)).voice_id
    asked = await bot.command("voice", subcommand="set", attachments={"attachment": spec})
    assert asked.callback.json == {"type": CALLBACK_DEFERRED, "data": {"flags": FLAG_EPHEMERAL}}
    prompt = asked.message()  # the private "thinking…", turned into the question
    assert_question(prompt)
    assert sum(bot.standin.cdn_downloads.values()) == 1
    assert await voice_keys(redis_client) == []
    assert await user_keys(redis_client) == []

    done = await press(bot, prompt, CONSENT_YES)
    assert done.callback.json == {"type": CALLBACK_DEFERRED_UPDATE}
    assert steps(done) == [("POST", "callback"), ("PATCH", "@original")]
    edited = done.message()
    assert edited["id"] == prompt["id"] and edited["components"] == []
    recorded, saved = edited["content"].split("\n")
    assert recorded == CONSENT_RECORDED and saved.startswith("Saved: /say now speaks")
    consents = await redis_client.hgetall(keys.user_consents("discord", str(USER)))
    assert list(consents) == [voice_id.encode()]
    record = json.loads(consents[voice_id.encode()])
    assert record["wording"] == CONSENT_WORDING_VERSION == 1
    assert abs(record["at"] - time.time()) < 60
    assert await redis_client.get(keys.user_default("discord", str(USER))) == voice_id.encode()

    shown = (await bot.command("voice", subcommand="show")).private_text()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert shown.splitlines()[:2] == [
        f"/say speaks in your saved voice ({voice_id[:8]}…).",
        f"You confirmed 1 recording(s) as your own voice; the last on {today} (wording version 1).",
    ]
    again = await bot.command("voice", subcommand="set", attachments={"attachment": spec})
    assert again.private_text().startswith("Saved: /say now speaks")  # not asked again
    assert again.message()["components"] == []


async def test_voice_set_no_deletes_the_clip(bot: Bot, redis_client: Redis) -> None:
    asked = await bot.command("voice", subcommand="set", attachments={"attachment": voice_clip()})
    prompt = asked.message()
    assert_question(prompt)
    done = await press(bot, prompt, CONSENT_NO)
    assert steps(done) == [("POST", "callback"), ("PATCH", "@original")]
    edited = done.message()
    assert (edited["content"], edited["components"]) == (CONSENT_DECLINED, [])
    assert await voice_keys(redis_client) == []
    assert await user_keys(redis_client) == []
    shown = (await bot.command("voice", subcommand="show")).private_text()
    assert "You have confirmed no recording as your own voice." in shown


# --- /say with a clip ------------------------------------------------------------------------


async def say_with(bot: Bot, spec: AttachmentSpec, text: str) -> Outcome:
    return await bot.command("say", [{"name": "text", "value": text}], attachments={"voice": spec})


async def test_say_with_a_clip_asks_privately_then_posts_the_audio(
    bot: Bot, redis_client: Redis
) -> None:
    before = bot.service.counter.tts_requests
    asked = await say_with(bot, voice_clip(), "Hello in my own voice.")
    # "thinking…" was public: resolved, the question sent privately, the public line deleted.
    assert asked.callback.json == {"type": CALLBACK_DEFERRED}
    assert steps(asked) == [
        ("POST", "callback"),
        ("PATCH", "@original"),
        ("POST", "followup"),
        ("DELETE", "@original"),
    ]
    assert asked.calls[1].json["content"] == ANSWERED_PRIVATELY
    assert asked.calls[2].json["flags"] == FLAG_EPHEMERAL
    prompt = asked.message()  # the public line is gone
    assert_question(prompt)
    assert bot.service.counter.tts_requests == before  # nothing cloned before the answer
    assert await user_keys(redis_client) == []

    done = await press(bot, prompt, CONSENT_YES)
    assert done.callback.json == {"type": CALLBACK_DEFERRED_UPDATE}
    assert steps(done) == [("POST", "callback"), ("PATCH", "@original"), ("POST", "followup")]
    edited, posted = done.messages
    assert edited["id"] == prompt["id"]
    assert (edited["content"], edited["components"]) == (CONSENT_RECORDED, [])
    assert posted["content"].startswith(AI_MARKER) and "the voice you sent" in posted["content"]
    assert not posted["flags"] & FLAG_EPHEMERAL  # for everyone, as /say posts it
    (upload,) = done.calls[2].files
    assert upload.filename == "say.ogg" and decoded(upload).duration > 0.5
    assert bot.service.counter.tts_requests == before + 1
    assert await redis_client.hlen(keys.user_consents("discord", str(USER))) == 1


async def test_say_with_a_clip_no_posts_nothing(bot: Bot, redis_client: Redis) -> None:
    before = bot.service.counter.tts_requests
    asked = await say_with(bot, voice_clip(), "Not in my voice, after all.")
    prompt = asked.message()
    assert_question(prompt)
    done = await press(bot, prompt, CONSENT_NO)
    assert steps(done) == [("POST", "callback"), ("PATCH", "@original")]
    edited = done.message()
    assert (edited["content"], edited["components"]) == (CONSENT_DECLINED, [])
    assert bot.service.counter.tts_requests == before
    assert await voice_keys(redis_client) == []
    assert await user_keys(redis_client) == []


# --- forget everything -------------------------------------------------------------------------


async def test_forget_deletes_voices_consents_recordings_and_usage(
    bot: Bot, redis_client: Redis
) -> None:
    saved, sent = voice_clip(), voice_clip(2.5)
    saved_id = (await prepare_voice(saved.data)).voice_id
    sent_id = (await prepare_voice(sent.data)).voice_id
    asked = await bot.command("voice", subcommand="set", attachments={"attachment": saved})
    await press(bot, asked.message(), CONSENT_YES)
    asked = await say_with(bot, sent, "Once in this voice.")
    await press(bot, asked.message(), CONSENT_YES)
    in_saved = await bot.say("In my saved voice.")
    assert "your saved voice" in in_saved.message()["content"]
    other = await bot.say("Someone else's answer.", user_id=USER + 1)
    assert other.upload()
    await bot.flow.settled()  # the usage counted so far is written
    answers_made = [
        keys.as_text(k)
        for voice_id in (saved_id, sent_id)
        for k in await redis_client.smembers(keys.voice_audio(voice_id))
    ]
    assert len(answers_made) == 2
    assert await redis_client.hlen(keys.user_consents("discord", str(USER))) == 2
    assert await usage_fields(redis_client) and await usage_fields(redis_client, USER + 1)

    forgot = await bot.command("voice", subcommand="forget")
    assert forgot.private_text() == (
        "Done: deleted your 1 saved voice clip(s), the 1 voice(s) you sent with a request, "
        "your default voice, 2 recording(s) made with them, your 2 consent record(s) and "
        "your usage history."
    )
    assert await user_keys(redis_client) == []
    assert await voice_keys(redis_client) == []
    assert not any([await redis_client.exists(k) for k in answers_made])
    assert await usage_fields(redis_client) == []
    assert await usage_fields(redis_client, USER + 1)  # someone else's history stays

    again = await bot.command("forget")
    assert again.private_text() == NOTHING_TO_DELETE
    shown = (await bot.command("voice", subcommand="show")).private_text()
    assert shown.startswith("/say speaks in the built-in voice.\n")
    assert "You have confirmed no recording as your own voice." in shown
