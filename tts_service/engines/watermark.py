"""The Perth watermark gate: the Chatterbox engine never speaks unmarked.

A module of its own because the check is a promise of its own (``info.watermarked``),
tested against stand-in and real watermarkers, and independent of how the model speaks.

``generate`` passes every output through ``model.watermarker`` (Resemble's Perth,
``resemble-perth``), an inaudible mark that its detector finds again. Nothing insists on
it: ``perth`` sets ``PerthImplicitWatermarker`` to ``None`` when its network fails to import
(no ``pkg_resources``, ``torchaudio`` or ``yaml``); chatterbox-tts 0.1.7 then fails on an
obscure ``TypeError``, and a build that guards against that (as proposed upstream) falls back
to ``perth.DummyWatermarker``, which only rounds the samples. So the loader names a missing
dependency first (``perth_import_error``), and the engine's ``load`` proves the mark on a
test signal (``check_watermarker``) and refuses to load without it.
"""

from __future__ import annotations

import numpy as np

from tts_service.engines.base import FloatAudio
from tts_service.engines.chatterbox_model import ChatterboxModel, to_mono_float32

WATERMARK_PROBE_S = 1.0  # the test signal's length: ~0.1 s of a warm Perth on a CPU
# Perth moves a 1 s probe by ~0.06 at its peak; DummyWatermarker's rounding by 5e-6.
WATERMARK_MIN_CHANGE = 1e-3


class WatermarkUnavailable(RuntimeError):
    """The model would speak without a working Perth watermark; the engine will not load."""


def check_watermarker(model: ChatterboxModel) -> None:
    """Raise ``WatermarkUnavailable`` unless ``model.watermarker`` really marks audio.

    It must exist, change a speech-like test signal by more than rounding (not a
    ``DummyWatermarker``) without changing its length, and its own detector must find
    the mark in the result. (Not also "and not in the signal as it was": Perth reads
    a mark in some clean unmarked tones, this probe among them.) A first call also warms
    Perth up (seconds on a CPU), so that falls in the load, not in a user's request.
    """
    marker = getattr(model, "watermarker", None)
    if marker is None:
        raise WatermarkUnavailable(
            "the Chatterbox model has no watermarker (perth.PerthImplicitWatermarker did "
            "not import); refusing to speak without the Perth watermark"
        )
    rate = int(model.sr)
    probe = watermark_probe(rate)
    try:
        marked = to_mono_float32(marker.apply_watermark(probe.copy(), sample_rate=rate))
        found = float(np.mean(marker.get_watermark(marked, sample_rate=rate)))
    except Exception as exc:
        raise WatermarkUnavailable(
            f"the watermarker {type(marker).__name__} failed on a test signal "
            f"({type(exc).__name__}: {exc}); refusing to speak without the Perth watermark"
        ) from exc
    if marked.shape != probe.shape or not np.isfinite(marked).all():
        raise WatermarkUnavailable(
            f"the watermarker {type(marker).__name__} returned {marked.shape[0]} samples "
            f"(finite: {bool(np.isfinite(marked).all())}) for a test signal of {probe.size}"
        )
    if float(np.max(np.abs(marked - probe))) < WATERMARK_MIN_CHANGE:
        raise WatermarkUnavailable(
            f"the watermarker {type(marker).__name__} left a test signal as it was (as "
            "perth.DummyWatermarker does); refusing to speak without the Perth watermark"
        )
    if not found >= 0.5:  # also refuses NaN
        raise WatermarkUnavailable(
            f"the watermarker {type(marker).__name__} does not find its own mark in a "
            f"marked test signal (it reads {found:.2f}; 1 is marked)"
        )


def watermark_probe(sample_rate: int) -> FloatAudio:
    """``WATERMARK_PROBE_S`` of a fixed voiced sound: harmonics of 140 Hz in syllables.

    Perth hides its mark in the spectrum of speech below 2 kHz, and reads silence as
    nothing at all, so the probe must sound like a voice.
    """
    t = np.arange(round(WATERMARK_PROBE_S * sample_rate)) / sample_rate
    voice = sum(np.sin(2 * np.pi * 140.0 * k * t) / k for k in range(1, 16))
    syllables = 0.2 + 0.8 * np.abs(np.sin(np.pi * 3 * t))
    samples = 0.3 * voice / np.max(np.abs(voice)) * syllables
    return np.asarray(samples, dtype=np.float32)


def perth_import_error() -> str | None:
    """Why Perth's watermarker cannot be built here; None when it can.

    ``perth``'s own ``__init__`` swallows this ``ImportError`` and leaves
    ``perth.PerthImplicitWatermarker`` as ``None``; this finds out what was missing.
    """
    try:
        from perth.perth_net.perth_net_implicit.perth_watermarker import (
            PerthImplicitWatermarker,  # noqa: F401
        )
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
