"""End-to-end check of the real Chatterbox engine, where torch, the weights and a GPU exist.

    pip install -e ".[gpu]"
    python scripts/gpu_smoke.py                          # weights from the hub cache
    python scripts/gpu_smoke.py --checkpoint-dir DIR     # weights from download_checkpoint()

It loads ``ChatterboxEngine`` for real and runs the service's own pipeline:
the built-in voice over several chunks, a seeded repeat, voice cloning (the
second request must hit the conditionals cache), three requests at once, and
the AI tag and Perth watermark of a voice note. The audio goes to ``--out`` for listening.

Where a prerequisite is missing (CI, a laptop without CUDA) it prints
``SKIPPED: <reason>`` and exits 0, or 1 with ``--require``. Any failed check
exits 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import io
import os
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tts_service import synthesis  # noqa: E402
from tts_service.engines.chatterbox import ChatterboxEngine  # noqa: E402
from tts_service.engines.chatterbox_weights import CHECKPOINT_FILES, pick_device  # noqa: E402
from tts_service.engines.watermark import WatermarkUnavailable  # noqa: E402
from tts_service.schema import AudioFormat, TTSParams  # noqa: E402

LONG_TEXT = (
    "Hello from saybot, running Chatterbox on a real GPU. "
    "This paragraph is long enough to be split into more than one chunk, so the shared "
    "chunking, the pause between chunks and the loudness normalisation all run for real. "
    "If you can hear every sentence, in order, with nothing cut off, the pipeline works. "
    "The last sentence is here to make sure of it."
)


class Skip(Exception):
    """A prerequisite is missing; not a failure of the engine."""


class Failed(Exception):
    """A check failed."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise Failed(what)
    print(f"  ok    {what}")


def prerequisites(args: argparse.Namespace) -> str:
    """The device to use; raises Skip with the reason when something is missing."""
    for module, extra in (("torch", "torch"), ("chatterbox", "chatterbox-tts")):
        if importlib.util.find_spec(module) is None:
            raise Skip(f"{extra} is not installed (pip install -e '.[gpu]')")
    device = pick_device(args.device)
    if device == "cpu" and not args.allow_cpu:
        raise Skip("no CUDA or MPS device (pass --allow-cpu to run for minutes on the CPU)")
    if args.checkpoint_dir is not None:
        missing = [n for n in CHECKPOINT_FILES if not (args.checkpoint_dir / n).is_file()]
        if missing:
            raise Skip(f"{args.checkpoint_dir} lacks {', '.join(missing)}")
    return device


def load(args: argparse.Namespace, device: str) -> ChatterboxEngine:
    engine = ChatterboxEngine(
        checkpoint_dir=args.checkpoint_dir, hub_cache_dir=args.hub_cache_dir, device=device
    )
    started = time.perf_counter()
    try:
        engine.load()
    except OSError as exc:  # the hub unreachable and nothing cached: no weights here
        if args.checkpoint_dir is None:
            raise Skip(f"the weights are not cached and the hub is unreachable: {exc}") from exc
        raise
    except WatermarkUnavailable as exc:  # never a skip: the service would refuse to serve
        raise Failed(f"the engine does not load without its watermark: {exc}") from exc
    print(
        f"loaded {engine.info.model_version} on {device} in {time.perf_counter() - started:.1f} s"
    )
    return engine


def check_standin_signatures() -> None:
    from chatterbox.tts import ChatterboxTTS

    from tests.tts_service.chatterbox_standin import ChatterboxTTSStandIn

    for name in ("generate", "prepare_conditionals"):
        real = inspect.signature(getattr(ChatterboxTTS, name))
        ours = inspect.signature(getattr(ChatterboxTTSStandIn, name))
        same = [(p.name, p.default) for p in real.parameters.values()] == [
            (p.name, p.default) for p in ours.parameters.values()
        ]
        check(same, f"the test stand-in's {name} has the real signature {real}")


def speak(
    engine: ChatterboxEngine,
    text: str,
    out: Path,
    name: str,
    reference: bytes | None = None,
    **kw: object,
) -> tuple[bytes, float]:
    params = TTSParams(text=text, format=AudioFormat.WAV, **kw)  # type: ignore[arg-type]
    started = time.perf_counter()
    result = synthesis.synthesize(engine, params, reference)
    elapsed = time.perf_counter() - started
    (out / f"{name}.wav").write_bytes(result.audio)
    print(
        f"  {name}: {result.duration_s:.1f} s of audio in {elapsed:.1f} s "
        f"(real-time factor {elapsed / max(result.duration_s, 1e-9):.2f})"
    )
    return result.audio, result.duration_s


def run_checks(engine: ChatterboxEngine, out: Path) -> None:
    import numpy as np
    import soundfile as sf

    check_standin_signatures()
    check(engine.info.sample_rate == 24_000, "the model speaks at 24 kHz")

    print("built-in voice, several chunks:")
    wav, duration = speak(engine, LONG_TEXT, out, "builtin_long")
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    check(rate == engine.info.sample_rate, "the WAV has the model's rate")
    check(bool(np.isfinite(samples).all()), "no NaN or infinity in the audio")
    check(duration > 10.0, f"{duration:.1f} s is long enough for five sentences")
    check(float(np.sqrt(np.mean(samples**2))) > 0.01, "it is speech, not silence")

    print("seeded repeat:")
    first, _ = speak(engine, "The same seed twice.", out, "seed_a", seed=1234)
    second, _ = speak(engine, "The same seed twice.", out, "seed_b", seed=1234)
    if first == second:
        print("  ok    a seed repeats byte for byte")
    else:  # cuDNN/cuBLAS may pick nondeterministic kernels; report, don't fail
        a, _ = sf.read(io.BytesIO(first), dtype="float32")
        b, _ = sf.read(io.BytesIO(second), dtype="float32")
        print(f"  note  seeded outputs differ (lengths {len(a)} vs {len(b)}): GPU nondeterminism")

    print("voice cloning (the built-in voice's own audio as the reference):")
    buffer = io.BytesIO()
    sf.write(buffer, samples[: 8 * rate], rate, format="WAV", subtype="PCM_16")  # the first 8 s
    clip = buffer.getvalue()
    hits_before = engine.cache_hits
    speak(engine, "A cloned voice says hello.", out, "clone_1", reference=clip)
    speak(engine, "The cloned voice again.", out, "clone_2", reference=clip, exaggeration=0.9)
    check(engine.cache_hits == hits_before + 1, "the returning voice hit the conditionals cache")

    print("three requests at once:")
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            speak(engine, f"Concurrent request number {i}.", out, f"concurrent_{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    check(not errors, f"all three finished ({errors or 'no errors'})")

    print("disclosure and watermark, as docs/privacy.md tells anyone to check them:")
    check(engine.info.watermarked, "the engine promises Perth's watermark (its load proved it)")
    import librosa  # both come with chatterbox-tts; the engine does not load without perth
    import perth

    voice_note = synthesis.synthesize(engine, TTSParams(text="Is the watermark there?"), None)
    (out / "say.ogg").write_bytes(voice_note.audio)
    tag = f"DESCRIPTION=AI-generated speech (saybot; engine chatterbox {engine.info.model_version})"
    check(tag.encode() in voice_note.audio[:4096], "the voice note is tagged as AI-generated")
    wav, rate = librosa.load(out / "say.ogg", sr=None)
    found = perth.PerthImplicitWatermarker().get_watermark(wav, sample_rate=rate)
    check(float(np.mean(found)) > 0.5, f"the Perth watermark is found in say.ogg ({found})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=os.environ.get("TTS_CHATTERBOX_CHECKPOINT_DIR") or None,
    )
    parser.add_argument(
        "--hub-cache-dir", type=Path, default=os.environ.get("TTS_CHATTERBOX_HUB_CACHE_DIR") or None
    )
    parser.add_argument("--device", default=os.environ.get("TTS_CHATTERBOX_DEVICE") or None)
    parser.add_argument("--allow-cpu", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "artifacts" / "gpu_smoke")
    parser.add_argument(
        "--require", action="store_true", help="a missing prerequisite fails instead of skipping"
    )
    args = parser.parse_args(argv)
    try:
        device = prerequisites(args)
        engine = load(args, device)
        args.out.mkdir(parents=True, exist_ok=True)
        run_checks(engine, args.out)
    except Skip as skip:
        print(f"SKIPPED: {skip}")
        return 1 if args.require else 0
    except Failed as failure:
        print(f"FAILED: {failure}")
        return 1
    print(f"PASSED; listen to the audio in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
