"""The Piper engine's concurrency: syntheses side by side, up to its ``parallel`` slots."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np

from tts_service.engines.piper import PiperEngine, parallel_syntheses
from tts_service.engines.piper_memory import Speaking
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


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_an_idle_voice_gives_its_memory_back() -> None:
    """Long sentences side by side grow onnxruntime's arena; giving it back returns most of it
    (and the voice still speaks the same afterwards)."""
    engine = PiperEngine(onnx_threads=1, parallel=2)
    engine.load()
    sentence = "a long sentence without a stop keeps on going over hills and rivers "
    texts = [(sentence[i:] + sentence * 9).strip() + "." for i in range(4)]  # ~120 words
    params = TTSParams(text=TEXT, seed=1)
    before_audio = engine.synthesize(TEXT, params, None)
    before = rss_mib()
    threads = [
        threading.Thread(
            target=lambda mine: [engine.synthesize(t, params, None) for t in mine], args=(half,)
        )
        for half in (texts[::2], texts[1::2])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    grown = rss_mib()
    assert grown - before > 100, (before, grown)  # the arena did grow
    engine.give_memory_back()
    after = rss_mib()
    assert grown - after > 0.6 * (grown - before), (before, grown, after)
    np.testing.assert_array_equal(engine.synthesize(TEXT, params, None), before_audio)


def test_memory_goes_back_once_quiet_never_while_speaking() -> None:
    released = threading.Event()
    cores = Speaking(2, idle_s=0.01, when_idle=released.set)
    with cores.speaking():
        assert cores.borrow()
        cores.give_back()  # a helper done: one still speaking, no timer
    assert released.wait(timeout=30)  # the last one done: released once quiet
    released.clear()
    with cores.speaking():
        stale = cores._quiet_since - 1  # a timer from before this began
        cores._if_still_idle(stale)
        cores._if_still_idle(cores._quiet_since)  # even a current one: still speaking
    assert not released.is_set()
    never = Speaking(1, idle_s=0.0, when_idle=released.set)
    with never.speaking():
        pass
    assert never._timer is None
