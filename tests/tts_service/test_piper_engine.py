"""The Piper engine's concurrency: syntheses side by side, up to its ``parallel`` slots."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np

from tts_service.engines.piper import PiperEngine, parallel_syntheses
from tts_service.schema import TTSParams

TEXT = "Two requests at once. Neither waits for the other."


def test_two_syntheses_run_at_once() -> None:
    """Each open synthesis holds a slot while it speaks; with two slots, a second one starts
    while the first is still between sentences (one lock around synthesis would block it)."""
    engine = PiperEngine(onnx_threads=1, parallel=2)
    engine.load()
    params = TTSParams(text=TEXT, seed=1)
    first = engine.synthesize_parts(TEXT, params, None)
    second = engine.synthesize_parts(TEXT, params, None)
    with contextlib.closing(first), contextlib.closing(second):
        a, b = next(first), next(second)  # both inside the engine now
        np.testing.assert_array_equal(a, b)  # and neither disturbed the other (seeded)
        rest = list(first) + list(second)
    assert len(rest) == 2  # one more sentence each
    # Closed or finished, the slots are free again: two more can start.
    np.testing.assert_array_equal(
        engine.synthesize(TEXT, params, None), np.concatenate([a, rest[0]])
    )


def test_parallel_syntheses_default_to_what_the_cores_hold() -> None:
    assert parallel_syntheses(onnx_threads=1, cores=8) == 8
    assert parallel_syntheses(onnx_threads=4, cores=8) == 2
    assert parallel_syntheses(onnx_threads=4, cores=2) == 1
    assert parallel_syntheses(onnx_threads=0, cores=8) == 1  # onnxruntime takes every core


LONG = (
    "A lone request may use every core. Its sentences are spoken side by side. "
    "Each one sounds as Piper itself would say it. The order never changes. Five in all."
)


def spoken_by_piper_itself(engine: PiperEngine, text: str) -> list[np.ndarray]:
    """``PiperVoice.synthesize``'s own sentences, noise-free (what a seed selects)."""
    from piper import SynthesisConfig

    voice = engine._voice
    assert voice is not None
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    return [chunk.audio_float_array for chunk in voice.synthesize(text, config)]


def test_sentences_spoken_ahead_are_piper_s_own_in_order() -> None:
    engine = PiperEngine(onnx_threads=1, parallel=3)
    engine.load()
    expected = spoken_by_piper_itself(engine, LONG)
    assert len(expected) == 5
    parts = list(engine.synthesize_parts(LONG, TTSParams(text=LONG, seed=1), None))
    assert len(parts) == len(expected)
    for part, own in zip(parts, expected, strict=True):
        np.testing.assert_array_equal(part, own)


def test_a_lone_request_speaks_sentences_ahead_on_spare_cores() -> None:
    """Alone, some sentences are spoken on helper threads; with every core busy, all on the
    request's own thread; and a request arriving meanwhile never waits for the helpers."""
    engine = PiperEngine(onnx_threads=1, parallel=2)
    engine.load()
    voice = engine._voice
    assert voice is not None
    speakers: list[str] = []
    original = voice.phoneme_ids_to_audio

    def recorded(*args: Any, **kwargs: Any) -> Any:
        speakers.append(threading.current_thread().name)
        return original(*args, **kwargs)

    voice.phoneme_ids_to_audio = recorded  # type: ignore[method-assign]
    params = TTSParams(text=LONG, seed=1)
    alone = list(engine.synthesize_parts(LONG, params, None))
    assert any(name.startswith("piper-ahead") for name in speakers), speakers
    speakers.clear()
    other = engine.synthesize_parts(TEXT, params, None)
    with contextlib.closing(other):
        next(other)  # another request speaks (and its second sentence on the spare core)
        busy = list(engine.synthesize_parts(LONG, params, None))  # at once: its own slot
    here = threading.current_thread().name
    assert len(speakers) == 2 + 5 and speakers.count(here) == 1 + 5  # none borrowed: all busy
    for a, b in zip(alone, busy, strict=True):
        np.testing.assert_array_equal(a, b)


def test_closing_early_gives_every_slot_back() -> None:
    engine = PiperEngine(onnx_threads=1, parallel=3)
    engine.load()
    for _ in range(3):
        parts = engine.synthesize_parts(LONG, TTSParams(text=LONG, seed=1), None)
        next(parts)
        parts.close()  # a client gone mid-way: sentences ahead called off or let finish
    assert engine._helpers is not None
    engine._helpers.shutdown(wait=True)  # sentences begun ahead have finished
    assert engine.cores.now == 0  # every core given back
    slots = engine._slots
    assert all(slots.acquire(blocking=False) for _ in range(engine.parallel))
