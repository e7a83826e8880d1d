"""Chat syntax: ``/say exaggeration=0.8 seed=42 Hello`` → options + text. Pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bots.errors import InvalidInput
from tts_service.schema import PARAM_RANGES

_COMMAND = re.compile(r"^/(?P<name>[A-Za-z0-9_]+)(?:@(?P<bot>[A-Za-z0-9_]+))?(?:\s+|$)")
_OPTION = re.compile(r"^(?P<key>[A-Za-z_]+)=(?P<value>\S*)$")


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
    return ", ".join(f"{name}= ({r.describe()})" for name, r in PARAM_RANGES.items())


def parse_options(rest: str) -> tuple[dict[str, float | int], str]:
    """Leading ``key=value`` tokens become options; everything after them is the text.

    Only leading tokens count, so ``/say I like a=b`` speaks "I like a=b".
    """
    options: dict[str, float | int] = {}
    words = rest.split()
    consumed = 0
    for word in words:
        match = _OPTION.match(word)
        if match is None:
            break
        key, value = match["key"].lower(), match["value"]
        if key not in PARAM_RANGES:
            raise InvalidInput(f"unknown option {key}=; the options are {allowed_options()}")
        options[key] = _number(key, value)
        consumed += 1
    return options, " ".join(words[consumed:])


def _number(key: str, value: str) -> float | int:
    try:
        return int(value) if key == "seed" else float(value)
    except ValueError:
        raise InvalidInput(f"{key} must be {PARAM_RANGES[key].describe()}") from None
