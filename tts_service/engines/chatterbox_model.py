"""What the Chatterbox engine uses of ``chatterbox-tts`` 0.1.7 and Perth, without importing them.

A module of its own so that the engine (``chatterbox``), its watermark check
(``watermark``) and its loader (``chatterbox_weights``) type against one description of the
library, and turn its output into samples one way, while torch and chatterbox (the ``gpu``
extra) stay unimported until a model is really loaded.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from tts_service.engines.base import FloatAudio
from tts_service.errors import TTSError


class Watermarker(Protocol):
    """The part of ``perth.WatermarkerBase`` (``resemble-perth`` 1.0) the engine checks."""

    def apply_watermark(self, wav: Any, sample_rate: int) -> Any:
        """The audio with the mark in it, as long as ``wav``."""
        ...

    def get_watermark(self, watermarked_wav: Any, sample_rate: int) -> Any:
        """What the detector reads: 1.0 for marked audio and 0.0 for unmarked, from Perth."""
        ...


class ChatterboxModel(Protocol):
    """The part of ``chatterbox.tts.ChatterboxTTS`` (0.1.7) this engine uses."""

    sr: int
    conds: Any
    watermarker: Watermarker | None  # applied by generate; perth.PerthImplicitWatermarker()

    def prepare_conditionals(self, wav_fpath: Any, exaggeration: float = 0.5) -> None: ...

    def generate(
        self,
        text: str,
        repetition_penalty: float = 1.2,
        min_p: float = 0.05,
        top_p: float = 1.0,
        audio_prompt_path: str | None = None,
        exaggeration: float = 0.5,
        cfg_weight: float = 0.5,
        temperature: float = 0.8,
    ) -> Any:
        """A ``(1, n)`` float tensor (or array) at ``sr``."""
        ...


def to_mono_float32(wav: Any) -> FloatAudio:
    """A ``(1, n)`` torch tensor or array (what ``generate`` returns) as 1-D float32."""
    if hasattr(wav, "detach"):
        wav = wav.detach().cpu().numpy()
    samples = np.asarray(wav, dtype=np.float32)
    if samples.ndim == 2 and 1 in samples.shape:
        samples = samples.reshape(-1)
    if samples.ndim != 1:
        raise TTSError(f"Chatterbox returned audio of shape {samples.shape}, expected (1, n)")
    return np.ascontiguousarray(samples)
