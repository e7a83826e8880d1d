"""Normalisation and sentence chunking."""

from __future__ import annotations

import pytest

from tts_service.schema import normalize_text
from tts_service.text import split_into_chunks, split_sentences


def test_normalize_collapses_whitespace_and_composes_unicode() -> None:
    assert normalize_text("  hi \t\n there  ") == "hi there"
    assert normalize_text("cafe\u0301") == "caf\u00e9"


def test_sentences_keep_their_punctuation() -> None:
    text = 'He said "stop." Then? Yes! Done… ok'
    assert split_sentences(text) == ['He said "stop."', "Then?", "Yes!", "Done…", "ok"]


@pytest.mark.parametrize("max_chars", [20, 50, 120, 300])
def test_chunks_keep_order_and_every_word(max_chars: int) -> None:
    text = normalize_text(
        "First sentence here. Second one is a little longer, with a clause; and more. "
        "Third! A supercalifragilisticexpialidociouslyextendedword appears. Last one?"
    )
    chunks = split_into_chunks(text, max_chars)
    assert all(0 < len(chunk) <= max_chars for chunk in chunks)
    assert "".join(chunks).replace(" ", "") == text.replace(" ", "")
    if max_chars >= 60:
        assert " ".join(chunks) == text  # no word had to be cut


def test_sentences_are_packed_greedily_and_never_split_when_they_fit() -> None:
    chunks = split_into_chunks("One. Two. Three. Four.", 10)
    assert chunks == ["One. Two.", "Three.", "Four."]


def test_an_overlong_sentence_breaks_at_clauses_then_words() -> None:
    sentence = "alpha beta gamma, delta epsilon zeta, eta theta iota kappa lambda mu nu xi"
    chunks = split_into_chunks(sentence, 20)
    assert chunks[0] == "alpha beta gamma,"
    assert all(len(c) <= 20 for c in chunks)
    assert " ".join(chunks) == sentence


def test_rejects_a_non_positive_limit() -> None:
    with pytest.raises(ValueError, match="positive"):
        split_into_chunks("text", 0)
