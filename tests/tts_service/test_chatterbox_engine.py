"""ChatterboxEngine against a stand-in with ChatterboxTTS 0.1.7's exact interface.

No weights and no GPU here: the real model runs in ``scripts/gpu_smoke.py``.
"""

from __future__ import annotations

import base64
import importlib.util
import inspect
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.servers import serve_in_thread
from tests.tts_service.audio_samples import clip
from tests.tts_service.chatterbox_standin import (
    BUILTIN_VOICE,
    SAMPLES_PER_CHAR,
    ChatterboxTTSStandIn,
    DummyWatermarkerStandIn,
    FactoryCalls,
    WatermarkerStandIn,
)
from tests.tts_service.conftest import API_TOKEN, make_settings, wait_ready
from tts_service import audio, synthesis
from tts_service.api import create_app
from tts_service.engines import build_engine
from tts_service.engines.base import ReferenceClip, TTSEngine
from tts_service.engines.chatterbox import MIN_CFG_WEIGHT, ChatterboxEngine
from tts_service.engines.chatterbox_model import to_mono_float32
from tts_service.engines.chatterbox_weights import CHECKPOINT_FILES
from tts_service.engines.watermark import WatermarkUnavailable, perth_import_error
from tts_service.errors import EngineNotReady, TTSError
from tts_service.schema import TTSParams
from tts_service.text import split_into_chunks

REPO_ROOT = Path(__file__).resolve().parents[2]
FILLER = (
    "and it goes on and on for long enough that no second sentence of this size "
    "could ever fit beside it in one chunk"
)


def sentences(label: str, count: int = 3) -> str:
    """``count`` sentences of ~150 characters each: one chunk apiece, unique to ``label``."""
    return " ".join(f"{label}, sentence {i}, is here {FILLER}." for i in range(count))


def make_engine(
    model: ChatterboxTTSStandIn | None = None, *, cache_size: int = 16
) -> tuple[ChatterboxEngine, ChatterboxTTSStandIn]:
    model = model or ChatterboxTTSStandIn()
    engine = ChatterboxEngine(
        model_factory=lambda: model,
        seed_rng=model.seed,
        conds_cache_size=cache_size,
        model_version="chatterbox-standin",
    )
    engine.load()
    return engine, model


def voice(seed: int, seconds: float = 2.0) -> ReferenceClip:
    """A distinct reference clip, prepared the way the service prepares one."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 24_000)) / 24_000
    freq = 120 + 40 * rng.random()
    samples = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return ReferenceClip(samples=samples, sample_rate=24_000, sha256=audio.fingerprint(samples))


def voice_id(model: ChatterboxTTSStandIn, reference: ReferenceClip) -> str:
    """The id the stand-in gives a voice: what a generation that used it reports."""
    for call in model.prepare_calls:
        if np.array_equal(call.samples, reference.samples):
            return call.voice
    raise AssertionError("this voice was never prepared")


def params(text: str = "Hello there.", **overrides: object) -> TTSParams:
    return TTSParams(text=text, **overrides)  # type: ignore[arg-type]


# --- identity and loading ----------------------------------------------------------------------


def test_info_describes_chatterbox_and_follows_the_loaded_model() -> None:
    model = ChatterboxTTSStandIn(sr=22_050)
    engine = ChatterboxEngine(model_factory=lambda: model, seed_rng=model.seed)
    assert isinstance(engine, TTSEngine)
    info = engine.info
    assert info.name == "chatterbox"
    assert info.model_version.startswith("chatterbox-tts-")
    assert info.can_clone_voice is True
    assert sorted(info.honoured_params) == ["cfg_weight", "exaggeration", "seed", "temperature"]
    assert 200 <= info.max_chunk_chars <= 300
    assert info.sample_rate == 24_000
    engine.load()
    assert engine.info.sample_rate == 22_050  # model.sr wins once loaded


def test_synthesize_before_load_is_not_ready() -> None:
    engine = ChatterboxEngine(model_factory=ChatterboxTTSStandIn)
    assert not engine.is_loaded
    with pytest.raises(EngineNotReady):
        engine.synthesize("Hello.", params(), None)


def test_concurrent_loads_build_the_model_once() -> None:
    factory = FactoryCalls(ChatterboxTTSStandIn(), build_s=0.05)
    engine = ChatterboxEngine(model_factory=factory)
    threads = [threading.Thread(target=engine.load) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert factory.calls == 1
    assert engine.is_loaded
    engine.load()
    assert factory.calls == 1


def test_a_failed_load_leaves_the_engine_unloaded_and_can_be_retried() -> None:
    factory = FactoryCalls(ChatterboxTTSStandIn(), fail_with=RuntimeError("CUDA out of memory"))
    engine = ChatterboxEngine(model_factory=factory)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        engine.load()
    assert not engine.is_loaded
    factory.fail_with = None
    engine.load()
    assert engine.is_loaded
    assert factory.calls == 2


def test_settings_select_the_engine_and_a_missing_checkpoint_is_named(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    settings = make_settings(
        engine="chatterbox", chatterbox_checkpoint_dir=tmp_path, chatterbox_device="cpu"
    )
    engine = build_engine(settings)
    assert isinstance(engine, ChatterboxEngine)
    assert not engine.is_loaded
    with pytest.raises(FileNotFoundError) as excinfo:
        engine.load()  # fails on the files before it ever imports torch
    message = str(excinfo.value)
    for name in CHECKPOINT_FILES:
        assert (name in message) is (name != "tokenizer.json")
    assert "download_weights" in message


# --- the watermark -----------------------------------------------------------------------------


class FailingWatermarker(WatermarkerStandIn):
    def apply_watermark(self, wav, watermark=None, sample_rate=44100, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("CUDA error: out of memory")


class TruncatingWatermarker(WatermarkerStandIn):
    def apply_watermark(self, wav, watermark=None, sample_rate=44100, **kwargs):  # type: ignore[no-untyped-def]
        return super().apply_watermark(wav, sample_rate=sample_rate)[:-100]


class BlindWatermarker(WatermarkerStandIn):
    """Changes the audio, but its detector never finds the mark: no mark to prove."""

    def get_watermark(self, watermarked_wav, sample_rate=44100, watermark_length=None, **kwargs):  # type: ignore[no-untyped-def]
        return np.float32(0.0)


def test_chatterbox_promises_a_watermark_and_every_chunk_carries_it() -> None:
    engine, model = make_engine()
    assert engine.info.watermarked is True
    marker = model.watermarker
    proved = marker.applied  # the load's check on a test signal
    assert proved == 1
    text = sentences("Marked")
    synthesis.synthesize_samples(engine, params(text), None)
    assert marker.applied == proved + len(split_into_chunks(text, engine.info.max_chunk_chars))
    raw = engine.synthesize("A sentence long enough to find the mark in.", params(), None)
    assert marker.get_watermark(raw, sample_rate=24_000) == 1.0
    assert marker.get_watermark(np.zeros_like(raw), sample_rate=24_000) == 0.0


@pytest.mark.parametrize(
    ("watermarker", "reason"),
    [
        (None, "has no watermarker"),
        (DummyWatermarkerStandIn(), "left a test signal as it was (as perth.DummyWatermarker"),
        (FailingWatermarker(), "failed on a test signal (RuntimeError: CUDA error: out of memory)"),
        (
            TruncatingWatermarker(),
            "returned 23900 samples (finite: True) for a test signal of 24000",
        ),
        (BlindWatermarker(), "does not find its own mark in a marked test signal (it reads 0.00"),
    ],
    ids=["missing", "dummy", "failing", "truncating", "undetectable"],
)
def test_a_model_without_a_working_watermark_never_loads(
    watermarker: WatermarkerStandIn | None, reason: str
) -> None:
    model = ChatterboxTTSStandIn()
    model.watermarker = watermarker
    engine = ChatterboxEngine(model_factory=lambda: model, seed_rng=model.seed)
    with pytest.raises(WatermarkUnavailable, match=re.escape(reason)):
        engine.load()
    assert not engine.is_loaded
    with pytest.raises(EngineNotReady):
        engine.synthesize("Hello.", params(), None)
    assert model.generate_calls == []  # nothing was ever spoken unmarked
    model.watermarker = WatermarkerStandIn()  # the dependency fixed: a retry loads
    engine.load()
    assert engine.is_loaded


def test_the_service_without_a_watermark_is_not_ready_and_says_why() -> None:
    model = ChatterboxTTSStandIn()
    model.watermarker = DummyWatermarkerStandIn()
    engine = ChatterboxEngine(model_factory=lambda: model, seed_rng=model.seed)
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with (
        serve_in_thread(create_app(engine, make_settings())) as url,
        httpx.Client(base_url=url, headers=headers, timeout=30) as http,
    ):
        for _ in range(200):  # the load fails in a worker thread, soon after startup
            ready = http.get("/readyz")
            if "failed" in ready.json()["error"]["message"]:
                break
            time.sleep(0.05)
        spoken = http.post("/v1/tts", json={"text": "Unmarked, never."})
        info = http.get("/v1/engine").json()
    for answer in (ready, spoken):
        assert answer.status_code == 503
        assert answer.json()["error"] == {
            "code": "engine_not_ready",
            "message": "the engine failed to load: WatermarkUnavailable",
        }
    assert info["watermarked"] is True  # the promise stands: it answers marked or not at all
    assert model.generate_calls == []


@pytest.mark.skipif(
    importlib.util.find_spec("perth") is not None,
    reason="resemble-perth is installed: its watermarker imports",
)
def test_the_real_loader_refuses_when_perth_cannot_be_imported(tmp_path: Path) -> None:
    # A complete checkpoint, and no resemble-perth: the loader stops before it imports
    # chatterbox, which would fail obscurely or carry on without the mark.
    for name in CHECKPOINT_FILES:
        (tmp_path / name).write_bytes(b"")
    settings = make_settings(
        engine="chatterbox", chatterbox_checkpoint_dir=tmp_path, chatterbox_device="cpu"
    )
    engine = build_engine(settings)
    with pytest.raises(WatermarkUnavailable, match=r"Perth's watermarker cannot be imported"):
        engine.load()
    assert not engine.is_loaded
    assert "perth" in (perth_import_error() or "")


# --- parameters and output ---------------------------------------------------------------------


def test_every_parameter_reaches_generate() -> None:
    engine, model = make_engine()
    engine.synthesize(
        "Say it like you mean it.",
        params(exaggeration=1.3, temperature=0.6, cfg_weight=0.2, seed=9),
        None,
    )
    (call,) = model.generate_calls
    assert call.text == "Say it like you mean it."
    assert call.kwargs == {
        "repetition_penalty": 1.2,
        "min_p": 0.05,
        "top_p": 1.0,
        "audio_prompt_path": None,
        "exaggeration": 1.3,
        "cfg_weight": 0.2,
        "temperature": 0.6,
    }
    assert call.emotion == 1.3  # generate re-conditioned the emotion, as the real one does


def test_cfg_weight_zero_runs_with_guidance_all_but_off() -> None:
    # 0.1.7's generate fails outright on cfg_weight=0 (the stand-in fails as it does).
    engine, model = make_engine()
    samples = engine.synthesize("Accent transfer.", params(cfg_weight=0), None)
    assert samples.size
    (call,) = model.generate_calls
    assert call.kwargs["cfg_weight"] == MIN_CFG_WEIGHT
    assert 0 < MIN_CFG_WEIGHT <= 1e-3
    with pytest.raises(RuntimeError, match="Sizes of tensors must match"):
        model.generate("The library alone.", cfg_weight=0.0)


def test_output_is_mono_float32_of_the_generated_length() -> None:
    engine, _ = make_engine()
    samples = engine.synthesize("Twelve chars", params(), None)
    assert samples.dtype == np.float32
    assert samples.shape == (12 * SAMPLES_PER_CHAR,)


class TensorLike:
    """What torch returns: ``.detach().cpu().numpy()``."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def detach(self) -> TensorLike:
        return self

    def cpu(self) -> TensorLike:
        return self

    def numpy(self) -> np.ndarray:
        return self.array


def test_tensors_and_arrays_both_become_1d_float32() -> None:
    wav = np.linspace(-1, 1, 10)[np.newaxis, :]
    for given in (wav, TensorLike(wav), wav[0]):
        out = to_mono_float32(given)
        assert out.dtype == np.float32
        assert out.shape == (10,)
        np.testing.assert_allclose(out, np.linspace(-1, 1, 10), rtol=1e-6)
    with pytest.raises(TTSError, match="shape"):
        to_mono_float32(np.zeros((2, 10)))


# --- voices and the conditionals cache ---------------------------------------------------------


def test_reference_clip_reaches_prepare_conditionals_intact() -> None:
    engine, model = make_engine()
    reference = voice(1)
    engine.synthesize("Hello.", params(exaggeration=0.8), reference)
    (prepared,) = model.prepare_calls
    assert prepared.sample_rate == reference.sample_rate
    np.testing.assert_array_equal(prepared.samples, reference.samples)
    assert prepared.exaggeration == 0.8
    (call,) = model.generate_calls
    assert call.voice == prepared.voice
    assert call.kwargs["audio_prompt_path"] is None


def test_the_built_in_voice_comes_back_after_a_cloned_request() -> None:
    engine, model = make_engine()
    engine.synthesize("One.", params(), None)
    engine.synthesize("Two.", params(), voice(1))
    engine.synthesize("Three.", params(), None)
    voices = [call.voice for call in model.generate_calls]
    assert voices == [BUILTIN_VOICE, voice_id(model, voice(1)), BUILTIN_VOICE]


def test_a_returning_voice_skips_prepare_conditionals() -> None:
    engine, model = make_engine()
    a, b = voice(1), voice(2)
    for reference in (a, b, a, a, None, b):
        engine.synthesize("Hello.", params(), reference)
    assert len(model.prepare_calls) == 2
    assert (engine.cache_misses, engine.cache_hits) == (2, 3)
    expected = [voice_id(model, r) if r else BUILTIN_VOICE for r in (a, b, a, a, None, b)]
    assert [call.voice for call in model.generate_calls] == expected


def served_from_cache(
    engine: ChatterboxEngine, model: ChatterboxTTSStandIn, references: list[ReferenceClip]
) -> list[bool]:
    """Speak in each voice in turn: whether its conditionals were cached (no
    ``prepare_conditionals``). Each turn is a use too, so it moves the voice in the LRU."""
    cached = []
    for reference in references:
        before = len(model.prepare_calls)
        engine.synthesize("Hello.", params(), reference)
        cached.append(len(model.prepare_calls) == before)
    return cached


def test_the_cache_evicts_the_least_recently_used_voice() -> None:
    engine, model = make_engine(cache_size=2)
    a, b, c = voice(1), voice(2), voice(3)
    # a was used after b, so c evicts b: cached are a, c, least recently used first.
    assert served_from_cache(engine, model, [a, b, a, c]) == [False, False, True, False]
    # In that order: b, prepared again, evicts a (not c); a, prepared again, evicts b.
    assert served_from_cache(engine, model, [b, c, a]) == [False, True, False]
    # Cached now are c, a: b evicts c; a is still there; c, prepared again, evicts b.
    assert served_from_cache(engine, model, [b, a, c]) == [False, True, False]
    assert len(model.prepare_calls) == 7


def test_a_new_exaggeration_never_changes_a_cached_voice() -> None:
    engine, model = make_engine()
    a = voice(1)
    for reference in (a, None):
        for exaggeration in (0.5, 1.5, 0.5, 2.0, 0.5):
            engine.synthesize("Hello.", params(exaggeration=exaggeration), reference)
    emotions = [call.emotion for call in model.generate_calls]
    assert emotions == [0.5, 1.5, 0.5, 2.0, 0.5] * 2
    assert len(model.prepare_calls) == 1


# --- one generation at a time ------------------------------------------------------------------


def test_the_overlap_detector_catches_unserialised_callers() -> None:
    """Without the engine's lock the stand-in sees overlapping calls: the detector works."""
    model = ChatterboxTTSStandIn(generate_s=0.01)
    threads = [threading.Thread(target=model.generate, args=("Hello.",)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert model.overlaps > 0


def test_concurrent_requests_never_share_the_model() -> None:
    engine, model = make_engine(ChatterboxTTSStandIn(generate_s=0.002), cache_size=2)
    voices = [None, voice(1), voice(2), voice(3)]  # more voices than the cache holds
    errors: list[BaseException] = []
    expected_voice: dict[str, ReferenceClip | None] = {}

    def speak(worker: int) -> None:
        try:
            for turn in range(3):
                reference = voices[(worker + turn) % len(voices)]
                text = sentences(f"Worker {worker} turn {turn}")
                for chunk in split_into_chunks(text, engine.info.max_chunk_chars):
                    expected_voice[chunk] = reference
                synthesis.synthesize_samples(engine, params(text, seed=worker), reference)
        except BaseException as exc:  # reported below, with the thread's own traceback
            errors.append(exc)

    threads = [threading.Thread(target=speak, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert model.overlaps == 0
    assert model.conds_swapped_mid_generation == 0
    assert len(model.generate_calls) == len(expected_voice) == 8 * 3 * 3  # 3 chunks a request
    for call in model.generate_calls:
        reference = expected_voice[call.text]
        assert call.voice == (voice_id(model, reference) if reference else BUILTIN_VOICE)
        assert len(call.text) <= engine.info.max_chunk_chars


# --- seeding -----------------------------------------------------------------------------------


def test_a_seed_is_applied_before_every_chunk() -> None:
    engine, model = make_engine()
    text = sentences("Seeded")
    assert len(split_into_chunks(text, engine.info.max_chunk_chars)) == 3
    synthesis.synthesize_samples(engine, params(text, seed=42), None)
    assert model.seeds == [42, 42, 42]


def test_a_chunk_sounds_the_same_whatever_came_before_it() -> None:
    engine, _ = make_engine()
    seeded = params(seed=42)
    engine.synthesize("Something else first.", seeded, None)
    after_other = engine.synthesize("The chunk.", seeded, None)
    alone = make_engine()[0].synthesize("The chunk.", seeded, None)
    np.testing.assert_array_equal(after_other, alone)
    other_seed = engine.synthesize("The chunk.", params(seed=43), None)
    assert not np.array_equal(after_other, other_seed)


def test_seed_zero_is_unseeded_and_not_left_predictable() -> None:
    engine, model = make_engine()
    engine.synthesize("Hello.", params(seed=0), None)
    assert model.seeds == []  # never seeded: the RNG keeps its natural entropy
    engine.synthesize("Hello.", params(seed=7), None)
    engine.synthesize("Hello.", params(seed=0), None)
    engine.synthesize("Hello.", params(seed=0), None)
    assert model.seeds == [7, None]  # one fresh reseed from OS entropy after a seeded chunk


def test_a_seed_beyond_64_bits_is_folded_into_range() -> None:
    engine, model = make_engine()
    engine.synthesize("Hello.", params(seed=2**70 + 5), None)
    assert model.seeds == [(2**70 + 5) % 2**64]


def test_the_default_seed_function_needs_torch_only_when_seeding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as if the gpu extra were absent
    model = ChatterboxTTSStandIn()
    engine = ChatterboxEngine(model_factory=lambda: model)
    engine.load()
    engine.synthesize("Unseeded needs no torch.", params(), None)
    with pytest.raises(ImportError):
        engine.synthesize("Seeded does.", params(seed=1), None)


# --- through the service -----------------------------------------------------------------------


def test_voice_cloning_through_the_http_service() -> None:
    engine, model = make_engine()
    app = create_app(engine, make_settings())
    body = {
        "text": "Hello from a cloned voice.",
        "format": "wav",
        "reference_audio": base64.b64encode(clip("wav", seconds=3.0)).decode(),
    }
    with serve_in_thread(app) as url:
        wait_ready(url)
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            info = http.get("/v1/engine").json()
            assert (info["name"], info["can_clone_voice"]) == ("chatterbox", True)
            first = http.post("/v1/tts", json=body)
            second = http.post("/v1/tts", json={**body, "exaggeration": 1.0})
            builtin = http.post("/v1/tts", json={"text": "Hello in my own voice."})
    assert [r.status_code for r in (first, second, builtin)] == [200, 200, 200], first.text
    assert first.headers["X-Engine"] == "chatterbox"
    assert len(model.prepare_calls) == 1
    cloned = model.prepare_calls[0].voice
    assert [call.voice for call in model.generate_calls] == [cloned, cloned, BUILTIN_VOICE]
    assert model.prepare_calls[0].sample_rate == 24_000


# --- import hygiene and the real thing ---------------------------------------------------------


def test_importing_the_service_needs_neither_torch_nor_chatterbox() -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
        "sys.modules['chatterbox'] = None\n"
        "import tts_service, tts_service.api, tts_service.engines.chatterbox\n"
        "from tts_service.engines import build_engine\n"
        "from tts_service.settings import TTSSettings\n"
        "engine = build_engine(TTSSettings(engine='chatterbox', _env_file=None))\n"
        "print(engine.info.name)\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "chatterbox"


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is not None,
    reason="torch is installed: run scripts/gpu_smoke.py by hand, it uses the real model",
)
def test_gpu_smoke_script_says_why_it_skips() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "gpu_smoke.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()  # one JSON line, whatever happened
    assert json.loads(line) == {
        "model": "original",
        "ok": False,
        "skipped": "torch is not installed (pip install -e '.[gpu]')",
    }
    required = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "gpu_smoke.py"), "--require"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert required.returncode == 1


@pytest.mark.skipif(
    importlib.util.find_spec("chatterbox") is None,
    reason="chatterbox-tts (the gpu extra) is not installed",
)
def test_the_standin_has_the_real_signatures() -> None:
    from chatterbox.tts import ChatterboxTTS

    for name in ("generate", "prepare_conditionals"):
        real = inspect.signature(getattr(ChatterboxTTS, name))
        ours = inspect.signature(getattr(ChatterboxTTSStandIn, name))
        assert list(real.parameters) == list(ours.parameters), name
        assert [p.default for p in real.parameters.values()] == [
            p.default for p in ours.parameters.values()
        ], name


@pytest.mark.skipif(
    importlib.util.find_spec("perth") is None,
    reason="resemble-perth (with the gpu extra) is not installed",
)
def test_the_standin_watermarker_has_perths_signatures() -> None:
    from perth import WatermarkerBase

    for name in ("apply_watermark", "get_watermark"):
        real = inspect.signature(getattr(WatermarkerBase, name))
        ours = inspect.signature(getattr(WatermarkerStandIn, name))
        assert list(real.parameters) == list(ours.parameters), name


@pytest.mark.skipif(
    importlib.util.find_spec("perth") is None,
    reason="resemble-perth (with the gpu extra) is not installed",
)
def test_perths_own_watermarker_passes_the_check_and_its_dummy_does_not() -> None:
    import perth

    model = ChatterboxTTSStandIn()
    model.watermarker = perth.PerthImplicitWatermarker()
    engine = ChatterboxEngine(model_factory=lambda: model, seed_rng=model.seed)
    engine.load()
    assert engine.is_loaded
    model.watermarker = perth.DummyWatermarker()
    with pytest.raises(WatermarkUnavailable, match="DummyWatermarker left a test signal"):
        ChatterboxEngine(model_factory=lambda: model, seed_rng=model.seed).load()


@pytest.mark.parametrize(
    ("model", "honoured", "languages"),
    [
        ("original", ["exaggeration", "temperature", "cfg_weight", "seed"], 0),
        ("multilingual", ["exaggeration", "temperature", "cfg_weight", "seed"], 23),
        ("turbo", ["temperature", "seed"], 0),
    ],
)
def test_each_model_says_what_it_honours_before_it_loads(
    model: str, honoured: list[str], languages: int
) -> None:
    """/v1/engine answers (and the bots key their cache) before a GPU has loaded anything;
    each model's version names it, so their answers never share a cache key."""
    info = ChatterboxEngine(model=model).info
    assert info.honoured_params == honoured
    assert len(info.languages) == languages
    assert info.model_version.endswith("" if model == "original" else f"-{model}")


def test_an_unknown_model_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown Chatterbox model 'tiny'; one of: original"):
        ChatterboxEngine(model="tiny")
