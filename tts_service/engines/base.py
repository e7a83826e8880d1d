"""The one seam between the service and a speech model.

An engine turns one chunk of text into float32 mono samples at its own sample
rate. Everything around that (normalising and chunking text, joining chunks,
loudness, encoding) is shared code in ``tts_service.synthesis``, so every
engine gets the same long-text behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from tts_service.schema import EngineInfo, TTSParams

FloatAudio = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ReferenceClip:
    """A decoded, trimmed reference voice: mono float32 at ``sample_rate``.

    ``sha256`` is over the normalised samples, so the same recording in lossless
    containers (WAV, FLAC) is one voice to the conditionals cache and to the audio
    cache. Lossy codecs (OGG, MP3, AAC) change the samples, so a re-encode is a new voice.
    """

    samples: FloatAudio
    sample_rate: int
    sha256: str


@runtime_checkable
class TTSEngine(Protocol):
    """A speech model. ``synthesize`` blocks; the API runs it off the event loop."""

    @property
    def info(self) -> EngineInfo:
        """Name, version, sample rate and capabilities; part of every cache key."""
        ...

    @property
    def is_loaded(self) -> bool: ...

    def load(self) -> None:
        """Load weights. Idempotent; may take seconds (or minutes on a cold GPU)."""
        ...

    def synthesize(
        self, text: str, params: TTSParams, reference: ReferenceClip | None
    ) -> FloatAudio:
        """Speak one chunk (at most ``info.max_chunk_chars``) of already-normalised text.

        Raises ``VoiceCloningUnavailable`` when given a reference it cannot use.
        """
        ...


@runtime_checkable
class SpeaksInParts(Protocol):
    """An engine that can hand over a chunk's audio as it is made (Piper: a sentence at a
    time), so the service encodes one part while the engine speaks the next."""

    def synthesize_parts(
        self, text: str, params: TTSParams, reference: ReferenceClip | None
    ) -> Iterator[FloatAudio]:
        """``synthesize``'s audio in consecutive parts; joined, they are the same signal."""
        ...
