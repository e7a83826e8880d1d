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
    # Each chunk brought to the target loudness on its own (the recorder speaks a chunk in
    # one part), then joined with a pause.
    parts = [
        audio.normalize_loudness(piper_engine.synthesize(chunk, params, None))
        for chunk in recorder.calls
    ]
    expected = [part for chunk_audio in parts for part in (pause, chunk_audio)][1:]
    np.testing.assert_array_equal(joined, np.concatenate(expected))
    # The same pieces in another order are a different signal: the check above sees order.
    shuffled = [part for chunk_audio in parts[::-1] for part in (pause, chunk_audio)][1:]
    assert not np.array_equal(joined, np.concatenate(shuffled))


def test_piper_speaks_sentence_by_sentence_each_at_the_same_loudness(
    piper_engine: PiperEngine,
) -> None:
    params = TTSParams(text=" ".join(SENTENCES[:3]), seed=1)
    whole = piper_engine.synthesize(params.text, params, None)
    parts = list(piper_engine.synthesize_parts(params.text, params, None))
    assert len(parts) == 3  # one per sentence, handed over as each is made
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    spoken = list(synthesis.spoken_parts(piper_engine, params, None))
    assert len(spoken) == 3  # one chunk: no pause between its sentences
    levels = [20 * np.log10(np.sqrt(np.mean(np.square(part)))) for part in spoken]
    assert levels == pytest.approx([audio.TARGET_RMS_DBFS] * 3, abs=1.0)  # peaks may cap it


@pytest.mark.parametrize("fmt", list(AudioFormat))
def test_the_file_is_the_parts_encoded_in_a_stream(
    piper_engine: PiperEngine, fmt: AudioFormat
) -> None:
    """Encoding part by part, beside the engine, gives the bytes of encoding the whole."""
    params = TTSParams(text=TEXT, seed=1, format=fmt)
    result = synthesis.synthesize(piper_engine, params)
    samples = synthesis.synthesize_samples(piper_engine, params, None)
    info = piper_engine.info
    assert result.audio == audio.encode(samples, info.sample_rate, fmt, engine=info)
    assert result.duration_s == pytest.approx(samples.size / info.sample_rate)


@pytest.mark.parametrize("text", ["...", "-", "( )"])
def test_text_the_engine_cannot_voice_is_nothing_to_say(
    recorder: RecordingEngine, text: str
) -> None:
    with pytest.raises(NothingToSay, match="nothing to say") as raised:
        synthesis.synthesize(recorder, TTSParams(text=text))
    assert raised.value.status_code == 422
    assert raised.value.code == "nothing_to_say"
    assert recorder.calls == [text]  # the engine was asked; it is the engine's call
