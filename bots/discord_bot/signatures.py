"""What the slash commands' signatures share: option ranges and groups of subcommands.

One source for the numbers: the service's contract (``PARAM_RANGES``, ``MAX_TEXT_CHARS``);
Discord enforces them in its UI. Discord integers stop at 2**53.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from discord import app_commands

from tts_service.schema import LANGUAGE_NAMES, MAX_TEXT_CHARS, PARAM_RANGES

EXAGGERATION = PARAM_RANGES["exaggeration"]
TEMPERATURE = PARAM_RANGES["temperature"]
CFG_WEIGHT = PARAM_RANGES["cfg_weight"]
SEED = PARAM_RANGES["seed"]
Text = app_commands.Range[str, 1, MAX_TEXT_CHARS]
Exaggeration = app_commands.Range[float, EXAGGERATION.minimum, EXAGGERATION.maximum]
Temperature = app_commands.Range[float, TEMPERATURE.minimum, TEMPERATURE.maximum]
CfgWeight = app_commands.Range[float, CFG_WEIGHT.minimum, CFG_WEIGHT.maximum]
Seed = app_commands.Range[int, int(SEED.minimum), 2**53]
Language = app_commands.Range[str, 2, 2]
MAX_CHOICES = 25  # what Discord shows of an autocomplete's answer


def language_choices(languages: Sequence[str], typed: str) -> list[app_commands.Choice[str]]:
    """The engine's languages whose code or name starts with what was typed, as choices."""
    typed = typed.strip().lower()
    matching = [
        code
        for code in languages
        if code.startswith(typed) or LANGUAGE_NAMES.get(code, "").lower().startswith(typed)
    ]
    return [
        app_commands.Choice(name=f"{LANGUAGE_NAMES.get(code, code)} ({code})", value=code)
        for code in matching[:MAX_CHOICES]
    ]


Callback = Callable[..., Coroutine[Any, Any, None]]


def group(
    name: str, description: str, commands: Sequence[tuple[str, str, Callback]], **options: Any
) -> app_commands.Group:
    """``/name`` with one subcommand per ``(name, description, callback)``; ``options`` go
    to ``app_commands.Group`` (e.g. ``default_permissions``)."""
    parent = app_commands.Group(name=name, description=description, **options)
    for sub, sub_description, callback in commands:
        parent.add_command(
            app_commands.Command(
                name=sub, description=sub_description, callback=callback, parent=parent
            )
        )
    return parent
