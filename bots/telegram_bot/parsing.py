"""Chat syntax: ``/say exaggeration=0.8 seed=42 Hello`` → options + text. Pure functions.

``lang=fr`` (or ``language=fr``) asks the multilingual engine for a language; the flow
checks it against the languages the engine lists.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from bots.errors import InvalidInput
from bots.requests import OPTIONS, OptionValue
from tts_service.schema import LANGUAGE_OPTION, PARAM_RANGES

_COMMAND = re.compile(r"^/(?P<name>[A-Za-z0-9_]+)(?:@(?P<bot>[A-Za-z0-9_]+))?(?:\s+|$)")
# One leading ``key=value`` token and the whitespace after it.
_LEADING_OPTION = re.compile(r"(?P<key>[A-Za-z_]+)=(?P<value>\S*)(?:\s+|$)")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
# How close a key must be to a real option to count as a misspelling of it (difflib ratio).
_MISSPELLING_CUTOFF = 0.9  # "temprature" is one; "speed" is not "seed"
_ALIASES = {"lang": LANGUAGE_OPTION}


@dataclass(frozen=True)
class Command:
    name: str
    bot: str | None
    rest: str


def split_command(text: str) -> Command | None:
    """``/say@bot rest`` → Command('say', 'bot', 'rest'); None when not a command."""
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    return Command(match["name"].lower(), match["bot"], text.strip()[match.end() :])


def allowed_options() -> str:
    numbers = ", ".join(f"{name}= ({r.describe()})" for name, r in PARAM_RANGES.items())
    return f"{numbers}, lang= (a language code such as fr, on the multilingual engine)"


def parse_options(rest: str) -> tuple[dict[str, OptionValue], str]:
    """Leading option tokens become options; everything after them is the text, as written.

    A leading ``key=value`` is an option when the key is one (any case), looks like a
    misspelling of one, or has a number for its value (``speed=2``): those get the list of
    options when wrong. Anything else ends the options, so ``/say Warning=loud noises`` and
    ``/say I like a=b`` are spoken as written, line breaks included.
    """
    options: dict[str, OptionValue] = {}
    text = rest.strip()
    while (match := _LEADING_OPTION.match(text)) is not None:
        key, value = match["key"].lower(), match["value"]
        key = _ALIASES.get(key, key)
        if key == LANGUAGE_OPTION:
            options[key] = value.lower()  # checked with the others, by the flow
        elif key in PARAM_RANGES:
            options[key] = _number(key, value)
        elif _looks_like_an_option(key, value):
            raise InvalidInput(
                f"unknown option {key}={_did_you_mean(key)}; the options are {allowed_options()}"
            )
        else:
            break
        text = text[match.end() :]
    return options, text


def _looks_like_an_option(key: str, value: str) -> bool:
    return bool(_close_options(key)) or _NUMBER.fullmatch(value) is not None


def _close_options(key: str) -> list[str]:
    return difflib.get_close_matches(key, OPTIONS, n=1, cutoff=_MISSPELLING_CUTOFF)


def _did_you_mean(key: str) -> str:
    close = _close_options(key)
    return f" (did you mean {close[0]}=?)" if close else ""


def _number(key: str, value: str) -> float | int:
    try:
        return int(value) if key == "seed" else float(value)
    except ValueError:
        raise InvalidInput(f"{key} must be {PARAM_RANGES[key].describe()}") from None
