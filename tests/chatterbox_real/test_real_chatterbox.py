"""The real chatterbox-tts 0.1.7 on the CPU, random weights, through the engine and over HTTP.

What the stand-in cannot show: the library's own shapes and code paths (cfg_weight=0,
exaggeration on cached conditionals), Perth really marking the answers, torch's RNG
making seeds repeatable, memory staying flat. Weights are random, so the "speech" is
noise shaped like speech; what is checked is behaviour, never how it sounds.
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import threading
from importlib.metadata import version
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from packaging.version import Version

from tests.chatterbox_real.checkpoint import synthetic_voice
from tests.chatterbox_real.conftest import NEEDS_CHATTERBOX
from tests.tts_service.audio_samples import encode_sf
from tts_service import audio
from tts_service.engines.chatterbox_weights import DeviceUnavailable, checkpoint_digest
from tts_service.schema import PARAM_RANGES, AudioFormat

pytestmark = [NEEDS_CHATTERBOX, pytest.mark.slow]
REPO_ROOT = Path(__file__).resolve().parents[2]


def reference(pitch_hz: float, fmt: str = "wav") -> str:
    """A voice clip (2 s) in a container the service accepts, base64 for the JSON body."""
    samples = synthetic_voice(2.0, pitch_hz)
    if fmt == "wav":
        data = encode_sf(samples, 24_000, "WAV", "PCM_16")
    elif fmt == "ogg_opus":
        data = encode_sf(samples, 24_000, "OGG", "OPUS")
    else:
        data = encode_sf(samples, 24_000, "MP3", "MPEG_LAYER_III")
    return base64.b64encode(data).decode()


def speak(client: httpx.Client, **body: object) -> httpx.Response:
    answer = client.post("/v1/tts", json={"format": "wav", **body})
    assert answer.status_code == 200, answer.text
    return answer


def samples_of(answer: httpx.Response) -> np.ndarray:
    data, _ = sf.read(io.BytesIO(answer.content), dtype="float32")
    return np.asarray(data)


# --- the model as loaded -----------------------------------------------------------------------


def test_the_engine_loads_the_real_model_with_perths_watermarker(
    real_engine, original_checkpoint: Path
) -> None:  # type: ignore[no-untyped-def]
    import perth

    model = real_engine._model
    assert type(model).__module__ == "chatterbox.tts"
    assert perth.PerthImplicitWatermarker is not None  # pkg_resources imported
    assert isinstance(model.watermarker, perth.PerthImplicitWatermarker)
    assert Version(version("setuptools")) < Version("82")
    info = real_engine.info
    assert info.watermarked and info.sample_rate == model.sr == 24_000
    digest = checkpoint_digest(original_checkpoint)
    assert info.model_version == f"chatterbox-tts-0.1.7+{digest[:12]}"


def test_an_unrelated_file_beside_the_weights_changes_no_cache_key(
    original_checkpoint: Path,
) -> None:
    before = checkpoint_digest(original_checkpoint)
    (original_checkpoint / "README.md").write_text("another upload to the hub repository")
    assert checkpoint_digest(original_checkpoint) == before


def test_cuda_asked_for_and_absent_refuses_to_load(original_checkpoint: Path) -> None:
    from tts_service.engines.chatterbox import ChatterboxEngine

    engine = ChatterboxEngine(checkpoint_dir=original_checkpoint, device="cuda")
    with pytest.raises(DeviceUnavailable, match="torch sees no CUDA device"):
        engine.load()
    assert not engine.is_loaded


def test_the_snapshot_phase_never_imports_what_asks_torch_about_cuda() -> None:
    code = (
        "import sys\n"
        "from tts_service.engines.chatterbox import ChatterboxEngine\n"
        "ChatterboxEngine.import_runtime()\n"
        "import torch\n"
        "print(sorted(m for m in ('chatterbox', 'transformers', 'diffusers') if m in sys.modules))\n"
        "print(torch.cuda.is_initialized())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[]", "False"]


# --- parameters and formats over HTTP ----------------------------------------------------------


BOUNDS = [
    (name, value)
    for name, bounds in PARAM_RANGES.items()
    for value in (bounds.minimum, bounds.maximum if bounds.maximum is not None else 2**63)
]


@pytest.mark.parametrize(("name", "value"), BOUNDS, ids=[f"{n}={v}" for n, v in BOUNDS])
def test_every_parameter_at_its_bounds_speaks(
    client: httpx.Client, name: str, value: float
) -> None:
    # cfg_weight=0 among them: chatterbox-tts 0.1.7 itself fails on it.
    answer = speak(client, text="Bounds.", **{name: value})
    assert samples_of(answer).size > 0
    assert float(answer.headers["X-Audio-Duration"]) > 0


@pytest.mark.parametrize("fmt", list(AudioFormat))
def test_every_format_decodes_as_what_was_asked(client: httpx.Client, fmt: AudioFormat) -> None:
    answer = client.post("/v1/tts", json={"text": "Formats.", "format": fmt.value, "seed": 3})
    assert answer.status_code == 200, answer.text
    decoded, rate = audio.decode(answer.content)
    assert decoded.size > 0 and rate > 0


# --- voices -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["wav", "ogg_opus", "mp3"])
def test_a_reference_clip_gives_its_own_voice(client: httpx.Client, fmt: str) -> None:
    own = speak(client, text="Cloned.", seed=11, reference_audio=reference(150.0, fmt))
    builtin = speak(client, text="Cloned.", seed=11)
    assert not np.array_equal(samples_of(own), samples_of(builtin))


def test_exaggeration_changes_never_alter_the_cached_voice(real_engine, client) -> None:  # type: ignore[no-untyped-def]
    voice = reference(170.0)
    misses = real_engine.cache_misses
    first = speak(client, text="Emotion.", seed=5, exaggeration=0.5, reference_audio=voice)
    louder = speak(client, text="Emotion.", seed=5, exaggeration=1.8, reference_audio=voice)
    again = speak(client, text="Emotion.", seed=5, exaggeration=0.5, reference_audio=voice)
    assert real_engine.cache_misses == misses + 1  # prepared once, then cached
    np.testing.assert_array_equal(samples_of(first), samples_of(again))
    assert samples_of(louder).size > 0
    # generate() swapped conds.t3 for 1.8 on its copy; the cached voice kept 0.5. (With
    # random weights the audio of 0.5 and 1.8 can come out alike: not asserted.)
    (cached,) = [c for c in real_engine._conds_cache.values() if c is not None][-1:]
    assert float(cached.t3.emotion_adv.flatten()[0]) == 0.5


def test_voices_switching_across_threads_never_mix(real_engine, client, service_url) -> None:  # type: ignore[no-untyped-def]
    voices = [None, reference(120.0), reference(200.0), reference(260.0)]

    def body(i: int) -> dict[str, object]:
        extra = {"reference_audio": voices[i]} if voices[i] else {}
        return {"text": f"Thread {i}.", "seed": 100 + i, **extra}

    alone = [samples_of(speak(client, **body(i))) for i in range(len(voices))]
    together: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(voices))

    def worker(i: int) -> None:
        try:
            headers = dict(client.headers)
            with httpx.Client(base_url=service_url, headers=headers, timeout=300) as own:
                start.wait()
                together[i] = samples_of(speak(own, **body(i)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(voices))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    for i in range(len(voices)):
        np.testing.assert_array_equal(together[i], alone[i])


# --- seeds, chunks, watermark -------------------------------------------------------------------


def test_a_seed_repeats_and_another_seed_differs(client: httpx.Client) -> None:
    one = samples_of(speak(client, text="Seeded.", seed=42))
    same = samples_of(speak(client, text="Seeded.", seed=42))
    other = samples_of(speak(client, text="Seeded.", seed=43))
    np.testing.assert_array_equal(one, same)
    assert not np.array_equal(one, other)


def test_long_text_is_spoken_chunk_by_chunk(real_engine, client) -> None:  # type: ignore[no-untyped-def]
    from tts_service.text import split_into_chunks

    sentence = (
        "This sentence is long enough that no second sentence of its size could ever "
        "fit beside it in one chunk, and it goes on and on for a while longer"
    )
    text = " ".join(f"{sentence}, number {i}." for i in range(3))
    chunks = split_into_chunks(text, real_engine.info.max_chunk_chars)
    assert len(chunks) >= 3
    short = float(speak(client, text=chunks[0], seed=8).headers["X-Audio-Duration"])
    whole = float(speak(client, text=text, seed=8).headers["X-Audio-Duration"])
    assert whole > short * 2


def test_perth_finds_its_watermark_in_the_answer(client: httpx.Client) -> None:
    import perth

    answer = speak(client, text="Watermarked, always.", seed=21)
    decoded, rate = audio.decode(answer.content)
    detector = perth.PerthImplicitWatermarker()
    assert float(np.mean(detector.get_watermark(decoded, sample_rate=rate))) >= 0.5
