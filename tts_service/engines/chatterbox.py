"""``ChatterboxEngine``: Resemble AI's Chatterbox (``chatterbox-tts`` 0.1.7) on a GPU.

torch and chatterbox come with the ``gpu`` extra and are imported only inside
functions (here and in the modules beside it), so ``import tts_service`` works without them.

One model instance, one generation at a time
    ``ChatterboxTTS.generate`` keeps the voice in ``model.conds`` and rewrites
    it (``audio_prompt_path`` replaces it; an ``exaggeration`` different from
    the one in ``conds`` replaces ``conds.t3``). Two requests on one instance
    would speak in each other's voice, so every model call happens under one
    lock; a GPU runs one generation at a time anyway.

Voices
    No reference → the model's built-in voice (``conds.pt`` of the
    checkpoint). A reference clip is written to a temporary WAV for
    ``prepare_conditionals``, and the resulting conditionals are kept in a
    small LRU keyed by the clip's sha256, so a returning voice skips that step.
    Each generation runs on a shallow copy of the cached conditionals, because
    ``generate`` swaps ``conds.t3`` when the exaggeration differs: the copy
    takes that change and the cached entry keeps the voice as prepared.

Models
    ``model`` (``TTS_CHATTERBOX_MODEL``) picks the original, Multilingual or Turbo
    (``tts_service.engines.chatterbox_variants``): which class loads, the keywords
    ``generate`` gets, and what ``info`` says (honoured parameters, languages).

Parameters
    ``exaggeration``, ``temperature`` and ``cfg_weight`` go to ``generate``
    as they are, but the original's ``cfg_weight=0``: chatterbox-tts 0.1.7 then builds a
    batch of one while T3 always pairs two start tokens, and every request fails; it runs as
    ``MIN_CFG_WEIGHT``, guidance off in effect, so the whole 0–1 range works;
    ``repetition_penalty``, ``min_p`` and ``top_p`` stay at each model's defaults. Turbo
    takes neither ``exaggeration`` nor ``cfg_weight`` (``info.honoured_params`` says so).
    ``seed`` ≠ 0 seeds torch (CPU and every CUDA device)
    before *each chunk*, so a chunk sounds the same whatever came before it;
    after a seeded chunk the next unseeded one reseeds from OS entropy, so
    ``seed=0`` never becomes predictable.

Watermark
    ``load`` refuses a model whose Perth watermark it cannot prove on a test
    signal (``tts_service.engines.watermark``): this engine never speaks
    unmarked (``info.watermarked``).

Weights
    From ``checkpoint_dir`` or the hub (``tts_service.engines.chatterbox_weights``);
    a digest of the checkpoint files' contents is part of ``info.model_version`` (and so
    of every cache key): other uploads to the hub repository change nothing.

Device
    ``device="cuda"`` (as the Modal container sets it) is a requirement, not a wish:
    ``load`` fails loudly when CUDA is not there or the model did not land on it, rather
    than run a 500M model on the CPU past every deadline.

Memory
    Every call into the model runs under ``torch.inference_mode``: Perth's watermarker,
    run outside it, keeps autograd state and leaks host memory request after request.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import soundfile as sf

from tts_service.engines.base import FloatAudio, ReferenceClip
from tts_service.engines.chatterbox_model import ChatterboxModel, to_mono_float32
from tts_service.engines.chatterbox_variants import MIN_CFG_WEIGHT, ChatterboxVariant, variant
from tts_service.engines.chatterbox_weights import check_device, load_chatterbox
from tts_service.engines.watermark import check_watermarker
from tts_service.errors import EngineNotReady, ReferenceAudioError, TTSError
from tts_service.schema import EngineInfo, TTSParams
from tts_service.settings import TTSSettings

ENGINE_NAME = "chatterbox"
SAMPLE_RATE = 24_000  # ChatterboxTTS.sr (S3GEN_SR); the loaded model's value wins
# Chatterbox garbles or truncates past ~300 characters; sentences are packed up to this.
MAX_CHUNK_CHARS = 250
__all__ = ["MIN_CFG_WEIGHT", "ChatterboxEngine", "torch_seed"]
_SEED_MODULUS = 2**64  # torch.manual_seed takes at most a 64-bit unsigned value


ModelFactory = Callable[[], ChatterboxModel]
SeedFunction = Callable[[int | None], None]
"""Seeds the model's RNGs with a value, or (``None``) afresh from OS entropy."""


class ChatterboxEngine:
    """Chatterbox behind the ``TTSEngine`` protocol; thread-safe, one generation at a time.

    ``model_factory`` builds the model (default: load ``ChatterboxTTS`` from
    ``checkpoint_dir`` or the hub on ``device``); ``seed_rng`` seeds its
    random numbers (default: torch). Tests pass stand-ins for both.
    """

    def __init__(
        self,
        *,
        checkpoint_dir: Path | None = None,
        hub_cache_dir: Path | None = None,
        device: str | None = None,
        conds_cache_size: int = 16,
        model_factory: ModelFactory | None = None,
        seed_rng: SeedFunction | None = None,
        model_version: str | None = None,
        model: str = "original",
    ) -> None:
        if conds_cache_size < 1:
            raise ValueError("conds_cache_size must be at least 1")
        self._variant: ChatterboxVariant = variant(model)
        self._checkpoint_dir = checkpoint_dir
        self._hub_cache_dir = hub_cache_dir
        self._device = device
        self._factory = model_factory
        self._seed_rng = seed_rng or torch_seed
        self._cache_size = conds_cache_size
        self._model: ChatterboxModel | None = None
        self._builtin_conds: Any = None
        self._conds_cache: OrderedDict[str, Any] = OrderedDict()
        self._rng_seeded = False
        self._load_lock = threading.Lock()
        # Everything that touches the model (conds, generate, RNG) happens under this lock.
        self._lock = threading.Lock()
        self.cache_hits = 0
        self.cache_misses = 0
        self._info = EngineInfo(
            name=ENGINE_NAME,
            model_version=model_version or _package_version(self._variant),
            sample_rate=SAMPLE_RATE,
            can_clone_voice=True,
            honoured_params=list(self._variant.honoured_params),
            max_chunk_chars=MAX_CHUNK_CHARS,
            languages=list(self._variant.languages),
            watermarked=True,  # load() refuses a model whose watermark it cannot prove
        )
        self._version_given = model_version is not None

    @classmethod
    def from_settings(cls, settings: TTSSettings) -> ChatterboxEngine:
        return cls(
            checkpoint_dir=settings.chatterbox_checkpoint_dir,
            hub_cache_dir=settings.chatterbox_hub_cache_dir,
            device=settings.chatterbox_device,
            conds_cache_size=settings.chatterbox_conds_cache_size,
            model=settings.chatterbox_model,
        )

    @staticmethod
    def import_runtime() -> None:
        """Import torch now (slow: thousands of files), and nothing that asks it about CUDA.

        The Modal app calls this before its memory snapshot so restored containers
        start with torch imported. chatterbox is not imported here: its import reaches
        transformers, which asks torch for CUDA devices while the snapshot is taken (no
        GPU attached), and torch keeps that answer after the restore.
        """
        import torch  # noqa: F401

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            if self._factory is not None:
                model, digest = self._factory(), None
            else:
                model, digest = load_chatterbox(
                    self._checkpoint_dir, self._hub_cache_dir, self._device, self._variant
                )
                check_device(model, self._device)
            with _inference_mode():
                check_watermarker(model)
            update: dict[str, Any] = {"sample_rate": int(model.sr)}
            if digest and not self._version_given:
                update["model_version"] = f"{self._info.model_version}+{digest[:12]}"
            self._info = self._info.model_copy(update=update)
            self._builtin_conds = model.conds
            self._model = model

    def synthesize(
        self, text: str, params: TTSParams, reference: ReferenceClip | None
    ) -> FloatAudio:
        model = self._model
        if model is None:
            raise EngineNotReady("the Chatterbox model is not loaded yet", retry_after_s=5)
        with self._lock, _inference_mode():
            model.conds = self._conditionals_for(model, reference, params.exaggeration)
            self._seed(params.seed)
            wav = model.generate(text, **self._variant.generate_kwargs(params))
            return to_mono_float32(wav)

    def _conditionals_for(
        self, model: ChatterboxModel, reference: ReferenceClip | None, exaggeration: float
    ) -> Any:
        """The voice to put in ``model.conds``: a copy, so ``generate`` cannot alter the cache."""
        if reference is None:
            if self._builtin_conds is None:
                raise TTSError("this Chatterbox checkpoint has no built-in voice (conds.pt)")
            return copy.copy(self._builtin_conds)
        cached = self._conds_cache.get(reference.sha256)
        if cached is not None:
            self.cache_hits += 1
            self._conds_cache.move_to_end(reference.sha256)
            return copy.copy(cached)
        self.cache_misses += 1
        needs = self._variant.min_reference_s
        if needs and reference.samples.size <= needs * reference.sample_rate:
            seconds = reference.samples.size / reference.sample_rate
            raise ReferenceAudioError(
                f"Chatterbox {self._variant.name} needs a voice clip longer than {needs:g} s; "
                f"this one has {seconds:.1f} s of voice"
            )
        with tempfile.TemporaryDirectory(prefix="saybot-voice-") as tmp:
            path = os.path.join(tmp, "reference.wav")
            sf.write(path, reference.samples, reference.sample_rate, subtype="FLOAT")
            model.prepare_conditionals(path, exaggeration=exaggeration)
        prepared = model.conds
        self._conds_cache[reference.sha256] = prepared
        while len(self._conds_cache) > self._cache_size:
            self._conds_cache.popitem(last=False)
        return copy.copy(prepared)

    def _seed(self, seed: int) -> None:
        if seed:
            self._seed_rng(seed % _SEED_MODULUS)
            self._rng_seeded = True
        elif self._rng_seeded:
            self._seed_rng(None)  # the state after a seeded chunk is predictable; forget it
            self._rng_seeded = False


def _inference_mode() -> Any:
    """``torch.inference_mode()`` where torch is installed; nothing to do where it is not
    (the stand-in tests, which run without the gpu extra)."""
    try:
        import torch
    except ImportError:
        return contextlib.nullcontext()
    return torch.inference_mode()


def torch_seed(seed: int | None) -> None:
    """Seed torch on the CPU and every CUDA device, or reseed from OS entropy (``None``)."""
    import torch

    if seed is None:
        torch.seed()
        return
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _package_version(model: ChatterboxVariant) -> str:
    """``chatterbox-tts-0.1.7``, with the model's name unless it is the original (whose
    cache keys stay as they were)."""
    suffix = "" if model.name == "original" else f"-{model.name}"
    try:
        return f"chatterbox-tts-{version('chatterbox-tts')}{suffix}"
    except PackageNotFoundError:
        return f"chatterbox-tts-not-installed{suffix}"
