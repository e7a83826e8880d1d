"""``/settings``: what a community's admins may change, parsed and checked in one place.

Telegram passes the command's text to ``parse_setting``; Discord's typed options build the
same ``SettingChange``s. ``fields_of`` checks every value (``InvalidSetting``, one sentence
naming the range) and turns the changes into fields of ``storage.chat_settings``.

    /settings                           show them (anyone)
    /settings cloning on|off            /settings saved_voices on|off
    /settings max_text 300              the longest text (1–1000; 0 or off: the bot's limit)
    /settings rate 3                    requests a minute per user (1–60; 0 or off: the bot's)
    /settings quota 600                 GPU seconds a day for everyone here (0 or off: the bot's)
    /settings block word "a phrase"     /settings unblock word
    /settings exaggeration 0.7          temperature, cfg_weight too (off: the engine's default)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bots.errors import InvalidSetting
from bots.word_filter import folded_phrase
from storage import chat_settings as fields
from tts_service.schema import MAX_TEXT_CHARS, PARAM_RANGES

TOGGLES = (fields.CLONING, fields.SAVED_VOICES, fields.READ_NAMES)
DISCORD_ONLY = (fields.READ_NAMES,)  # the channel reader's (Discord voice channels)
# name → (largest value, what it counts); the smallest is 1, and 0 means the bot's own
NUMBERS: dict[str, tuple[int, str]] = {
    fields.MAX_TEXT: (MAX_TEXT_CHARS, "characters"),
    fields.RATE: (60, "requests a minute per user"),
    fields.QUOTA: (86_400, "GPU seconds a day"),
}
DEFAULTS = ("exaggeration", "temperature", "cfg_weight")  # the options a community may default
BLOCK, UNBLOCK = "block", "unblock"
NAMES = (*(t for t in TOGGLES if t not in DISCORD_ONLY), *NUMBERS, BLOCK, UNBLOCK, *DEFAULTS)
MAX_BLOCKED = 100  # words and phrases per community
MAX_PHRASE_CHARS = 60
_ON = {"on", "yes", "true", "1", "allow", "allowed"}
_OFF = {"off", "no", "false", "0", "deny", "denied"}
_RESET = {"off", "default", "reset", "none"}
# A word, or a phrase in straight or curly double quotes (what phones type).
_PHRASE = re.compile(r'"([^"]+)"|“([^”]+)”|(\S+)')


@dataclass(frozen=True)
class SettingChange:
    """One change: ``name`` to ``value`` (None: back to the bot's or engine's default), or
    ``words`` blocked or unblocked."""

    name: str
    value: bool | float | None = None
    words: tuple[str, ...] = ()


def phrases(text: str) -> tuple[str, ...]:
    """``a b "c d"`` → ``("a", "b", "c d")``."""
    return tuple(next(g for g in m.groups() if g) for m in _PHRASE.finditer(text))


def parse_setting(text: str) -> SettingChange | None:
    """A Telegram ``/settings`` argument as a change; None for no argument (show them)."""
    name, _, rest = text.strip().partition(" ")
    name, rest = name.lower().replace("-", "_"), rest.strip()
    if not name:
        return None
    if name not in NAMES:
        raise InvalidSetting(f"there is no setting {name!r}; the settings are {', '.join(NAMES)}")
    if name in (BLOCK, UNBLOCK):
        return SettingChange(name, words=phrases(rest))
    value = rest.lower()
    if name in TOGGLES:
        if value not in _ON | _OFF:
            raise InvalidSetting(f"{name} is on or off, e.g. /settings {name} off")
        return SettingChange(name, value in _ON)
    if value in _RESET:
        return SettingChange(name, None)
    try:
        return SettingChange(name, float(value))
    except ValueError:
        example = f"/settings {name} {_example(name)}"
        raise InvalidSetting(f"{name} {_range(name)}, e.g. {example}") from None


def fields_of(
    changes: Sequence[SettingChange], blocked: Iterable[str] = ()
) -> tuple[dict[str, str], list[str]]:
    """The fields to set and to remove for ``changes``, each value checked; ``blocked`` is
    what the community blocks already (its number is capped)."""
    put: dict[str, str] = {}
    drop: list[str] = []
    now_blocked = set(blocked)
    for change in changes:
        name, value = change.name, change.value
        if name in TOGGLES:
            if not isinstance(value, bool):
                raise InvalidSetting(f"{name} is on or off")
            put[name] = fields.ON if value else fields.OFF
        elif name in NUMBERS or name in DEFAULTS:
            field = name if name in NUMBERS else f"{fields.DEFAULT_PREFIX}{name}"
            checked = _checked_number(name, value)
            if checked is None:
                drop.append(field)
            else:
                put[field] = checked
        elif name == BLOCK:
            for phrase in _folded(change.words):
                put[f"{fields.BLOCK_PREFIX}{phrase}"] = "1"
                now_blocked.add(phrase)
            if len(now_blocked) > MAX_BLOCKED:
                raise InvalidSetting(f"a community blocks at most {MAX_BLOCKED} words or phrases")
        elif name == UNBLOCK:
            drop.extend(f"{fields.BLOCK_PREFIX}{phrase}" for phrase in _folded(change.words))
        else:
            raise InvalidSetting(f"there is no setting {name!r}")
    return put, drop


def _checked_number(name: str, value: bool | float | None) -> str | None:
    """The value as stored, None to go back to the default, or ``InvalidSetting``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidSetting(f"{name} {_range(name)}")
    if name in NUMBERS:
        if value == 0:
            return None
        if value != int(value) or not 1 <= value <= NUMBERS[name][0]:
            raise InvalidSetting(f"{name} {_range(name)}")
        return str(int(value))
    bounds = PARAM_RANGES[name]
    if not bounds.minimum <= value <= (bounds.maximum if bounds.maximum is not None else value):
        raise InvalidSetting(f"{name} {_range(name)}")
    return repr(float(value))


def _folded(words: Sequence[str]) -> list[str]:
    if not words:
        raise InvalidSetting('name the words, e.g. /settings block darn "oh heck"')
    folded = []
    for word in words:
        phrase = folded_phrase(word)
        if not phrase:
            raise InvalidSetting(f"{word!r} has no letters or digits to match")
        if len(phrase) > MAX_PHRASE_CHARS:
            raise InvalidSetting(f"a blocked phrase is at most {MAX_PHRASE_CHARS} characters")
        folded.append(phrase)
    return folded


def _range(name: str) -> str:
    if name in NUMBERS:
        largest, unit = NUMBERS[name]
        return f"is a whole number of {unit} from 1 to {largest} (0 or off: the bot's own)"
    return f"is {PARAM_RANGES[name].describe()} (off: the engine's default)"


def _example(name: str) -> str:
    return {fields.MAX_TEXT: "300", fields.RATE: "3", fields.QUOTA: "600"}.get(name, "0.7")
