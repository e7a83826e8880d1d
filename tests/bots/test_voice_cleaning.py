"""What the channel reader makes of a chat message before speaking it."""

from __future__ import annotations

import pytest

from bots.discord_bot.voice.cleaning import Names, capped, spoken_text

NAMES = Names(users={1: "Alice"}, roles={2: "Mods"}, channels={3: "general"})


@pytest.mark.parametrize(
    ("message", "spoken"),
    [
        ("look https://example.com/a?b=c now", "look a link now"),
        ("<https://example.com> quiet", "a link quiet"),
        ("hi <@1> and <@!1>, ask <@&2> in <#3>", "hi Alice and Alice, ask Mods in general"),
        ("who is <@9> in <#8>", "who is someone in a channel"),
        ("nice <:party_parrot:123> <a:wave:456>", "nice party parrot wave"),
        ("see:\n```py\nprint('x')\n```\ndone", "see: done"),
        ("run `rm -rf` please", "run please"),
        ("noooooooo!!!!!!!", "nooo!!!"),
        ("**bold** and __under__ ~~gone~~ ||secret||", "bold and under gone secret"),
        ("snake_case stays, 2*3 too", "snake_case stays, 2*3 too"),
        ("> quoted\n# heading", "quoted heading"),
        ("at <t:1700000000:R>", "at"),
        ("```only code```", ""),
        ("   ", ""),
    ],
)
def test_spoken_text(message: str, spoken: str) -> None:
    assert spoken_text(message, NAMES, 300) == spoken


def test_length_cap_cuts_at_a_word() -> None:
    assert capped("one two three four", 12) == "one two…"
    assert capped("short", 12) == "short"
    assert len(spoken_text("word " * 200, NAMES, 50)) <= 50
