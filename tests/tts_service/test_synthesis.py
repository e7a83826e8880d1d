"""The shared pipeline with the real Piper voice: chunk order, joining, nothing to say."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from tests.tts_service.engine_wrappers import RecordingEngine
from tts_service import audio, synthesis
from tts_service.engines.piper import PiperEngine
from tts_service.errors import NothingToSay
from tts_service.schema import AudioFormat, TTSParams
from tts_service.text import split_into_chunks

# Distinct sentences, so any reordering or loss shows in the recorded calls.
SENTENCES = [
    "One: the kettle starts to hum on the stove.",
    "Two: a cat watches the rain from the window.",
    "Three: the last bus leaves the square at nine.",
    "Four: somebody left the garden gate open again.",
    "Five: the radio plays an old song very quietly.",
]
TEXT = " ".join(SENTENCES)


@pytest.fixture()
def recorder(piper_engine: PiperEngine) -> RecordingEngine:
    return RecordingEngine(piper_engine, max_chunk_chars=100)


def test_the_engine_speaks_the_chunks_in_order(recorder: RecordingEngine) -> None:
    result = synthesis.synthesize(recorder, TTSParams(text=TEXT, seed=1, format=AudioFormat.WAV))
    assert recorder.calls == split_into_chunks(TEXT, 100)
    assert len(recorder.calls) >= 3
    assert all(len(call) <= 100 for call in recorder.calls)
    assert " ".join(recorder.calls) == TEXT  # every sentence once, in the order written
    assert sf.info(io.BytesIO(result.audio)).duration > 8.0


def test_the_audio_is_the_chunks_in_order_with_a_pause_between(
    recorder: RecordingEngine, piper_engine: PiperEngine
) -> None:
    params = TTSParams(text=TEXT, seed=1)  # seeded: each chunk's audio is repeatable
    joined = synthesis.synthesize_samples(recorder, params, None)
    rate = piper_engine.info.sample_rate
    pause = audio.silence(synthesis.CHUNK_PAUSE_S, rate)
    parts = [piper_engine.synthesize(chunk, params, None) for chunk in recorder.calls]
    expected = [part for chunk_audio in parts for part in (pause, chunk_audio)][1:]
    np.testing.assert_array_equal(joined, audio.normalize_loudness(np.concatenate(expected)))
    # The same pieces in another order are a different signal: the check above sees order.
    shuffled = [part for chunk_audio in parts[::-1] for part in (pause, chunk_audio)][1:]
    assert not np.array_equal(joined, audio.normalize_loudness(np.concatenate(shuffled)))


@pytest.mark.parametrize("text", ["...", "-", "( )"])
def test_text_the_engine_cannot_voice_is_nothing_to_say(
    recorder: RecordingEngine, text: str
) -> None:
    with pytest.raises(NothingToSay, match="nothing to say") as raised:
        synthesis.synthesize(recorder, TTSParams(text=text))
    assert raised.value.status_code == 422
    assert raised.value.code == "nothing_to_say"
    assert recorder.calls == [text]  # the engine was asked; it is the engine's call
