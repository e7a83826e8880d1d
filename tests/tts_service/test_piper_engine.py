"""The Piper engine's concurrency: syntheses side by side, up to its ``parallel`` slots."""

from __future__ import annotations

import contextlib

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
