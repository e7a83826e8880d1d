"""``/say`` syntax: which leading ``key=value`` tokens are options, and what text is left."""

from __future__ import annotations

import pytest

from bots.errors import InvalidInput
from bots.telegram_bot.parsing import parse_options, split_command


@pytest.mark.parametrize(
    ("rest", "options", "text"),
    [
        ("exaggeration=0.8 seed=42 Hello", {"exaggeration": 0.8, "seed": 42}, "Hello"),
        ("Seed=3 Capitals are fine", {"seed": 3}, "Capitals are fine"),
        ("Warning=loud noises ahead", {}, "Warning=loud noises ahead"),
        ("E=mc2 is famous", {}, "E=mc2 is famous"),
        ("I like a=b and c=1", {}, "I like a=b and c=1"),
        ("seed=1 x=y stays text", {"seed": 1}, "x=y stays text"),
        ("seed=7", {"seed": 7}, ""),
        ("lang=FR seed=2 Bonjour", {"language": "fr", "seed": 2}, "Bonjour"),
        ("language=de Guten Tag", {"language": "de"}, "Guten Tag"),
    ],
)
def test_options_and_text(rest: str, options: dict[str, float | str], text: str) -> None:
    assert parse_options(rest) == (options, text)


def test_line_breaks_and_spacing_of_the_text_are_kept() -> None:
    command = split_command("/say seed=2 First line.\nSecond  line.\n\nThird.")
    assert command is not None
    assert parse_options(command.rest) == ({"seed": 2}, "First line.\nSecond  line.\n\nThird.")


@pytest.mark.parametrize(
    ("rest", "message"),
    [
        ("speed=2 Hello", "unknown option speed=; the options are exaggeration= "),
        ("pitch=-3 Hello", "unknown option pitch=; the options are"),
        ("temprature=hot Hello", "unknown option temprature= (did you mean temperature=?)"),
        ("cfg_weigth=x Hello", "(did you mean cfg_weight=?)"),
        ("seed=0.5 Hello", "seed must be a whole number ≥ 0"),
        ("languge=fr Hello", "(did you mean language=?)"),
        ("speed=2 Hello", "lang= (a language code such as fr"),
    ],
)
def test_option_like_mistakes_name_the_options(rest: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_options(rest)
    assert message in caught.value.message
