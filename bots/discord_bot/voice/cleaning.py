"""A chat message made fit to be spoken: what a listener should hear, not its markup.

Links become "a link", user/role/channel mentions their names, custom emoji their names;
code blocks (and inline code) are skipped; a character repeated many times is said at most
three times ("nooooo" → "nooo"); whitespace is collapsed; the result is cut at a word
boundary to the length cap. Pure functions: the reader passes the names it knows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

A_LINK = "a link"
SOMEONE, A_ROLE, A_CHANNEL = "someone", "a role", "a channel"
MAX_REPEAT = 3

_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"<?\b(?:https?|ftp)://[^\s>]+>?", re.IGNORECASE)
_USER = re.compile(r"<@!?(\d+)>")
_ROLE = re.compile(r"<@&(\d+)>")
_CHANNEL = re.compile(r"<#(\d+)>")
_EMOJI = re.compile(r"<a?:(\w+):\d+>")
_TIMESTAMP = re.compile(r"<t:-?\d+(?::[tTdDfFR])?>")
_REPEATED = re.compile(r"(.)\1{" + str(MAX_REPEAT) + ",}", re.DOTALL)
_MARKUP = re.compile(r"(\*\*|__|~~|\|\||(?<!\w)[*_](?!\s)|(?<!\s)[*_](?!\w))")
_HEADING = re.compile(r"^\s*(#{1,3}|-#|>{1,3})\s+", re.MULTILINE)
_SPACE = re.compile(r"\s+")
_BEFORE_PUNCTUATION = re.compile(r" ([,.!?;:])")


@dataclass(frozen=True)
class Names:
    """The names behind a message's mentions (ids Discord resolved in the message)."""

    users: Mapping[int, str] = field(default_factory=dict)
    roles: Mapping[int, str] = field(default_factory=dict)
    channels: Mapping[int, str] = field(default_factory=dict)


def spoken_text(content: str, names: Names, max_chars: int) -> str:
    """``content`` as it should be heard, at most ``max_chars`` long ("" : nothing to say)."""
    text = _CODE_BLOCK.sub(" ", content)
    text = _INLINE_CODE.sub(" ", text)
    text = _LINK.sub(f" {A_LINK} ", text)
    text = _USER.sub(_named(names.users, SOMEONE), text)
    text = _ROLE.sub(_named(names.roles, A_ROLE), text)
    text = _CHANNEL.sub(_named(names.channels, A_CHANNEL), text)
    text = _EMOJI.sub(lambda m: f" {m[1].replace('_', ' ')} ", text)
    text = _TIMESTAMP.sub(" ", text)
    text = _HEADING.sub("", text)
    text = _MARKUP.sub("", text)
    text = _REPEATED.sub(lambda m: m[1] * MAX_REPEAT, text)
    text = _SPACE.sub(" ", text).strip()
    text = _BEFORE_PUNCTUATION.sub(r"\1", text)  # "Alice ," left by a mention
    return capped(text, max_chars)


def capped(text: str, max_chars: int) -> str:
    """``text`` cut at the last word boundary within ``max_chars`` (with "…")."""
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "…"


def _named(names: Mapping[int, str], unknown: str) -> Callable[[re.Match[str]], str]:
    return lambda m: f" {names.get(int(m[1]), unknown)} "
