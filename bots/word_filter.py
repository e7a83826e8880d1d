"""Blocked words, matched whole-word, ignoring case and accents.

The text and each blocked entry are folded (NFKD, combining marks dropped, casefolded) and
split into words at anything that is not a letter or a digit; an entry of several words
matches those words in a row. So "darn" blocks "Darn!", "DÁRN" and "oh, darn it", but not
"darnation"; "bad word" blocks "bad, WORD" but not "bad words". Whole words keep innocent
texts speakable ("class" does not contain a blocked "ass"). Not caught: languages written
without spaces between words (Chinese, Japanese, Thai) and spelling tricks ("d4rn",
"d a r n").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_WORD = re.compile(r"[^\W_]+")  # letters and digits; everything else separates words


def fold(text: str) -> str:
    """``text`` without case or accents: NFKD, combining marks dropped, casefolded."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words_of(text: str) -> list[str]:
    """The folded words of ``text``."""
    return _WORD.findall(fold(text))


def folded_phrase(text: str) -> str:
    """A blocked entry as it is stored and matched: its folded words, one space apart
    (empty if it has no letter or digit)."""
    return " ".join(words_of(text))


@dataclass(frozen=True)
class WordFilter:
    """Blocked words and phrases, already folded (``folded_phrase``)."""

    phrases: frozenset[str] = frozenset()

    @classmethod
    def of(cls, entries: Iterable[str]) -> WordFilter:
        return cls(frozenset(p for p in map(folded_phrase, entries) if p))

    def blocks(self, text: str) -> bool:
        if not self.phrases:
            return False
        padded = f" {' '.join(words_of(text))} "
        return any(f" {phrase} " in padded for phrase in self.phrases)


def read_word_list(path: Path) -> list[str]:
    """``BLOCKED_WORDS_FILE``: a word or phrase a line; blank lines and ``#`` comments skipped."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]
