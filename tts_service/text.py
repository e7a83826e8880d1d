"""Sentence chunking for long text.

Chatterbox garbles or cuts off past roughly 300 characters (about 40 s of
speech), and Piper is happiest per sentence too, so long text is split at
sentence boundaries into chunks no longer than the engine's
``max_chunk_chars``; a sentence that is itself too long is split at clause
punctuation, then at spaces, never inside a word unless the word alone is
longer than the limit.
"""

from __future__ import annotations

import re

# A sentence ends at . ! ? … (optionally followed by closing quotes/brackets) and whitespace.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)\]]))\s+")
# Inside an over-long sentence, prefer to break after clause punctuation.
_CLAUSE_END = re.compile(r"(?<=[,;:—–])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of already-normalised text, punctuation kept with its sentence."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def split_into_chunks(text: str, max_chars: int) -> list[str]:
    """Greedy packing of whole sentences into chunks of at most ``max_chars``.

    Joining the chunks with single spaces gives back the input text (for
    normalised input), so nothing is dropped or reordered.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    pieces: list[str] = []
    for sentence in split_sentences(text):
        pieces.extend(_split_long(sentence, max_chars))
    return _pack(pieces, max_chars)


def _split_long(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    clauses = [c for c in _CLAUSE_END.split(sentence) if c]
    if len(clauses) > 1:
        return [p for c in clauses for p in _split_long(c, max_chars)]
    words = sentence.split(" ")
    if len(words) > 1:
        return _pack([p for w in words for p in _split_long(w, max_chars)], max_chars)
    return [sentence[i : i + max_chars] for i in range(0, len(sentence), max_chars)]


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current} {piece}" if current else piece
        if len(candidate) <= max_chars:
            current = candidate
        else:
            if current:
                chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks
