"""The Telegram stand-in, proven against the real python-telegram-bot over loopback HTTP."""

from __future__ import annotations

import asyncio
import datetime as dtm
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from telegram import (
    Bot,
    CallbackQuery,
    ChatMemberAdministrator,
    ChatMemberMember,
    ChatMemberOwner,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
    Voice,
)
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, RetryAfter
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.standins.telegram_api import (
    BOT_USERNAME,
    TOKEN,
    TelegramStandin,
    WaitTimeout,
    detect_entities,
    fake_ogg_opus,
)

USER = 501
GROUP = -100200
VOICE_REPLY = fake_ogg_opus(2.0, b"the bot's reply")

# PTB 22.2+ warns on int-valued time attributes (Voice.duration, RetryAfter.retry_after) unless
# it is told to use timedelta; opting in is the supported fix, not a filter.
pytestmark = pytest.mark.usefixtures("ptb_timedelta")


@pytest.fixture
def ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
async def tg() -> AsyncIterator[TelegramStandin]:
    async with TelegramStandin(max_poll_s=2.0) as standin:
        yield standin


class Seen:
    """What the test bot's handlers observed."""

    def __init__(self) -> None:
        self.downloads: list[bytes] = []
        self.queries: list[CallbackQuery] = []
        self.errors: list[BaseException] = []
        self.error_seen = asyncio.Event()

    async def first_error(self) -> BaseException:
        """The first error the application's error handler got (waits up to 5 s)."""
        await asyncio.wait_for(self.error_seen.wait(), 5)
        return self.errors[0]


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(" ".join(context.args or []), do_quote=True)


async def say(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None
    await message.reply_chat_action("record_voice")
    await message.reply_voice(VOICE_REPLY, caption="said", do_quote=True)


CONSENT_KEYBOARD = InlineKeyboardMarkup(
    [
        [InlineKeyboardButton("Yes", callback_data="consent:yes")],
        [InlineKeyboardButton("No", callback_data="consent:no")],
    ]
)


async def ask_consent(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(
        "May I keep your voice?", reply_markup=CONSENT_KEYBOARD
    )


def build_app(tg: TelegramStandin, seen: Seen) -> Application[Any, Any, Any, Any, Any, Any]:
    async def on_voice(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        voice = message.effective_attachment
        assert isinstance(voice, Voice)
        data = await (await voice.get_file()).download_as_bytearray()
        seen.downloads.append(bytes(data))
        await message.reply_text(f"got {len(data)} bytes")

    async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.data is not None
        seen.queries.append(query)
        await query.answer(f"noted: {query.data}")
        await query.edit_message_text(f"You chose {query.data.removeprefix('consent:')}")

    async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert context.error is not None
        seen.errors.append(context.error)
        seen.error_seen.set()

    app = (
        Application.builder()
        .token(TOKEN)
        .base_url(f"{tg.url}/bot")
        .base_file_url(f"{tg.url}/file/bot")
        .build()
    )
    app.add_handler(CommandHandler("echo", echo))
    app.add_handler(CommandHandler("say", say))
    app.add_handler(MessageHandler(filters.VOICE, on_voice))
    app.add_handler(CommandHandler("consent", ask_consent))
    app.add_handler(CallbackQueryHandler(on_button, pattern=r"^consent:"))
    app.add_error_handler(on_error)
    return app


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
async def app(
    tg: TelegramStandin, seen: Seen
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    application = build_app(tg, seen)
    await application.initialize()
    await application.start()
    assert application.updater is not None
    await application.updater.start_polling(poll_interval=0, timeout=dtm.timedelta(seconds=1))
    try:
        yield application
    finally:
        await application.updater.stop()
        await application.stop()
        await application.shutdown()


# ---------------------------------------------------------------- against the real PTB


async def test_ptb_bootstraps_and_sets_commands(
    tg: TelegramStandin, app: Application[Any, Any, Any, Any, Any, Any]
) -> None:
    assert app.bot.username == BOT_USERNAME
    assert tg.calls("getMe")[0].ok
    assert tg.calls("deleteWebhook"), "polling starts by deleting any webhook"

    await app.bot.set_my_commands([("say", "Speak text aloud"), ("echo", "Repeat text")])
    call = await tg.wait_for("setMyCommands")
    assert call.params["commands"] == [
        {"command": "say", "description": "Speak text aloud"},
        {"command": "echo", "description": "Repeat text"},
    ]
    assert [c.command for c in await app.bot.get_my_commands()] == ["say", "echo"]
    with pytest.raises(BadRequest, match=r"(?i)BOT_COMMAND_INVALID"):
        await app.bot.set_my_commands([("Say", "upper case is not allowed")])
    assert await app.bot.delete_my_commands()
    assert await app.bot.get_my_commands() == ()


async def test_command_gets_a_quoted_text_reply(
    tg: TelegramStandin, app: Application[Any, Any, Any, Any, Any, Any]
) -> None:
    sent = tg.send_command(USER, USER, "echo", "hello world")
    assert sent["entities"] == [{"offset": 0, "length": 5, "type": "bot_command"}]

    call = await tg.wait_for("sendMessage", after_seq=tg.mark())
    assert call.params["chat_id"] == USER
    assert call.params["text"] == "hello world"
    assert call.params["reply_parameters"]["message_id"] == sent["message_id"]
    reply = call.result
    assert reply["from"]["username"] == BOT_USERNAME
    assert reply["reply_to_message"]["message_id"] == sent["message_id"]
    assert reply["message_id"] == sent["message_id"] + 1, "message ids count per chat"
    assert [m["message_id"] for m in tg.bot_messages(USER)] == [reply["message_id"]]


async def test_group_command_for_this_bot_is_delivered_and_chatter_is_not(
    tg: TelegramStandin, app: Application[Any, Any, Any, Any, Any, Any]
) -> None:
    chatter = tg.send_text(GROUP, USER, f"hey @{BOT_USERNAME} what's up", chat_type="group")
    assert chatter["entities"] == [{"offset": 4, "length": 16, "type": "mention"}]
    assert tg.withheld[-1]["message_id"] == chatter["message_id"], "privacy mode withholds it"

    sent = tg.send_command(GROUP, USER, "/echo", "in a group", mention_bot=True, chat_type="group")
    assert sent["text"] == f"/echo@{BOT_USERNAME} in a group"
    assert sent["entities"][0]["length"] == len(f"/echo@{BOT_USERNAME}")
    call = await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == GROUP)
    assert call.params["text"] == "in a group"
    assert call.result["chat"]["type"] == "group"


async def test_voice_reply_uploads_the_exact_bytes_as_a_voice_note(
    tg: TelegramStandin, app: Application[Any, Any, Any, Any, Any, Any]
) -> None:
    start = tg.mark()
    sent = tg.send_command(USER, USER, "say", "hello there")

    call = await tg.wait_for("sendVoice", after_seq=start)
    assert call.files["voice"] == VOICE_REPLY
    assert call.params["caption"] == "said"
    assert call.params["reply_parameters"]["message_id"] == sent["message_id"]
    voice = call.result["voice"]
    assert voice["mime_type"] == "audio/ogg"
    assert voice["duration"] == 2, "read from the OGG granule position"
    action = await tg.wait_for("sendChatAction", after_seq=start)
    assert action.params["action"] == "record_voice"
    assert action.seq < call.seq
    assert not tg.calls("sendAudio") and not tg.calls("sendDocument")

    # The uploaded voice can be fetched again by file_id, as a bot would re-send a cached clip.
    again = await app.bot.send_voice(USER, voice["file_id"])
    assert again.voice is not None and again.voice.file_id == voice["file_id"]


async def test_user_voice_note_is_downloaded_through_getfile(
    tg: TelegramStandin, app: Application[Any, Any, Any, Any, Any, Any], seen: Seen
) -> None:
    clip = fake_ogg_opus(3.0, b"a user's reference clip")
    sent = tg.send_voice(USER, USER, clip, duration=3, caption="/say in my voice")
    assert sent["caption_entities"] == [{"offset": 0, "length": 4, "type": "bot_command"}]

    call = await tg.wait_for("sendMessage")
    assert call.params["text"] == f"got {len(clip)} bytes"
    assert seen.downloads == [clip]
    file_id = sent["voice"]["file_id"]
    assert tg.download_count(file_id) == 1
    assert tg.download_count() == 1
    assert tg.getfile_count == 1


async def test_flood_control_surfaces_as_retry_after(
    tg: TelegramStandin, app: Application[Any, Any, Any, Any, Any, Any], seen: Seen
) -> None:
    tg.send_command(USER, USER, "echo", "warm up")  # the chat must exist before the bot writes
    await tg.wait_for("sendMessage")

    tg.fail_next("sendMessage", 429, retry_after=3)
    with pytest.raises(RetryAfter) as caught:
        await app.bot.send_message(USER, "too fast")
    assert caught.value.retry_after == dtm.timedelta(seconds=3)
    assert (await app.bot.send_message(USER, "later")).text == "later"

    # Inside a handler the same error reaches the application's error handler.
    tg.fail_next("sendMessage", 429, retry_after=5)
    start = tg.mark()
    tg.send_command(USER, USER, "echo", "flooded")
    failed = await tg.wait_for("sendMessage", after_seq=start)
    assert failed.status == 429
    assert failed.response == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 5",
        "parameters": {"retry_after": 5},
    }
    assert isinstance(await seen.first_error(), RetryAfter)


async def test_api_errors_map_to_ptb_exceptions(
    tg: TelegramStandin, app: Application[Any, Any, Any, Any, Any, Any]
) -> None:
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await app.bot.send_message(999, "nobody here")
    tg.send_text(USER, USER, "hi")
    with pytest.raises(BadRequest, match=r"(?i)message to be replied not found"):
        await app.bot.send_message(USER, "x", reply_to_message_id=4242)
    with pytest.raises(BadRequest, match=r"(?i)Character '\.' is reserved"):
        await app.bot.send_message(USER, "Done.", parse_mode="MarkdownV2")
    with pytest.raises(BadRequest, match=r"(?i)Unsupported start tag"):
        await app.bot.send_message(USER, "a <speech> tag", parse_mode="HTML")
    assert (await app.bot.send_message(USER, "<b>ok</b> &amp; done", parse_mode="HTML")).text == (
        "ok & done"
    )
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await app.bot.send_message(USER, "x" * 4097)

    sent = await app.bot.send_message(USER, "first")
    edited = await app.bot.edit_message_text("second", chat_id=USER, message_id=sent.message_id)
    assert not isinstance(edited, bool) and edited.text == "second"
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await app.bot.edit_message_text("second", chat_id=USER, message_id=sent.message_id)
    assert await app.bot.delete_message(USER, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await app.bot.delete_message(USER, sent.message_id)

    tg.block(USER)
    with pytest.raises(Forbidden, match=r"(?i)blocked"):
        await app.bot.send_chat_action(USER, "record_voice")


async def test_wrong_token_is_unauthorized(tg: TelegramStandin) -> None:
    bot = Bot("999:WRONG", base_url=f"{tg.url}/bot")
    try:
        with pytest.raises(InvalidToken, match="rejected by the server"):
            await bot.initialize()  # what Application.initialize does first
    finally:
        await bot.shutdown()
    assert tg.calls("getMe")[-1].status == 401


async def test_non_opus_voice_and_big_files_behave_like_telegram(
    tg: TelegramStandin, app: Application[Any, Any, Any, Any, Any, Any], seen: Seen
) -> None:
    tg.send_text(USER, USER, "hi")
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(32)
    message = await app.bot.send_voice(USER, wav)
    assert message.voice is None and message.document is not None, "sent as a file"

    # A voice note over the 20 MB getFile limit: the bot's handler gets BadRequest.
    tg.send_voice(USER, USER, b"OggS", duration=600, file_size=25 * 1024 * 1024)
    error = await seen.first_error()
    assert isinstance(error, BadRequest)
    assert "file is too big" in error.message.lower()
    assert tg.getfile_count == 1
    assert tg.download_count() == 0


async def test_inline_button_press_is_answered_once_and_edits_the_message(
    tg: TelegramStandin, app: Application[Any, Any, Any, Any, Any, Any], seen: Seen
) -> None:
    tg.send_command(USER, USER, "consent")
    asked = await tg.wait_for("sendMessage")
    keyboard = {
        "inline_keyboard": [
            [{"text": "Yes", "callback_data": "consent:yes"}],
            [{"text": "No", "callback_data": "consent:no"}],
        ]
    }
    assert asked.result["reply_markup"] == keyboard
    message = tg.bot_messages(USER)[-1]
    assert message["reply_markup"] == keyboard

    start = tg.mark()
    query = tg.press_button(USER, USER, message, "consent:yes")
    assert query["message"]["reply_markup"] == keyboard
    assert (query["from"]["id"], query["data"]) == (USER, "consent:yes")
    answer = await tg.wait_for("answerCallbackQuery", after_seq=start)
    assert answer.ok and answer.params["callback_query_id"] == query["id"]
    assert tg.callback_answers[query["id"]]["text"] == "noted: consent:yes"
    edit = await tg.wait_for("editMessageText", after_seq=start)
    assert answer.seq < edit.seq
    assert edit.result["text"] == "You chose yes"
    assert "reply_markup" not in edit.result, "an edit without reply_markup drops the keyboard"
    stored = tg.bot_messages(USER)[-1]
    assert stored["message_id"] == message["message_id"] and "edit_date" in stored
    got = seen.queries[0]
    assert got.id == query["id"] and got.chat_instance == query["chat_instance"]
    assert got.message is not None and got.message.message_id == message["message_id"]

    with pytest.raises(BadRequest, match=r"(?i)query is too old and response timeout expired"):
        await app.bot.answer_callback_query(query["id"])
    with pytest.raises(BadRequest, match=r"(?i)query ID is invalid"):
        await app.bot.answer_callback_query("1")

    # A client still showing the old keyboard: delivered, though the buttons are gone.
    start = tg.mark()
    stale = tg.press_button(USER, USER, message["message_id"], "consent:no")
    assert "reply_markup" not in stale["message"]
    assert stale["chat_instance"] == query["chat_instance"] != ""
    assert stale["id"] != query["id"]
    assert (await tg.wait_for("editMessageText", after_seq=start)).result["text"] == "You chose no"
    with pytest.raises(ValueError, match="no bot message"):
        tg.press_button(USER, USER, 999, "consent:yes")


async def test_reply_markup_edits_and_keyboard_validation(
    tg: TelegramStandin, app: Application[Any, Any, Any, Any, Any, Any]
) -> None:
    tg.send_text(USER, USER, "hi")
    sent = await app.bot.send_message(USER, "pick", reply_markup=CONSENT_KEYBOARD)
    ids = {"chat_id": USER, "message_id": sent.message_id}
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await app.bot.edit_message_reply_markup(**ids, reply_markup=CONSENT_KEYBOARD)
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await app.bot.edit_message_text("pick", **ids, reply_markup=CONSENT_KEYBOARD)
    one = InlineKeyboardMarkup([[InlineKeyboardButton("Only", callback_data="only")]])
    edited = await app.bot.edit_message_reply_markup(**ids, reply_markup=one)
    assert not isinstance(edited, bool) and edited.reply_markup == one
    edited = await app.bot.edit_message_reply_markup(**ids)
    assert not isinstance(edited, bool) and edited.reply_markup is None
    assert "reply_markup" not in tg.bot_messages(USER)[-1]
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await app.bot.edit_message_reply_markup(**ids)

    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="x" * 65)]])
    with pytest.raises(BadRequest, match=r"(?i)BUTTON_DATA_INVALID"):
        await app.bot.send_message(USER, "nope", reply_markup=too_long)
    async with httpx.AsyncClient(timeout=5) as client:  # a JSON body with the markup as a string
        body = {"chat_id": USER, "text": "json", "reply_markup": CONSENT_KEYBOARD.to_json()}
        reply = (await client.post(f"{tg.url}/bot{TOKEN}/sendMessage", json=body)).json()
    assert reply["result"]["reply_markup"] == CONSENT_KEYBOARD.to_dict()


async def test_get_chat_member_answers_the_status_set(
    tg: TelegramStandin, app: Application[Any, Any, Any, Any, Any, Any]
) -> None:
    tg.send_command(GROUP, USER, "echo", "hi", chat_type="group")
    tg.set_member_status(GROUP, 502, "creator")
    tg.set_member_status(GROUP, 503, "administrator")
    assert isinstance(await app.bot.get_chat_member(GROUP, USER), ChatMemberMember)
    owner = await app.bot.get_chat_member(GROUP, 502)
    assert isinstance(owner, ChatMemberOwner) and owner.user.id == 502
    assert isinstance(await app.bot.get_chat_member(GROUP, 503), ChatMemberAdministrator)
    for status in ("restricted", "left", "kicked"):
        tg.set_member_status(GROUP, 504, status)
        assert (await app.bot.get_chat_member(GROUP, 504)).status == status
    with pytest.raises(BadRequest, match=r"(?i)user not found"):
        await app.bot.get_chat_member(GROUP, 999)
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await app.bot.get_chat_member(-999, USER)
    with pytest.raises(ValueError, match="unknown chat member status"):
        tg.set_member_status(GROUP, USER, "owner")


# ---------------------------------------------------------------- protocol level


async def test_long_poll_waits_for_updates_and_offset_confirms(tg: TelegramStandin) -> None:
    api = f"{tg.url}/bot{TOKEN}"
    async with httpx.AsyncClient(timeout=5) as client:
        began = time.monotonic()
        empty = (await client.post(f"{api}/getUpdates", data={"timeout": "1"})).json()
        assert empty == {"ok": True, "result": []}
        assert 0.9 <= time.monotonic() - began < 2.0

        poll = asyncio.create_task(client.post(f"{api}/getUpdates", data={"timeout": "5"}))
        await asyncio.sleep(0.1)
        began = time.monotonic()
        tg.send_text(USER, USER, "wake up")
        updates = (await poll).json()["result"]
        assert time.monotonic() - began < 0.5, "the poll returns as soon as an update arrives"
        assert [u["message"]["text"] for u in updates] == ["wake up"]

        tg.send_text(USER, USER, "second")
        again = (await client.post(f"{api}/getUpdates", json={"limit": 1})).json()["result"]
        assert again == updates, "unconfirmed updates are delivered again"
        offset = updates[0]["update_id"] + 1
        rest = (await client.post(f"{api}/getUpdates", json={"offset": offset})).json()["result"]
        assert [u["message"]["text"] for u in rest] == ["second"]
        assert len(tg.pending_updates) == 1

        first = asyncio.create_task(
            client.post(f"{api}/getUpdates", json={"offset": offset + 1, "timeout": 5})
        )
        await asyncio.sleep(0.1)
        # a second poller (a second bot instance) ends the first with 409
        second = await client.post(f"{api}/getUpdates", json={"offset": offset + 1, "timeout": 0})
        assert second.json() == {"ok": True, "result": []}
        ended = await first
        assert ended.status_code == 409
        assert ended.json()["description"].startswith("Conflict: terminated")


async def test_edits_arrive_as_edited_message_updates(tg: TelegramStandin) -> None:
    sent = tg.send_command(USER, USER, "say", "first")
    edited = tg.edit_text(sent, "/say second")
    assert edited["message_id"] == sent["message_id"] and "edit_date" in edited
    assert edited["entities"] == [{"offset": 0, "length": 4, "type": "bot_command"}]
    async with httpx.AsyncClient(timeout=5) as client:
        body = (await client.post(f"{tg.url}/bot{TOKEN}/getUpdates")).json()
    kinds = [next(k for k in u if k != "update_id") for u in body["result"]]
    assert kinds == ["message", "edited_message"]
    assert body["result"][1]["edited_message"]["text"] == "/say second"
    assert [u["update_id"] for u in body["result"]] == list(tg.issued_update_ids)
    with pytest.raises(ValueError, match="no user message"):
        tg.edit_text({**sent, "message_id": 999}, "nope")


async def test_local_mode_answers_absolute_paths_and_serves_no_downloads(
    tmp_path: Path,
) -> None:
    async with TelegramStandin(local_files_dir=tmp_path) as tg, httpx.AsyncClient() as client:
        big = tg.send_voice(USER, USER, b"OggS local", duration=3, file_size=30_000_000)
        body = (
            await client.post(
                f"{tg.url}/bot{TOKEN}/getFile", data={"file_id": big["voice"]["file_id"]}
            )
        ).json()
        assert body["ok"], "no 20 MB limit in local mode"
        path = Path(body["result"]["file_path"])
        assert path.is_absolute()
        assert await asyncio.to_thread(path.read_bytes) == b"OggS local"
        relative = tg.files[big["voice"]["file_id"]].file_path
        download = await client.get(f"{tg.url}/file/bot{TOKEN}/{relative}")
        assert download.status_code == 404
        assert tg.download_count() == 0


async def test_unknown_method_wrong_token_and_webhook_conflict(tg: TelegramStandin) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        unknown = await client.post(f"{tg.url}/bot{TOKEN}/sendTelepathy", data={"x": "1"})
        assert unknown.status_code == 404
        assert unknown.json() == {
            "ok": False,
            "error_code": 404,
            "description": "Not Found: method not found",
        }
        wrong = await client.post(f"{tg.url}/bot1:nope/getMe")
        assert (wrong.status_code, wrong.json()["description"]) == (401, "Unauthorized")

        hook = {"url": "https://example.invalid/hook"}
        assert (await client.post(f"{tg.url}/bot{TOKEN}/setWebhook", data=hook)).json()["ok"]
        info = (await client.get(f"{tg.url}/bot{TOKEN}/getWebhookInfo")).json()["result"]
        assert info["url"] == hook["url"]
        conflict = await client.post(f"{tg.url}/bot{TOKEN}/getUpdates")
        assert conflict.status_code == 409

        missing = await client.get(f"{tg.url}/file/bot{TOKEN}/voice/nothing.oga")
        assert missing.status_code == 404

    async with Bot(TOKEN, base_url=f"{tg.url}/bot") as bot:
        with pytest.raises(Conflict):
            await bot.get_updates()


async def test_wait_for_times_out_with_the_calls_seen(tg: TelegramStandin) -> None:
    async with Bot(TOKEN, base_url=f"{tg.url}/bot") as bot:
        assert bot.username == BOT_USERNAME
    with pytest.raises(WaitTimeout, match=r"sendVoice.*getMe \(200\)"):
        await tg.wait_for("sendVoice", timeout=0.2)


def test_entities_use_utf16_offsets() -> None:
    text = f"🎤 @{BOT_USERNAME} /say hi"
    assert detect_entities(text) == [
        {"offset": 3, "length": 16, "type": "mention"},
        {"offset": 20, "length": 4, "type": "bot_command"},
    ]
