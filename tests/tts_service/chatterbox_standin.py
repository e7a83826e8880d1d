"""A stand-in for ``chatterbox.tts.ChatterboxTTS`` 0.1.7: same names, same signatures.

The weights live on a hub this machine cannot reach and there is no GPU, so the
engine is tested against this. It copies the parts of the real ``generate``
that matter to the engine:

- ``audio_prompt_path`` runs ``prepare_conditionals`` and replaces ``conds``;
- without it ``conds`` must be set (the real one asserts);
- an ``exaggeration`` different from ``conds.t3.emotion_adv`` replaces
  ``conds.t3`` in place on the ``conds`` object;
- every result goes through ``self.watermarker.apply_watermark`` (Perth's
  interface, here ``WatermarkerStandIn``), which a test may replace or remove;
- the result is a ``(1, n)`` array at ``sr``.

and it records what the engine did: every call's arguments, which voice and
exaggeration the generation really used, and whether two calls ever ran at
once or the voice changed under a running generation.
"""

from __future__ import annotations

import hashlib
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soundfile as sf

BUILTIN_VOICE = "builtin"
SAMPLES_PER_CHAR = 240  # 10 ms of "speech" per character at 24 kHz
MARK_HZ = 1_234.5  # the stand-in watermark: a faint tone no test signal has a harmonic at
MARK_LEVEL = 0.05


class WatermarkerStandIn:
    """``perth.WatermarkerBase``'s interface (``resemble-perth`` 1.0): marks audio with a
    faint tone and finds it again. Like ``PerthImplicitWatermarker``, ``get_watermark``
    reads 1.0 where the mark is and 0.0 where it is not, and the length is kept."""

    def __init__(self) -> None:
        self.applied = 0

    def apply_watermark(self, wav, watermark=None, sample_rate=44100, **kwargs):  # type: ignore[no-untyped-def]
        self.applied += 1
        return wav + MARK_LEVEL * _mark(len(wav), sample_rate)

    def get_watermark(self, watermarked_wav, sample_rate=44100, watermark_length=None, **kwargs):  # type: ignore[no-untyped-def]
        wav = np.asarray(watermarked_wav, dtype=np.float64).reshape(-1)
        strength = 2 * float(np.mean(wav * _mark(wav.size, sample_rate))) / MARK_LEVEL
        return np.float32(1.0 if strength > 0.5 else 0.0)


def _mark(length: int, sample_rate: int) -> np.ndarray:
    return np.sin(2 * np.pi * MARK_HZ * np.arange(length) / sample_rate)


class DummyWatermarkerStandIn(WatermarkerStandIn):
    """What ``perth.DummyWatermarker`` does: rounds the samples, reads random bits."""

    def apply_watermark(self, wav, watermark=None, sample_rate=44100, **kwargs):  # type: ignore[no-untyped-def]
        return wav.round(5)

    def get_watermark(self, watermarked_wav, sample_rate=44100, watermark_length=None, **kwargs):  # type: ignore[no-untyped-def]
        return (
            np.random.default_rng().integers(0, 2, size=watermark_length or 32).astype(np.float32)
        )


@dataclass
class T3Cond:
    speaker_emb: Any
    clap_emb: Any = None
    cond_prompt_speech_tokens: Any = None
    cond_prompt_speech_emb: Any = None
    emotion_adv: Any = 0.5


@dataclass
class Conditionals:
    t3: T3Cond
    gen: dict[str, Any]


@dataclass(frozen=True)
class GenerateCall:
    text: str
    kwargs: dict[str, Any]
    voice: str
    emotion: float


@dataclass(frozen=True)
class PrepareCall:
    voice: str
    exaggeration: float
    samples: np.ndarray
    sample_rate: int


def make_conds(voice: str, exaggeration: float) -> Conditionals:
    return Conditionals(
        t3=T3Cond(
            speaker_emb=np.full((1, 4), float(zlib.crc32(voice.encode()) % 997)),
            cond_prompt_speech_tokens=np.zeros((1, 3), dtype=np.int64),
            emotion_adv=exaggeration * np.ones((1, 1, 1)),
        ),
        gen={"voice": voice},
    )


class ChatterboxTTSStandIn:
    """``ChatterboxTTS``'s interface: ``sr``, ``conds``, ``prepare_conditionals``, ``generate``."""

    def __init__(self, *, generate_s: float = 0.0, sr: int = 24_000) -> None:
        self.sr = sr
        self.conds: Conditionals | None = make_conds(BUILTIN_VOICE, 0.5)
        self.watermarker: Any = (
            WatermarkerStandIn()
        )  # ChatterboxTTS: perth.PerthImplicitWatermarker()
        self.generate_s = generate_s
        self.rng = np.random.default_rng()
        self.generate_calls: list[GenerateCall] = []
        self.prepare_calls: list[PrepareCall] = []
        self.seeds: list[int | None] = []
        self.overlaps = 0
        self.conds_swapped_mid_generation = 0
        self._active = 0
        self._guard = threading.Lock()
        self._depth = threading.local()

    # --- ChatterboxTTS 0.1.7 -----------------------------------------------------------------

    def prepare_conditionals(self, wav_fpath, exaggeration=0.5):  # type: ignore[no-untyped-def]
        with self._in_use():
            samples, rate = sf.read(wav_fpath, dtype="float32")
            voice = hashlib.sha256(samples.tobytes()).hexdigest()[:16]
            self.prepare_calls.append(PrepareCall(voice, exaggeration, samples, rate))
            self.conds = make_conds(voice, exaggeration)

    def generate(  # type: ignore[no-untyped-def]
        self,
        text,
        repetition_penalty=1.2,
        min_p=0.05,
        top_p=1.0,
        audio_prompt_path=None,
        exaggeration=0.5,
        cfg_weight=0.5,
        temperature=0.8,
    ):
        with self._in_use():
            if audio_prompt_path:
                self.prepare_conditionals(audio_prompt_path, exaggeration=exaggeration)
            else:
                assert self.conds is not None, "Please `prepare_conditionals` first"
            if not cfg_weight > 0.0:  # 0.1.7 then builds one text sequence; T3 pairs two
                raise RuntimeError(
                    "Sizes of tensors must match except in dimension 1. Expected size 1 "
                    "but got size 2 for tensor number 1 in the list."
                )
            if exaggeration != self.conds.t3.emotion_adv[0, 0, 0]:
                old = self.conds.t3
                self.conds.t3 = T3Cond(
                    speaker_emb=old.speaker_emb,
                    cond_prompt_speech_tokens=old.cond_prompt_speech_tokens,
                    emotion_adv=exaggeration * np.ones((1, 1, 1)),
                )
            conds = self.conds
            self.generate_calls.append(
                GenerateCall(
                    text=text,
                    kwargs={
                        "repetition_penalty": repetition_penalty,
                        "min_p": min_p,
                        "top_p": top_p,
                        "audio_prompt_path": audio_prompt_path,
                        "exaggeration": exaggeration,
                        "cfg_weight": cfg_weight,
                        "temperature": temperature,
                    },
                    voice=conds.gen["voice"],
                    emotion=float(conds.t3.emotion_adv[0, 0, 0]),
                )
            )
            noise = self.rng.standard_normal(len(text) * SAMPLES_PER_CHAR)
            if self.generate_s:
                time.sleep(self.generate_s)
            if self.conds is not conds or conds.t3.emotion_adv[0, 0, 0] != exaggeration:
                self.conds_swapped_mid_generation += 1
            voice_level = float(conds.t3.speaker_emb[0, 0]) / 997
            wav = 0.1 * noise * (0.5 + voice_level) * temperature
            watermarked = self.watermarker.apply_watermark(wav, sample_rate=self.sr)
            return watermarked[np.newaxis, :]  # float64, (1, n): the real one returns a tensor

    # --- what the tests inject as the engine's seed function ---------------------------------

    def seed(self, value: int | None) -> None:
        self.seeds.append(value)
        self.rng = np.random.default_rng(value)

    # --- overlap detection -------------------------------------------------------------------

    def _in_use(self) -> _InUse:
        return _InUse(self)


class _InUse:
    """Counts threads inside the model; a nested call from the same thread is not an overlap."""

    def __init__(self, model: ChatterboxTTSStandIn) -> None:
        self.model = model

    def __enter__(self) -> None:
        depth = getattr(self.model._depth, "value", 0)
        self.model._depth.value = depth + 1
        if depth:
            return
        with self.model._guard:
            self.model._active += 1
            if self.model._active > 1:
                self.model.overlaps += 1
        time.sleep(0.001)  # widen the window in which an unserialised caller would be caught

    def __exit__(self, *exc: object) -> None:
        self.model._depth.value -= 1
        if self.model._depth.value:
            return
        with self.model._guard:
            self.model._active -= 1


@dataclass
class FactoryCalls:
    """A model factory that counts how often the engine built a model."""

    model: ChatterboxTTSStandIn
    calls: int = 0
    build_s: float = 0.0
    fail_with: Exception | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> ChatterboxTTSStandIn:
        with self._lock:
            self.calls += 1
        if self.build_s:
            time.sleep(self.build_s)
        if self.fail_with is not None:
            raise self.fail_with
        return self.model
