"""A protocol-level stand-in of the Telegram Bot API, for tests.

``TelegramStandin`` is a real HTTP server on 127.0.0.1 (aiohttp, running in the test's own event
loop) that answers the Bot API the way python-telegram-bot v22 calls it:

* ``POST {url}/bot<token>/<method>`` with a url-encoded, multipart or JSON body (GET with a query
  string works too), answered ``{"ok": true, "result": ...}`` or
  ``{"ok": false, "error_code": N, "description": "...", "parameters": {"retry_after": S}}``;
* ``GET {url}/file/bot<token>/<file_path>`` for file downloads.

PTB appends the token to both base URLs, so a bot is pointed at the stand-in with::

    Application.builder().token(TOKEN).base_url(f"{tg.url}/bot").base_file_url(f"{tg.url}/file/bot")

Tests push updates with the builders (``send_command``, ``send_voice``, ...) and assert on what
the bot sent with ``calls()`` / ``wait_for()``. Behaviour of the real API that a bot can get
wrong is kept rather than smoothed over:

* ``getUpdates`` long polling: ``offset`` confirms (forgets) earlier updates, ``timeout`` holds
  the request (capped at ``max_poll_s``), ``limit``, sticky ``allowed_updates``; a newer
  ``getUpdates`` ends a waiting one with 409, as does polling while a webhook is set.
* Group privacy mode (on by default, as for a new bot): in groups the bot gets commands, replies
  to its own messages and nothing else; withheld messages are listed in ``withheld``.
* ``sendVoice`` with something that is not OGG/Opus, MP3 or M4A comes back as a ``document``
  (Telegram shows it as a file, not a voice note).
* Replying to a message that does not exist, an unknown chat, a blocked user, malformed
  HTML/MarkdownV2, over-long text or captions, invalid command names, ``getFile`` over 20 MB:
  the same 400/403 errors the real API gives.
* Edits (``edit_text``) arrive as ``edited_message`` updates carrying the same message id.
* Inline keyboards: a ``reply_markup`` InlineKeyboardMarkup (JSON string or object) is validated
  (a button needs an action; ``callback_data`` is 1-64 bytes: ``BUTTON_DATA_INVALID``) and kept
  with the bot's message; reply keyboards are not (Telegram does not echo them). ``press_button``
  queues a ``callback_query`` update carrying the message as it is now. Each query is answered
  once (``answerCallbackQuery``; again, or an unknown id: "query is too old ..." 400; the real
  API's ~15 s answer deadline is not modelled). The data is not checked against the keyboard:
  Telegram does not either, and a client still showing an edited-away keyboard sends stale data.
  ``editMessageText`` without ``reply_markup`` removes the keyboard, as Telegram does;
  ``editMessageText`` / ``editMessageReplyMarkup`` with nothing changed: "message is not
  modified" 400.
* ``getChatMember`` answers the status set with ``set_member_status`` (default ``member``).
* Anonymous group admins (sender ``GROUP_ANONYMOUS_BOT_ID``) post with ``sender_chat`` set to the
  group, as Telegram's GroupAnonymousBot does.
* ``local_files_dir`` acts as a Bot API server started with ``--local``: ``getFile`` answers
  an absolute path under that folder (where the file is written), no size limit applies, and
  nothing is served over HTTP.

Everything runs on the event loop of the test; the builders are plain (sync) methods.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import html
import json
import re
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import BodyPartReader, web

JSON = dict[str, Any]
ChatType = Literal["private", "group", "supergroup"]

TOKEN = "123456:TEST-standin-token"
"""The token the stand-in accepts; the bot's user id is its prefix, as with real tokens."""
BOT_ID = 123456
BOT_USERNAME = "saybot_test_bot"
BOT_FIRST_NAME = "Saybot Test"
GROUP_ANONYMOUS_BOT_ID = 1087968824
"""Telegram's "GroupAnonymousBot": the sender of every message an anonymous group admin posts
(``send_text(group, GROUP_ANONYMOUS_BOT_ID, ...)``); such messages carry ``sender_chat``, the
group itself."""
DOWNLOAD = "download"
"""Pseudo method name for ``fail_next`` / ``delay_next`` on file downloads."""

MAX_TEXT_UTF16 = 4096
MAX_CAPTION_UTF16 = 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # the Bot API's upload limit
MAX_GETFILE_BYTES = 20 * 1024 * 1024  # the Bot API's download limit


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_DEFAULT_UPDATE_TYPES = _words(
    "message edited_message channel_post edited_channel_post business_connection "
    "business_message edited_business_message deleted_business_messages inline_query "
    "chosen_inline_result callback_query shipping_query pre_checkout_query purchased_paid_media "
    "poll poll_answer my_chat_member chat_join_request chat_boost removed_chat_boost"
)  # everything but chat_member, message_reaction(_count), which need an explicit opt-in
_CHAT_ACTIONS = _words(
    "typing upload_photo record_video upload_video record_voice upload_voice upload_document "
    "choose_sticker find_location record_video_note upload_video_note"
)
# Form fields whose value is free text: never JSON-decoded, so a text "42" stays a string.
_TEXT_FIELDS = _words(
    "text caption parse_mode action url secret_token ip_address language_code title performer "
    "file_name file_id voice audio document thumbnail business_connection_id message_effect_id "
    "inline_message_id description short_description name emoji callback_query_id"
)
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
_MEMBER_STATUSES = _words("creator administrator member restricted left kicked")
_QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"
_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
# Fields that make an inline keyboard button do something; one is required.
_BUTTON_ACTIONS = _words(
    "url callback_data web_app login_url switch_inline_query switch_inline_query_current_chat "
    "switch_inline_query_chosen_chat copy_text callback_game pay"
)
_COMMAND_IN_TEXT = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/@])")
_MENTION_IN_TEXT = re.compile(r"(?<![\w@])@[A-Za-z][A-Za-z0-9_]{3,31}(?!\w)")
_HTML_TAGS = _words(
    "b strong i em u ins s strike del span tg-spoiler a code pre blockquote tg-emoji tg-time"
)
_HTML_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s[^<>]*)?)>")
_HTML_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#x[0-9A-Fa-f]+);")
_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_ENTITY_NAMES = {
    "*": "Bold",
    "_": "Italic",
    "__": "Underline",
    "~": "Strikethrough",
    "||": "Spoiler",
}


@dataclass(frozen=True)
class Upload:
    """One file part of a multipart request."""

    data: bytes
    filename: str | None
    content_type: str | None


@dataclass
class Call:
    """One Bot API request the stand-in received, in arrival order.

    ``params`` are decoded (numbers and JSON objects as Python values, free text as sent);
    ``files`` maps the parameter a file belongs to (``voice``, ``document``...) to its bytes,
    uploaded or named by a ``file_id`` the stand-in holds; ``uploads`` holds only the former.
    ``status`` is the HTTP status answered (``None`` while pending, or when the client went away
    first) and ``response`` the JSON body answered.
    """

    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    at: float
    seq: int
    uploads: dict[str, Upload] = field(default_factory=dict)
    status: int | None = None
    response: JSON | None = None
    done: bool = False

    @property
    def ok(self) -> bool:
        """Whether the call was answered with ``ok: true``."""
        return self.status == 200

    @property
    def result(self) -> Any:
        """The ``result`` of a successful call (raises ``AssertionError`` otherwise)."""
        assert self.response is not None and self.response.get("ok"), f"{self} did not succeed"
        return self.response["result"]

    def __str__(self) -> str:
        answer = "pending" if self.status is None else str(self.status)
        if self.response is not None and not self.response.get("ok"):
            answer += f" {self.response.get('description')}"
        return f"#{self.seq} {self.method} ({answer})"


@dataclass
class StoredFile:
    """A file the stand-in can serve through ``getFile`` and the download URL."""

    file_id: str
    file_unique_id: str
    data: bytes
    file_size: int
    file_path: str
    mime_type: str | None = None


class WaitTimeout(AssertionError):
    """``wait_for`` found no matching call in time."""


@dataclass
class _Fault:
    error_code: int
    description: str
    retry_after: int | None
    times: int


@dataclass
class _Delay:
    seconds: float
    times: int


class _ApiError(Exception):
    """An error answer: HTTP status = ``error_code``."""

    def __init__(self, error_code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad_request(detail: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {detail}")


_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
}

_Handler = Callable[[dict[str, Any], dict[str, Upload]], Coroutine[Any, Any, Any]]


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's entity offsets and text limits."""
    return len(text.encode("utf-16-le")) // 2


def detect_entities(text: str) -> list[JSON]:
    """``bot_command`` and ``mention`` entities as Telegram computes them (UTF-16 offsets)."""
    found: list[tuple[int, str, int]] = []
    for kind, pattern in (("bot_command", _COMMAND_IN_TEXT), ("mention", _MENTION_IN_TEXT)):
        for match in pattern.finditer(text):
            found.append((match.start(), kind, match.end()))
    found.sort()
    return [
        {"offset": utf16_len(text[:start]), "length": utf16_len(text[start:end]), "type": kind}
        for start, kind, end in found
    ]


def fake_ogg_opus(duration_s: float = 1.0, payload: bytes = b"") -> bytes:
    """Bytes with the structure of an OGG/Opus file (pages, ``OpusHead``, a final granule).

    Enough for the stand-in (and Telegram) to classify it as a voice note and read its duration;
    not decodable audio (no CRCs, no Opus frames). ``payload`` makes distinct files.
    """

    def page(granule: int, serial: int, seq: int, flags: int, body: bytes) -> bytes:
        segments = [255] * (len(body) // 255) + [len(body) % 255]
        return (
            b"OggS\x00"
            + bytes([flags])
            + granule.to_bytes(8, "little", signed=True)
            + serial.to_bytes(4, "little")
            + seq.to_bytes(4, "little")
            + b"\x00\x00\x00\x00"  # CRC left empty: structure only
            + bytes([len(segments), *segments])
            + body
        )

    pre_skip = 312
    head = b"OpusHead\x01\x01" + pre_skip.to_bytes(2, "little") + (48000).to_bytes(4, "little")
    head += b"\x00\x00\x00"
    tags = b"OpusTags" + (7).to_bytes(4, "little") + b"standin" + (0).to_bytes(4, "little")
    last_granule = pre_skip + round(duration_s * 48000)
    return (
        page(0, 1, 0, 0x02, head)
        + page(0, 1, 1, 0x00, tags)
        + page(last_granule, 1, 2, 0x04, payload[:65000] or b"\x00")
    )


def _audio_kind(data: bytes) -> tuple[str | None, float | None]:
    """The voice-note format Telegram accepts (mime type) and the duration, if it can tell."""
    if data.startswith(b"OggS"):
        if b"OpusHead" not in data[:4096]:
            return None, None  # OGG but not Opus (e.g. Vorbis): not a voice note
        last = data.rfind(b"OggS")
        granule = int.from_bytes(data[last + 6 : last + 14], "little", signed=True)
        head = data.find(b"OpusHead")
        pre_skip = int.from_bytes(data[head + 10 : head + 12], "little")
        return "audio/ogg", max(0.0, (granule - pre_skip) / 48000) if granule >= 0 else None
    if data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "audio/mpeg", None
    if data[4:8] == b"ftyp":
        return "audio/mp4", None
    return None, None


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode())


def _plain_html(text: str) -> str:
    """Validate Telegram HTML and return the visible text."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "<":
            match = _HTML_TAG.match(text, i)
            if match is None:
                raise _bad_request(
                    f'can\'t parse entities: Unexpected "<" at byte offset {_byte_offset(text, i)}'
                )
            closing, name = match.group(1) == "/", match.group(2).lower()
            if name not in _HTML_TAGS:
                raise _bad_request(
                    f'can\'t parse entities: Unsupported start tag "{name}" at byte offset '
                    f"{_byte_offset(text, i)}"
                )
            if closing:
                if not stack or stack[-1] != name:
                    expected = f'"</{stack[-1]}>"' if stack else "no end tag"
                    raise _bad_request(
                        f"can't parse entities: Unmatched end tag at byte offset "
                        f'{_byte_offset(text, i)}, expected {expected}, found "</{name}>"'
                    )
                stack.pop()
            else:
                stack.append(name)
            i = match.end()
        elif char == "&" and (entity := _HTML_ENTITY.match(text, i)):
            out.append(html.unescape(entity.group(0)))
            i = entity.end()
        else:
            out.append(char)
            i += 1
    if stack:
        raise _bad_request(
            f"can't parse entities: Can't find end tag corresponding to start tag \"{stack[-1]}\""
        )
    return "".join(out)


def _plain_markdown_v2(text: str) -> str:
    """Validate MarkdownV2 (reserved characters, balanced markers) and return the visible text."""
    out: list[str] = []
    open_marks: dict[str, int] = {}
    links: list[int] = []
    i = 0

    def reserved(at: int) -> _ApiError:
        return _bad_request(
            f"can't parse entities: Character '{text[at]}' is reserved and must be escaped with "
            "the preceding '\\'"
        )

    def find_unescaped(token: str, start: int) -> int:
        j = start
        while j < len(text):
            if text[j] == "\\":
                j += 2
                continue
            if text.startswith(token, j):
                return j
            j += 1
        return -1

    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 >= len(text):
                raise reserved(i)
            out.append(text[i + 1])
            i += 2
        elif char == "`":
            fence = "```" if text.startswith("```", i) else "`"
            end = find_unescaped(fence, i + len(fence))
            if end < 0:
                raise _bad_request(
                    "can't parse entities: Can't find end of "
                    f"{'Pre' if fence == '```' else 'Code'} entity at byte offset "
                    f"{_byte_offset(text, i)}"
                )
            body = text[i + len(fence) : end]
            if fence == "```" and "\n" in body and " " not in body.split("\n", 1)[0]:
                body = body.split("\n", 1)[1]  # the first line names the language
            out.append(re.sub(r"\\(.)", r"\1", body))
            i = end + len(fence)
        elif text.startswith("||", i) or text.startswith("__", i) or char in "*_~":
            mark = text[i : i + 2] if text[i : i + 2] in ("||", "__") else char
            if mark in open_marks:
                del open_marks[mark]
            else:
                open_marks[mark] = i
            i += len(mark)
        elif char == "[" or text.startswith("![", i):
            links.append(i)
            i += 2 if char == "!" else 1
        elif char == "]" and links and text.startswith("(", i + 1):
            end = find_unescaped(")", i + 2)
            if end < 0:
                raise reserved(i + 1)
            links.pop()
            i = end + 1
        elif char == ">" and (i == 0 or text[i - 1] == "\n"):
            i += 1  # a block quote line
        elif char in _MDV2_RESERVED:
            raise reserved(i)
        else:
            out.append(char)
            i += 1
    if links:
        raise reserved(links[-1])
    if open_marks:
        mark, at = min(open_marks.items(), key=lambda item: item[1])
        raise _bad_request(
            f"can't parse entities: Can't find end of {_MDV2_ENTITY_NAMES[mark]} entity at byte "
            f"offset {_byte_offset(text, at)}"
        )
    return "".join(out)


def _plain_text(text: str, parse_mode: Any) -> str:
    """The visible text of ``text`` under ``parse_mode``; raises the API's 400 on bad markup."""
    if parse_mode is None or parse_mode == "":
        return text
    mode = str(parse_mode).lower()
    if mode == "html":
        return _plain_html(text)
    if mode == "markdownv2":
        return _plain_markdown_v2(text)
    if mode == "markdown":
        return re.sub(r"[*_`\[\]]", "", text)  # legacy Markdown: not validated
    raise _bad_request(f"unsupported parse_mode {parse_mode}")


def _inline_markup(params: Mapping[str, Any]) -> JSON | None:
    """The InlineKeyboardMarkup in ``reply_markup`` (validated, as Telegram keeps it), or
    ``None``: absent, empty, or another kind of markup (reply keyboards are not echoed)."""
    markup = params.get("reply_markup")
    if isinstance(markup, str):  # a JSON body may carry it as a string
        try:
            markup = json.loads(markup) if markup else None
        except ValueError:
            raise _bad_request("can't parse reply keyboard markup JSON object") from None
    if not isinstance(markup, dict) or "inline_keyboard" not in markup:
        return None
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad_request("can't parse inline keyboard button: InlineKeyboardButtons expected")
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad_request("can't parse inline keyboard button: Text must be a String")
            if not _BUTTON_ACTIONS & button.keys():
                raise _bad_request("text buttons are unallowed in the inline keyboard")
            data = button.get("callback_data")
            if "callback_data" in button and not (
                isinstance(data, str) and 1 <= len(data.encode()) <= 64
            ):
                raise _bad_request("BUTTON_DATA_INVALID")
    rows = [row for row in rows if row]
    return {"inline_keyboard": copy.deepcopy(rows)} if rows else None


def _chat_member(status: str, user: JSON) -> JSON:
    """A ChatMember object of ``status`` for ``user``, with the fields Telegram always sends."""
    member: JSON = {"status": status, "user": copy.deepcopy(user)}
    if status == "creator":
        member["is_anonymous"] = False
    elif status == "administrator":
        member |= {
            "can_be_edited": False,
            "is_anonymous": False,
            "can_manage_chat": True,
            "can_delete_messages": True,
            "can_manage_video_chats": True,
            "can_restrict_members": True,
            "can_promote_members": False,
            "can_change_info": True,
            "can_invite_users": True,
            "can_post_stories": False,
            "can_edit_stories": False,
            "can_delete_stories": False,
            "can_pin_messages": True,
            "can_manage_topics": False,
        }
    elif status == "restricted":
        can = (
            "can_send_messages can_send_audios can_send_documents can_send_photos "
            "can_send_videos can_send_video_notes can_send_voice_notes can_send_polls "
            "can_send_other_messages can_add_web_page_previews can_change_info "
            "can_invite_users can_pin_messages can_manage_topics can_edit_tag can_react_to_messages"
        )
        member |= {"is_member": True, "until_date": 0} | dict.fromkeys(can.split(), False)
    elif status == "kicked":
        member["until_date"] = 0  # banned forever
    return member


def _decode_field(name: str, value: str) -> Any:
    """Decode one form value the way the API does: JSON where the field is not free text."""
    if name in _TEXT_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


class TelegramStandin:
    """A fake Telegram Bot API server on 127.0.0.1; see the module docstring.

    Use as ``async with TelegramStandin() as tg:``; ``tg.url`` is the server's base URL.
    """

    def __init__(
        self,
        *,
        token: str = TOKEN,
        privacy_mode: bool = True,
        max_poll_s: float = 10.0,
        local_files_dir: Path | None = None,
    ) -> None:
        self.token = token
        self.local_files_dir = local_files_dir
        self.privacy_mode = privacy_mode
        self.max_poll_s = max_poll_s
        self.bot_user: JSON = {
            "id": int(token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": BOT_FIRST_NAME,
            "username": BOT_USERNAME,
        }
        self.webhook: JSON | None = None
        """Parameters of the last ``setWebhook`` with a URL; ``None`` when none is set."""
        self.commands: dict[tuple[str, str], list[JSON]] = {}
        """``setMyCommands`` state, by (scope as canonical JSON, language code)."""
        self.withheld: list[JSON] = []
        """Group messages not delivered to the bot because of privacy mode."""
        self.downloads: collections.Counter[str] = collections.Counter()
        """File downloads served, by file_id."""
        self.getfile_count = 0
        self.files: dict[str, StoredFile] = {}
        """Files by file_id (those users sent and those the bot uploaded)."""
        self._files_by_path: dict[str, StoredFile] = {}
        self._users: dict[int, JSON] = {}
        self._chats: dict[int, JSON] = {}
        self._blocked: set[int] = set()
        self._messages: dict[tuple[int, int], JSON] = {}
        self._last_message_id: dict[int, int] = {}
        self.callback_queries: dict[str, JSON] = {}
        """Every callback query ``press_button`` sent, by query id."""
        self.callback_answers: dict[str, JSON] = {}
        """The parameters of the (single) ``answerCallbackQuery`` of each answered query id."""
        self._member_status: dict[tuple[int, int], str] = {}
        self._chat_instances: dict[int, str] = {}
        self._next_query = 1
        self._pending: list[JSON] = []
        self._first_update_id = self._next_update_id = 100_000
        self._allowed_updates: frozenset[str] = _DEFAULT_UPDATE_TYPES
        self._poll_generation = 0
        self._calls: list[Call] = []
        self._next_seq = 1
        self._next_file = 1
        self._faults: dict[str, list[_Fault]] = collections.defaultdict(list)
        self._delays: dict[str, list[_Delay]] = collections.defaultdict(list)
        self._update_event = asyncio.Event()
        self._call_event = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._handlers: dict[str, _Handler] = {
            "getMe": self._get_me,
            "logOut": self._true,
            "close": self._true,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "sendChatAction": self._send_chat_action,
            "sendVoice": self._send_voice,
            "sendAudio": self._send_audio,
            "sendDocument": self._send_document,
            "getFile": self._get_file,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "getChatMember": self._get_chat_member,
        }
        self._canonical = {name.lower(): name for name in self._handlers}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start listening on a free port of 127.0.0.1."""
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._on_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._on_download)
        # handler_cancellation: a long poll whose client hung up stops waiting at once.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Answer waiting long polls and stop the server."""
        self._closing = True
        self._wake_pollers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (API under ``/bot<token>/``)."""
        if self._url is None:
            raise RuntimeError("TelegramStandin is not started")
        return self._url

    @property
    def base_url(self) -> str:
        """The value for PTB's ``ApplicationBuilder.base_url`` (PTB appends the token)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """The value for PTB's ``ApplicationBuilder.base_file_url`` (PTB appends the token)."""
        return f"{self.url}/file/bot"

    # ------------------------------------------------------------------ users, chats, updates

    def set_user(
        self,
        user_id: int,
        *,
        first_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
    ) -> JSON:
        """Register (or change) how a user looks; builders use defaults for unknown users."""
        user: JSON = {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name or f"User{user_id}",
            "username": username or f"user{user_id}",
        }
        if language_code:
            user["language_code"] = language_code
        self._users[user_id] = user
        return copy.deepcopy(user)

    def block(self, user_id: int) -> None:
        """The user blocks the bot: sends to their chat fail with 403."""
        self._blocked.add(user_id)

    def push_update(self, update: JSON) -> int:
        """Queue a raw update (``update_id`` is assigned); returns its update_id."""
        update = {k: v for k, v in update.items() if k != "update_id"}
        update_id = self._next_update_id
        self._next_update_id += 1
        self._pending.append({"update_id": update_id, **copy.deepcopy(update)})
        self._wake_pollers()
        return update_id

    @property
    def issued_update_ids(self) -> range:
        """The ids of every update queued so far (confirmed or not), in order."""
        return range(self._first_update_id, self._next_update_id)

    def edit_text(self, message: JSON, text: str) -> JSON:
        """The user edits the text (or caption) of a message they sent; the bot gets an
        ``edited_message`` update (privacy mode permitting). Returns the edited message."""
        key = (message["chat"]["id"], message["message_id"])
        stored = self._messages.get(key)
        if stored is None or stored["from"]["id"] == self.bot_user["id"]:
            raise ValueError(f"no user message {key[1]} in chat {key[0]}")
        field_name, entities_name = (
            ("text", "entities") if "text" in stored else ("caption", "caption_entities")
        )
        stored[field_name] = text
        stored.pop(entities_name, None)
        if entities := detect_entities(text):
            stored[entities_name] = entities
        stored["edit_date"] = int(time.time())
        if self._delivered(stored):
            self.push_update({"edited_message": stored})
        else:
            self.withheld.append(copy.deepcopy(stored))
        return copy.deepcopy(stored)

    def send_text(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        *,
        chat_type: ChatType = "private",
        reply_to: JSON | int | None = None,
    ) -> JSON:
        """A user sends ``text``; ``bot_command`` and ``mention`` entities are set as Telegram
        does. Returns the message dict (as the bot will see it)."""
        content: JSON = {"text": text}
        if entities := detect_entities(text):
            content["entities"] = entities
        return self._user_message(chat_id, user_id, chat_type, content, reply_to)

    def send_command(
        self,
        chat_id: int,
        user_id: int,
        command: str,
        args: str = "",
        *,
        mention_bot: bool = False,
        chat_type: ChatType = "private",
        reply_to: JSON | int | None = None,
    ) -> JSON:
        """A user sends ``/command args``. ``command`` may be ``"say"``, ``"/say"`` or
        ``"/say@saybot_test_bot"``; ``mention_bot`` appends ``@saybot_test_bot``."""
        command = command.removeprefix("/")
        if mention_bot and "@" not in command:
            command = f"{command}@{BOT_USERNAME}"
        text = f"/{command} {args}" if args else f"/{command}"
        return self.send_text(chat_id, user_id, text, chat_type=chat_type, reply_to=reply_to)

    def send_voice(
        self,
        chat_id: int,
        user_id: int,
        audio_bytes: bytes,
        *,
        duration: int,
        caption: str | None = None,
        file_size: int | None = None,
        mime_type: str = "audio/ogg",
        chat_type: ChatType = "private",
        reply_to: JSON | int | None = None,
        forward_origin: JSON | None = None,
    ) -> JSON:
        """A user sends a voice note; its file is served by ``getFile`` and the download URL.
        ``file_size`` is what Telegram reports (default ``len(audio_bytes)``). With
        ``forward_origin`` (a MessageOrigin, e.g. ``{"type": "user", "date": ..., "sender_user":
        {...}}``) the user forwards someone's voice note: ``from`` is the user who forwards it."""
        stored = self._store_file(audio_bytes, "voice", "oga", file_size)
        stored.mime_type = mime_type
        voice = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": duration,
            "mime_type": mime_type,
            "file_size": stored.file_size,
        }
        content = {"voice": voice, **self._caption_content(caption)}
        if forward_origin is not None:
            content["forward_origin"] = copy.deepcopy(forward_origin)
        return self._user_message(chat_id, user_id, chat_type, content, reply_to)

    def send_audio(
        self,
        chat_id: int,
        user_id: int,
        audio_bytes: bytes,
        *,
        duration: int,
        file_name: str = "audio.mp3",
        mime_type: str = "audio/mpeg",
        title: str | None = None,
        performer: str | None = None,
        caption: str | None = None,
        file_size: int | None = None,
        chat_type: ChatType = "private",
        reply_to: JSON | int | None = None,
    ) -> JSON:
        """A user sends an audio file (a music attachment, e.g. an mp3)."""
        ext = file_name.rsplit(".", 1)[-1] if "." in file_name else "mp3"
        stored = self._store_file(audio_bytes, "music", ext, file_size)
        audio: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": duration,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": stored.file_size,
        }
        if title is not None:
            audio["title"] = title
        if performer is not None:
            audio["performer"] = performer
        content = {"audio": audio, **self._caption_content(caption)}
        return self._user_message(chat_id, user_id, chat_type, content, reply_to)

    def send_document(
        self,
        chat_id: int,
        user_id: int,
        data: bytes,
        *,
        file_name: str = "file.bin",
        mime_type: str = "application/octet-stream",
        caption: str | None = None,
        file_size: int | None = None,
        chat_type: ChatType = "private",
        reply_to: JSON | int | None = None,
    ) -> JSON:
        """A user sends a file as a document (e.g. a WAV attached as a file)."""
        ext = file_name.rsplit(".", 1)[-1] if "." in file_name else "bin"
        stored = self._store_file(data, "documents", ext, file_size)
        document = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": stored.file_size,
        }
        content = {"document": document, **self._caption_content(caption)}
        return self._user_message(chat_id, user_id, chat_type, content, reply_to)

    def press_button(
        self,
        chat_id: int,
        user_id: int,
        message: JSON | int,
        callback_data: str,
        *,
        chat_type: ChatType = "private",
    ) -> JSON:
        """A user presses the inline keyboard button with ``callback_data`` under the bot's
        ``message`` (a message dict or its id in ``chat_id``): the bot gets a ``callback_query``
        update. Returns the CallbackQuery (``id``, ``from``, ``message`` as stored now, with its
        ``reply_markup``, ``chat_instance``, ``data``); answer it via ``answerCallbackQuery``.

        The data is not checked against the message's keyboard (Telegram does not check it, and
        a stale client shows an old keyboard), so a press on a keyboard the bot has edited away
        is delivered too. Privacy mode does not apply to callback queries.
        """
        user = self._user(user_id)
        chat = self._chat(chat_id, chat_type, user)
        if chat["type"] == "private" and chat_id != user_id:
            raise ValueError("only the chat's own user presses buttons in a private chat")
        message_id = message if isinstance(message, int) else message["message_id"]
        stored = self._messages.get((chat_id, message_id))
        if stored is None or stored["from"]["id"] != self.bot_user["id"]:
            raise ValueError(f"no bot message {message_id} in chat {chat_id}")
        # Telegram's query ids are long decimal strings, unique across chats.
        query_id = str(4_012_345_678_000_000_000 + self._next_query)
        self._next_query += 1
        chat_instance = self._chat_instances.setdefault(
            chat_id, str(secrets.randbelow(2**63) * (1 if chat_id > 0 else -1))
        )
        query: JSON = {
            "id": query_id,
            "from": copy.deepcopy(user),
            "message": copy.deepcopy(stored),
            "chat_instance": chat_instance,
            "data": callback_data,
        }
        self.callback_queries[query_id] = query
        self.push_update({"callback_query": query})
        return copy.deepcopy(query)

    def set_member_status(self, chat_id: int, user_id: int, status: str) -> None:
        """What ``getChatMember(chat_id, user_id)`` answers: ``creator``, ``administrator``,
        ``member`` (the default), ``restricted``, ``left`` or ``kicked``."""
        if status not in _MEMBER_STATUSES:
            raise ValueError(f"unknown chat member status {status!r}")
        if user_id != self.bot_user["id"]:
            self._user(user_id)
        self._member_status[(chat_id, user_id)] = status

    def chat_history(self, chat_id: int) -> list[JSON]:
        """Every message of a chat still present (not deleted), oldest first."""
        found = [msg for (chat, _), msg in self._messages.items() if chat == chat_id]
        return copy.deepcopy(sorted(found, key=lambda msg: msg["message_id"]))

    def bot_messages(self, chat_id: int) -> list[JSON]:
        """The messages the bot sent to a chat (not deleted), oldest first."""
        bot_id = self.bot_user["id"]
        return [msg for msg in self.chat_history(chat_id) if msg["from"]["id"] == bot_id]

    @property
    def pending_updates(self) -> list[JSON]:
        """Updates queued and not yet confirmed by a ``getUpdates`` offset."""
        return copy.deepcopy(self._pending)

    # ------------------------------------------------------------------ recording

    def calls(self, method: str | None = None, *, after_seq: int = 0) -> list[Call]:
        """Recorded calls (all, or of one method), in arrival order, from ``after_seq`` on."""
        name = self._canonical.get(method.lower(), method) if method else None
        return [c for c in self._calls if c.seq >= after_seq and (name is None or c.method == name)]

    def mark(self) -> int:
        """The seq the next call will get: pass it as ``after_seq`` to ignore earlier calls."""
        return self._next_seq

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 -- a deadline per wait reads best in tests
        *,
        after_seq: int = 0,
    ) -> Call:
        """The first answered call of ``method`` (with seq >= ``after_seq``) that matches
        ``predicate``; waits up to ``timeout`` s, then raises ``WaitTimeout`` listing the calls
        seen."""
        name = self._canonical.get(method.lower(), method)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for call in self._calls:
                if (
                    call.done
                    and call.seq >= after_seq
                    and call.method == name
                    and (predicate is None or predicate(call))
                ):
                    return call
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise WaitTimeout(
                    f"no matching {name} call within {timeout} s; "
                    f"calls since seq {after_seq}: {self._summary(after_seq)}"
                )
            event = self._call_event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def download_count(self, file_id: str | None = None) -> int:
        """Downloads served for one file, or in total."""
        return self.downloads[file_id] if file_id else sum(self.downloads.values())

    # ------------------------------------------------------------------ fault injection

    def fail_next(
        self,
        method: str,
        error_code: int,
        description: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (or ``DOWNLOAD``) with an error.

        ``retry_after`` adds ``parameters.retry_after`` (PTB raises ``RetryAfter``); the
        description defaults to Telegram's wording for the code.
        """
        if description is None:
            description = (
                f"Too Many Requests: retry after {retry_after or 1}"
                if error_code == 429
                else _DEFAULT_DESCRIPTIONS.get(error_code, "Internal Server Error")
            )
        if error_code == 429 and retry_after is None:
            retry_after = 1
        name = self._canonical.get(method.lower(), method)
        self._faults[name].append(_Fault(error_code, description, retry_after, times))

    def delay_next(self, method: str, seconds: float, times: int = 1) -> None:
        """Hold the next ``times`` answers to ``method`` (or ``DOWNLOAD``) for ``seconds``."""
        name = self._canonical.get(method.lower(), method)
        self._delays[name].append(_Delay(seconds, times))

    # ------------------------------------------------------------------ HTTP layer

    async def _on_api(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        raw_method = request.match_info["method"]
        try:
            params, uploads = await self._read_params(request)
        except ValueError as exc:
            params, uploads = {}, {}
            parse_error: _ApiError | None = _bad_request(f"can't parse request: {exc}")
        else:
            parse_error = None
        files, uploads = self._attach_files(params, uploads)
        method = self._canonical.get(raw_method.lower(), raw_method)
        call = Call(method, params, files, at, self._next_seq, uploads=uploads)
        self._next_seq += 1
        self._calls.append(call)
        status, body = 200, {}
        try:
            try:
                if request.match_info["token"] != self.token:
                    raise _ApiError(401, "Unauthorized")
                handler = self._handlers.get(method)
                if handler is None:
                    raise _ApiError(404, "Not Found: method not found")
                if parse_error is not None:
                    raise parse_error
                await self._apply_delay(method)
                self._apply_fault(method)
                result = await handler(params, uploads)
                body = {"ok": True, "result": result}
            except _ApiError as err:
                status, body = err.error_code, err.body()
            call.status, call.response = status, body
            return web.json_response(body, status=status)
        finally:
            call.done = True
            self._wake_call_waiters()

    async def _on_download(self, request: web.Request) -> web.Response:
        try:
            if request.match_info["token"] != self.token:
                raise _ApiError(401, "Unauthorized")
            stored = self._files_by_path.get(request.match_info["path"])
            if stored is None or self.local_files_dir is not None:
                raise _ApiError(404, "Not Found")
            await self._apply_delay(DOWNLOAD)
            self._apply_fault(DOWNLOAD)
        except _ApiError as err:
            return web.json_response(err.body(), status=err.error_code)
        self.downloads[stored.file_id] += 1
        return web.Response(body=stored.data, content_type="application/octet-stream")

    async def _read_params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, Upload]]:
        params: dict[str, Any] = {k: _decode_field(k, v) for k, v in request.query.items()}
        uploads: dict[str, Upload] = {}
        if not request.body_exists:
            return params, uploads
        content_type = request.content_type
        if content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("JSON body is not an object")
            params.update(body)
        elif content_type == "multipart/form-data":
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    raise ValueError("unexpected multipart part")
                if part.filename is not None:
                    data = bytes(await part.read())
                    uploads[part.name] = Upload(
                        data, part.filename, part.headers.get("Content-Type")
                    )
                else:
                    params[part.name] = _decode_field(part.name, await part.text())
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    params[key] = _decode_field(key, value)
        return params, uploads

    def _attach_files(
        self, params: Mapping[str, Any], uploads: dict[str, Upload]
    ) -> tuple[dict[str, bytes], dict[str, Upload]]:
        """Key uploads by the parameter they belong to (resolving ``attach://name``); the
        files are those bytes, and those of files sent again by a ``file_id`` it holds."""
        by_param: dict[str, Upload] = {}
        known: dict[str, bytes] = {}
        remaining = dict(uploads)
        for key, value in params.items():
            if isinstance(value, str) and value.startswith("attach://"):
                part = remaining.pop(value.removeprefix("attach://"), None)
                if part is not None:
                    by_param[key] = part
            elif isinstance(value, str) and value in self.files:
                known[key] = self.files[value].data
        by_param.update(remaining)
        return {**known, **{k: v.data for k, v in by_param.items()}}, by_param

    async def _apply_delay(self, method: str) -> None:
        delays = self._delays.get(method)
        if delays:
            delay = delays[0]
            delay.times -= 1
            if delay.times <= 0:
                delays.pop(0)
            await asyncio.sleep(delay.seconds)

    def _apply_fault(self, method: str) -> None:
        faults = self._faults.get(method)
        if faults:
            fault = faults[0]
            fault.times -= 1
            if fault.times <= 0:
                faults.pop(0)
            raise _ApiError(fault.error_code, fault.description, fault.retry_after)

    def _wake_pollers(self) -> None:
        self._update_event.set()
        self._update_event = asyncio.Event()

    def _wake_call_waiters(self) -> None:
        self._call_event.set()
        self._call_event = asyncio.Event()

    def _summary(self, after_seq: int) -> str:
        calls = self.calls(after_seq=after_seq)
        polls = sum(1 for c in calls if c.method == "getUpdates")
        others = [str(c) for c in calls if c.method != "getUpdates"]
        return ", ".join([*others, f"getUpdates x{polls}"])

    # ------------------------------------------------------------------ model helpers

    def _user(self, user_id: int) -> JSON:
        if user_id == GROUP_ANONYMOUS_BOT_ID and user_id not in self._users:
            self._users[user_id] = {
                "id": user_id,
                "is_bot": True,
                "first_name": "Group",
                "username": "GroupAnonymousBot",
            }
        if user_id not in self._users:
            self.set_user(user_id)
        return self._users[user_id]

    def _chat(self, chat_id: int, chat_type: ChatType, user: JSON) -> JSON:
        known = self._chats.get(chat_id)
        if known is not None:
            if known["type"] != chat_type:
                raise ValueError(f"chat {chat_id} is a {known['type']} chat, not {chat_type}")
            return known
        if chat_type == "private":
            if chat_id != user["id"]:
                raise ValueError("in a private chat the chat id is the user's id")
            chat: JSON = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
            if "username" in user:
                chat["username"] = user["username"]
        else:
            if chat_id >= 0:
                raise ValueError("group chat ids are negative")
            chat = {"id": chat_id, "type": chat_type, "title": f"Test {chat_type} {-chat_id}"}
        self._chats[chat_id] = chat
        return chat

    def _new_message_id(self, chat_id: int) -> int:
        self._last_message_id[chat_id] = self._last_message_id.get(chat_id, 0) + 1
        return self._last_message_id[chat_id]

    def _caption_content(self, caption: str | None) -> JSON:
        if caption is None:
            return {}
        content: JSON = {"caption": caption}
        if entities := detect_entities(caption):
            content["caption_entities"] = entities
        return content

    def _replied(self, chat_id: int, reply_to: JSON | int) -> JSON:
        message_id = reply_to if isinstance(reply_to, int) else reply_to["message_id"]
        reply_chat = chat_id if isinstance(reply_to, int) else reply_to["chat"]["id"]
        found = self._messages.get((reply_chat, message_id))
        if found is None:
            if isinstance(reply_to, int):
                raise ValueError(f"no message {message_id} in chat {chat_id}")
            found = reply_to
        return {k: v for k, v in copy.deepcopy(found).items() if k != "reply_to_message"}

    def _user_message(
        self,
        chat_id: int,
        user_id: int,
        chat_type: ChatType,
        content: JSON,
        reply_to: JSON | int | None,
    ) -> JSON:
        user = self._user(user_id)
        chat = self._chat(chat_id, chat_type, user)
        message: JSON = {
            "message_id": self._new_message_id(chat_id),
            "from": copy.deepcopy(user),
            "chat": copy.deepcopy(chat),
            "date": int(time.time()),
            **content,
        }
        if user_id == GROUP_ANONYMOUS_BOT_ID:  # an anonymous admin speaks as the group
            if chat_type == "private":
                raise ValueError("anonymous admins post in groups only")
            message["sender_chat"] = copy.deepcopy(chat)
        if reply_to is not None:
            message["reply_to_message"] = self._replied(chat_id, reply_to)
        self._messages[(chat_id, message["message_id"])] = message
        if self._delivered(message):
            self.push_update({"message": message})
        else:
            self.withheld.append(copy.deepcopy(message))
        return copy.deepcopy(message)

    def _delivered(self, message: JSON) -> bool:
        """Group privacy mode: commands (general or for this bot) and replies to the bot."""
        if not self.privacy_mode or message["chat"]["type"] == "private":
            return True
        replied = message.get("reply_to_message")
        if replied is not None and replied.get("from", {}).get("id") == self.bot_user["id"]:
            return True
        text: str = message.get("text") or message.get("caption") or ""
        entities: list[JSON] = message.get("entities") or message.get("caption_entities") or []
        for entity in entities:
            if entity["type"] != "bot_command":
                continue
            utf16 = text.encode("utf-16-le")
            start, end = entity["offset"] * 2, (entity["offset"] + entity["length"]) * 2
            command = utf16[start:end].decode("utf-16-le")
            _, _, addressee = command.partition("@")
            if not addressee or addressee.lower() == BOT_USERNAME.lower():
                return True
        return False

    def _store_file(self, data: bytes, folder: str, ext: str, file_size: int | None) -> StoredFile:
        number = self._next_file
        self._next_file += 1
        prefix = {"voice": "AwACAgIAAxkBAAI", "music": "CQACAgIAAxkBAAI"}.get(
            folder, "BQACAgIAAxkBAAI"
        )
        stored = StoredFile(
            file_id=f"{prefix}{number:06d}standin",
            file_unique_id=f"AgAD{number:06d}",
            data=bytes(data),
            file_size=len(data) if file_size is None else file_size,
            file_path=f"{folder}/file_{number}.{ext}",
        )
        self.files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    def _target_chat(self, value: Any) -> JSON:
        """The chat a bot call addresses, as the API resolves ``chat_id``."""
        chat: JSON | None = None
        if isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit()):
            chat = self._chats.get(int(value))
        elif isinstance(value, str) and value.startswith("@"):
            name = value[1:].lower()
            chat = next(
                (c for c in self._chats.values() if c.get("username", "").lower() == name), None
            )
        if chat is None:
            raise _bad_request("chat not found")
        if chat["id"] in self._blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _reply_target(self, chat_id: int, params: Mapping[str, Any]) -> JSON | None:
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            if "chat_id" in reply:
                chat_id = self._target_chat(reply["chat_id"])["id"]
            allow_missing = bool(reply.get("allow_sending_without_reply", False))
        elif params.get("reply_to_message_id") is not None:
            message_id = params["reply_to_message_id"]
            allow_missing = bool(params.get("allow_sending_without_reply", False))
        else:
            return None
        found = self._messages.get((chat_id, message_id)) if isinstance(message_id, int) else None
        if found is None:
            if allow_missing:
                return None
            raise _bad_request("message to be replied not found")
        return {k: v for k, v in copy.deepcopy(found).items() if k != "reply_to_message"}

    def _caption(self, params: Mapping[str, Any]) -> JSON:
        caption = params.get("caption")
        if caption is None or caption == "":
            return {}
        plain = _plain_text(str(caption), params.get("parse_mode"))
        if utf16_len(plain) > MAX_CAPTION_UTF16:
            raise _bad_request("message caption is too long")
        return {"caption": plain}

    def _bot_message(self, params: Mapping[str, Any], content: JSON) -> JSON:
        """Validate chat and reply target, store and return a message sent by the bot."""
        chat = self._target_chat(params.get("chat_id"))
        reply = self._reply_target(chat["id"], params)
        message: JSON = {
            "message_id": self._new_message_id(chat["id"]),
            "from": copy.deepcopy(self.bot_user),
            "chat": copy.deepcopy(chat),
            "date": int(time.time()),
            **content,
        }
        if reply is not None:
            message["reply_to_message"] = reply
        markup = _inline_markup(params)
        if markup is not None:
            message["reply_markup"] = markup
        self._messages[(chat["id"], message["message_id"])] = message
        return copy.deepcopy(message)

    def _input_file(
        self, params: Mapping[str, Any], uploads: Mapping[str, Upload], name: str
    ) -> tuple[StoredFile | None, Upload | None]:
        """The file for parameter ``name``: a fresh upload, or a known file_id."""
        if name in uploads:
            upload = uploads[name]
            if not upload.data:
                raise _bad_request("file must be non-empty")
            return None, upload
        value = params.get(name)
        if value is None or value == "":
            raise _bad_request(f"there is no {name} in the request")
        if isinstance(value, str) and value in self.files:
            return self.files[value], None
        raise _bad_request("wrong file identifier/HTTP URL specified")

    # ------------------------------------------------------------------ methods

    async def _true(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        return True

    async def _get_me(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        if self.webhook is not None:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        limit = min(100, max(1, int(params.get("limit") or 100)))
        timeout = min(self.max_poll_s, max(0.0, float(params.get("timeout") or 0)))
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):  # sticky, as in the real API; [] means the default set
            self._allowed_updates = frozenset(allowed) or _DEFAULT_UPDATE_TYPES
        if offset > 0:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        elif offset < 0:
            self._pending = self._pending[offset:]
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake_pollers()  # ends an older poll with 409
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            batch = [u for u in self._pending if self._update_type(u) in self._allowed_updates]
            if batch or self._closing:
                return copy.deepcopy(batch[:limit])
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            event = self._update_event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)
            if generation != self._poll_generation:
                raise _ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one "
                    "bot instance is running",
                )

    @staticmethod
    def _update_type(update: JSON) -> str:
        return next(k for k in update if k != "update_id")

    async def _set_webhook(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        url = params.get("url") or ""
        if not url:
            self.webhook = None
            return True
        if not str(url).startswith("https://"):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook = dict(params)
        if params.get("drop_pending_updates"):
            self._pending.clear()
        return True

    async def _delete_webhook(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self._pending.clear()
        return True

    async def _get_webhook_info(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        info: JSON = {
            "url": (self.webhook or {}).get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self.webhook is not None:
            info["max_connections"] = self.webhook.get("max_connections", 40)
            if "allowed_updates" in self.webhook:
                info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    @staticmethod
    def _commands_key(params: Mapping[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    async def _set_my_commands(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request("can't parse commands JSON object")
        for command in commands:
            if not isinstance(command, dict) or not _COMMAND_NAME.fullmatch(
                str(command.get("command", ""))
            ):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad_request("command description must be non-empty")
        key = self._commands_key(params)
        if commands:
            self.commands[key] = [
                {"command": c["command"], "description": c["description"]} for c in commands
            ]
        else:
            self.commands.pop(key, None)
        return True

    async def _get_my_commands(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        return copy.deepcopy(self.commands.get(self._commands_key(params), []))

    async def _delete_my_commands(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        self.commands.pop(self._commands_key(params), None)
        return True

    async def _send_message(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        text = params.get("text")
        if text is None or str(text).strip() == "":
            raise _bad_request("message text is empty")
        plain = _plain_text(str(text), params.get("parse_mode"))
        if not plain.strip():
            raise _bad_request("text must be non-empty")
        if utf16_len(plain) > MAX_TEXT_UTF16:
            raise _bad_request("message is too long")
        return self._bot_message(params, {"text": plain})

    async def _send_chat_action(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        self._target_chat(params.get("chat_id"))
        if params.get("action") not in _CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True

    async def _send_voice(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        self._target_chat(params.get("chat_id"))
        known, upload = self._input_file(params, uploads, "voice")
        caption = self._caption(params)
        mime: str | None
        seconds: float | None
        if known is not None:
            stored, mime, seconds = known, known.mime_type or "audio/ogg", None
        else:
            assert upload is not None
            mime, seconds = _audio_kind(upload.data)
            if mime is None:
                # Not OGG/Opus, MP3 or M4A: Telegram sends it as a plain file.
                return self._bot_message(params, {"document": self._document(upload), **caption})
            stored = self._store_file(upload.data, "voice", "oga", None)
            stored.mime_type = mime
        duration = params.get("duration")
        if not isinstance(duration, int):
            duration = round(seconds) if seconds is not None else 0
        voice = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": duration,
            "mime_type": mime,
            "file_size": stored.file_size,
        }
        return self._bot_message(params, {"voice": voice, **caption})

    def _document(self, upload: Upload) -> JSON:
        name = upload.filename or "file"
        ext = name.rsplit(".", 1)[-1] if "." in name else "bin"
        stored = self._store_file(upload.data, "documents", ext, None)
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": name,
            "mime_type": upload.content_type or "application/octet-stream",
            "file_size": stored.file_size,
        }

    async def _send_audio(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        self._target_chat(params.get("chat_id"))
        known, upload = self._input_file(params, uploads, "audio")
        caption = self._caption(params)
        if known is not None:
            stored, name, mime = known, known.file_path.rsplit("/", 1)[-1], "audio/mpeg"
        else:
            assert upload is not None
            name = upload.filename or "audio.mp3"
            ext = name.rsplit(".", 1)[-1] if "." in name else "mp3"
            stored = self._store_file(upload.data, "music", ext, None)
            mime = upload.content_type or "audio/mpeg"
        audio: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": params.get("duration") if isinstance(params.get("duration"), int) else 0,
            "file_name": name,
            "mime_type": mime,
            "file_size": stored.file_size,
        }
        for key in ("title", "performer"):
            if params.get(key):
                audio[key] = params[key]
        return self._bot_message(params, {"audio": audio, **caption})

    async def _send_document(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        self._target_chat(params.get("chat_id"))
        known, upload = self._input_file(params, uploads, "document")
        caption = self._caption(params)
        if known is not None:
            name = known.file_path.rsplit("/", 1)[-1]
            document = {
                "file_id": known.file_id,
                "file_unique_id": known.file_unique_id,
                "file_name": name,
                "file_size": known.file_size,
            }
        else:
            assert upload is not None
            document = self._document(upload)
        return self._bot_message(params, {"document": document, **caption})

    async def _get_file(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        self.getfile_count += 1
        stored = self.files.get(str(params.get("file_id", "")))
        if stored is None:
            raise _bad_request("invalid file_id")
        file_path = stored.file_path
        if self.local_files_dir is not None:  # `--local`: the bot reads the server's disk
            local = self.local_files_dir / self.token / stored.file_path
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(stored.data)
            file_path = str(local.resolve())
        elif stored.file_size > MAX_GETFILE_BYTES:
            raise _bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "file_path": file_path,
        }

    def _message_for_edit(self, params: Mapping[str, Any], what: str) -> JSON:
        if params.get("inline_message_id"):
            raise _bad_request("inline messages are not supported by the stand-in")
        chat = self._target_chat(params.get("chat_id"))
        message_id = params.get("message_id")
        message = self._messages.get((chat["id"], message_id if isinstance(message_id, int) else 0))
        if message is None:
            raise _bad_request(f"message to {what} not found")
        return message

    async def _edit_message_text(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        message = self._message_for_edit(params, "edit")
        if message["from"]["id"] != self.bot_user["id"]:
            raise _bad_request("message can't be edited")
        if "text" not in message:
            raise _bad_request("there is no text in the message to edit")
        text = params.get("text")
        if text is None or str(text).strip() == "":
            raise _bad_request("message text is empty")
        plain = _plain_text(str(text), params.get("parse_mode"))
        if utf16_len(plain) > MAX_TEXT_UTF16:
            raise _bad_request("message is too long")
        markup = _inline_markup(params)  # none given: the keyboard goes, as in Telegram
        if plain == message["text"] and markup == message.get("reply_markup"):
            raise _bad_request(_NOT_MODIFIED)
        message["text"] = plain
        message.pop("entities", None)  # the stand-in keeps no formatting entities
        self._set_markup(message, markup)
        return copy.deepcopy(message)

    async def _edit_message_reply_markup(
        self, params: dict[str, Any], uploads: dict[str, Upload]
    ) -> Any:
        message = self._message_for_edit(params, "edit")
        if message["from"]["id"] != self.bot_user["id"]:
            raise _bad_request("message can't be edited")
        markup = _inline_markup(params)  # none given: the keyboard is removed
        if markup == message.get("reply_markup"):
            raise _bad_request(_NOT_MODIFIED)
        self._set_markup(message, markup)
        return copy.deepcopy(message)

    @staticmethod
    def _set_markup(message: JSON, markup: JSON | None) -> None:
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())

    async def _answer_callback_query(
        self, params: dict[str, Any], uploads: dict[str, Upload]
    ) -> Any:
        query_id = str(params.get("callback_query_id", ""))
        if query_id not in self.callback_queries or query_id in self.callback_answers:
            raise _bad_request(_QUERY_INVALID)
        text = params.get("text")
        if text is not None and len(str(text)) > 200:
            raise _bad_request("MESSAGE_TOO_LONG")
        self.callback_answers[query_id] = dict(params)
        return True

    async def _get_chat_member(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        chat = self._target_chat(params.get("chat_id"))
        user_id = params.get("user_id")
        if not isinstance(user_id, int):
            raise _bad_request("invalid user_id specified")
        if user_id == self.bot_user["id"]:
            user = self.bot_user
        elif user_id in self._users:
            user = self._users[user_id]
        else:
            raise _bad_request("user not found")
        status = self._member_status.get((chat["id"], user_id), "member")
        return _chat_member(status, user)

    async def _delete_message(self, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        message = self._message_for_edit(params, "delete")
        del self._messages[(message["chat"]["id"], message["message_id"])]
        return True
