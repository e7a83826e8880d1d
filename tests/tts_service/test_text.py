"""Normalisation and sentence chunking."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tts_service.schema import TTSParams, normalize_text
from tts_service.text import split_into_chunks, split_sentences


def test_normalize_collapses_whitespace_and_composes_unicode() -> None:
    assert normalize_text("  hi \t\n there  ") == "hi there"
    assert normalize_text("cafe\u0301") == "caf\u00e9"


def test_normalize_removes_control_characters_and_keeps_whitespace_ones_as_spaces() -> None:
    c0_c1_and_del = "".join(map(chr, [*range(0x00, 0x09), *range(0x0E, 0x20), *range(0x7F, 0x85)]))
    assert normalize_text(f"Hel{c0_c1_and_del}lo\x86\x9f there") == "Hello there"
    # Tab, line breaks and NEL are whitespace: they separate words, as a space does.
    assert normalize_text("one\ttwo\nthree\r\nfour\x0bfive\x0csix\x85seven") == (
        "one two three four five six seven"
    )
    assert normalize_text("\x00\x01 \x02") == ""


def test_text_of_control_characters_only_has_nothing_to_say() -> None:
    with pytest.raises(ValidationError, match=r"text has nothing to say in it"):
        TTSParams(text="\x00\x01")
    with pytest.raises(ValidationError, match=r"text is empty"):
        TTSParams(text=" \n\t ")
    assert TTSParams(text="\x00\x01\x02 control chars").text == "control chars"


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
