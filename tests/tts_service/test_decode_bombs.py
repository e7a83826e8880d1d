"""Decode bombs: clips that hold or claim hours of audio are refused cheaply, in words.

Memory is measured in a fresh process running the real ``prepare_reference``: its peak
RSS before and after the call, so what pytest has already allocated cannot hide a bomb.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.servers import serve_in_thread
from tests.tts_helpers import API_TOKEN, make_settings, wait_ready
from tests.tts_service import decode_bombs
from tests.tts_service.audio_samples import clip, encode_sf, tone
from tests.tts_service.chatterbox_standin import ChatterboxTTSStandIn
from tts_service import audio, clip_limits
from tts_service.api import create_app
from tts_service.engines.base import ReferenceClip
from tts_service.engines.chatterbox import ChatterboxEngine
from tts_service.errors import ReferenceAudioError

REPO_ROOT = Path(__file__).resolve().parents[2]
ENGINE_RATE = 24_000  # Chatterbox's, and what the bots prepare clips at
MAX_RSS_GROWTH_MB = 100
SUBPROCESS_TIMEOUT_S = 120

# One clip, decoded in a fresh process: the peak RSS (ru_maxrss, KiB on Linux) just
# before and just after ``prepare_reference``, with the libraries already loaded.
MEASURE = """
import json, resource, sys, time
import av, soundfile, soxr
from tts_service import audio
from tts_service.errors import ReferenceAudioError
data = open(sys.argv[1], "rb").read()
before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    audio.prepare_reference(data, int(sys.argv[2]))
    error = None
except ReferenceAudioError as exc:
    error = exc.message
print(json.dumps({
    "error": error,
    "seconds": time.perf_counter() - started,
    "before_kib": before_kib,
    "after_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}))
"""


@functools.cache
def _flac_8ch_30min() -> bytes:
    """Made once per session: FLAC-encoding 30 minutes of 8 channels takes seconds."""
    return decode_bombs.flac_of_silence(1800.0, rate=48_000, channels=8)


# name → (how to make it, what the refusal must say)
BOMBS: dict[str, tuple[Callable[[], bytes], str]] = {
    # The clip: 715 KB, 8 channels at 48 kHz, 30 minutes (2.8 GB as float32).
    "flac-8ch-30min": (
        _flac_8ch_30min,
        r"lasts 1800 s; it needs between 1 and 60 seconds of speech",
    ),
    # The same FLAC saying it does not know its length: only counting frames stops it.
    "flac-8ch-30min-unknown-length": (
        lambda: decode_bombs.without_sample_count(_flac_8ch_30min()),
        r"is longer than 120 s; it needs between 1 and 60 seconds of speech",
    ),
    "wav-384khz": (
        lambda: decode_bombs.wav_of_tone(2.0, 384_000),
        r"sample rate \(384000 Hz\) is not one a voice clip has",
    ),
    "wav-64-channels": (
        lambda: decode_bombs.wav_of_tone(0.5, 16_000, channels=64),
        r"has 64 channels; send a mono or stereo clip",
    ),
    # A real hour of Opus silence: half a megabyte.
    "opus-1h-of-silence": (
        lambda: decode_bombs.opus_of_silence(3600.0),
        r"lasts 3600 s; it needs between 1 and 60 seconds",
    ),
    # Two seconds of Opus, a few hundred bytes, whose last page claims 1000 hours: the
    # old decoder asked numpy for 644 GiB and a MemoryError escaped.
    "opus-claiming-1000h": (
        lambda: decode_bombs.with_last_granule(
            decode_bombs.opus_of_silence(2.0), 1000 * 3600 * decode_bombs.OPUS_RATE
        ),
        r"lasts 3600000 s; it needs between 1 and 60 seconds",
    ),
    # A browser-style live WebM: ten minutes of Opus and no duration anywhere (FFmpeg path).
    "webm-10min-no-duration": (
        lambda: decode_bombs.opus_of_silence(600.0, "webm", live="1"),
        r"is longer than 120 s; it needs between 1 and 60 seconds of speech",
    ),
    # A RIFF header claiming 4 GB of samples, followed by a quarter of a second of them:
    # libsndfile believes the file's size over the header, so it is a clip too short.
    "wav-claiming-4gb": (
        lambda: decode_bombs.wav_claiming(
            0xFFFF_FF00, encode_sf(tone(0.25), 16_000, "RAW", "PCM_16")
        ),
        r"has 0\.\d s of speech; it needs between 1 and 60 seconds",
    ),
    "m4a-cut-short": (
        decode_bombs.m4a_cut_short,
        r"could not be decoded; send OGG, MP3, WAV, FLAC, M4A or WebM audio",
    ),
}


def measure_in_fresh_process(data: bytes, tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "clip.bin"
    path.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), str(ENGINE_RATE)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BOMBS))
def test_a_decode_bomb_is_refused_in_words_without_the_memory(name: str, tmp_path: Path) -> None:
    make, message = BOMBS[name]
    data = make()
    assert len(data) < 2_000_000  # each is a small upload, far under the 10 MB limit
    result = measure_in_fresh_process(data, tmp_path)
    growth_mb = (int(str(result["after_kib"])) - int(str(result["before_kib"]))) / 1024
    print(f"{name}: {len(data)} bytes, {result['seconds']:.2f} s, peak RSS +{growth_mb:.0f} MB")
    error = result["error"]
    assert isinstance(error, str), f"{name} was accepted"
    assert error.startswith("the voice clip") and not re.search(r"\n|\. ", error), error
    assert re.search(message, error), error
    assert growth_mb < MAX_RSS_GROWTH_MB, result


# --- the limits, at their edges ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "seconds"),
    [
        (decode_bombs.wav_of_tone(3.0, 48_000, channels=8), 3.0),  # 8 channels: mixed down
        (decode_bombs.wav_of_tone(2.0, 192_000), 2.0),
        (decode_bombs.wav_of_tone(2.0, 8_000), 2.0),
    ],
    ids=["8-channels", "192-khz", "8-khz"],
)
def test_clips_inside_the_limits_still_decode(data: bytes, seconds: float) -> None:
    reference = audio.prepare_reference(data, ENGINE_RATE)
    assert reference.samples.ndim == 1
    assert reference.samples.size / ENGINE_RATE == pytest.approx(seconds, abs=0.05)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (decode_bombs.wav_of_tone(2.0, 6_000), r"sample rate \(6000 Hz\) is not one"),
        (decode_bombs.wav_of_tone(0.1, 16_000, channels=9), r"has 9 channels; send a mono or"),
        (encode_sf(tone(121.0, 8_000), 8_000, "WAV", "PCM_16"), r"lasts 121 s; it needs"),
    ],
    ids=["6-khz", "9-channels", "declares-121-s"],
)
def test_metadata_alone_refuses_a_clip(data: bytes, message: str) -> None:
    with pytest.raises(ReferenceAudioError, match=message):
        audio.prepare_reference(data, ENGINE_RATE)


def flac_without_length(seconds: float) -> bytes:
    return decode_bombs.without_sample_count(
        decode_bombs.flac_of_silence(seconds, rate=16_000, channels=1)
    )


def webm_without_length(seconds: float) -> bytes:
    return decode_bombs.opus_of_silence(seconds, "webm", live="1")


@pytest.mark.parametrize("make", [flac_without_length, webm_without_length], ids=["flac", "webm"])
def test_a_clip_with_no_length_is_counted_while_it_decodes(make: Callable[[float], bytes]) -> None:
    # Nothing declares these clips' length (libsndfile's and FFmpeg's paths), so the
    # budget is all that stops them: just under it decodes (and is silence), just over
    # it is refused without decoding the rest.
    with pytest.raises(ReferenceAudioError, match="is silent"):
        audio.prepare_reference(make(clip_limits.MAX_DECODED_S - 2), ENGINE_RATE)
    with pytest.raises(ReferenceAudioError, match="is longer than 120 s"):
        audio.prepare_reference(make(clip_limits.MAX_DECODED_S + 5), ENGINE_RATE)


def test_mp3_decodes_whole_not_block_by_block_garbled() -> None:
    # libsndfile's MP3 decoder garbles audio read in blocks (correlation 0.97 here,
    # libmpg123 "part2_3_length" errors), so MP3 goes to FFmpeg: the same voice as the WAV.
    from_wav = audio.prepare_reference(clip("wav", seconds=3.0), ENGINE_RATE).samples
    from_mp3 = audio.prepare_reference(clip("mp3", seconds=3.0), ENGINE_RATE).samples
    assert from_mp3.size == from_wav.size
    assert np.corrcoef(from_wav, from_mp3)[0, 1] > 0.999


# --- decodes at once ---------------------------------------------------------------------------


def test_a_decode_waits_for_a_slot_while_two_are_running() -> None:
    slots = audio.DECODE_SLOTS
    assert slots.limit == clip_limits.MAX_CONCURRENT_DECODES == 2
    results: list[ReferenceClip] = []
    waiter = threading.Thread(
        target=lambda: results.append(audio.prepare_reference(clip("wav"), ENGINE_RATE))
    )
    with ExitStack() as held:
        held.enter_context(slots.hold())
        second = held.enter_context(ExitStack())
        second.enter_context(slots.hold())
        waiter.start()
        assert slots.wait_for(lambda s: s.waiting == 1, timeout_s=30)
        # Both slots are ours, so the third decode cannot have started, let alone ended.
        assert (slots.busy, results) == (2, [])
        second.close()  # one slot free: the waiting decode takes it and finishes
        waiter.join(timeout=30)
        assert not waiter.is_alive()
        assert len(results) == 1 and results[0].sample_rate == ENGINE_RATE
        assert (slots.busy, slots.waiting) == (1, 0)
    assert slots.busy == 0


# --- through the service -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloning_service() -> Iterator[tuple[str, ChatterboxTTSStandIn]]:
    model = ChatterboxTTSStandIn()
    engine = ChatterboxEngine(
        model_factory=lambda: model, seed_rng=model.seed, model_version="chatterbox-standin"
    )
    with serve_in_thread(create_app(engine, make_settings())) as url:
        wait_ready(url)
        yield url, model


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("flac-8ch-30min", "lasts 1800 s"),
        ("opus-claiming-1000h", "lasts 3600000 s"),
        ("webm-10min-no-duration", "is longer than 120 s"),
    ],
)
def test_the_service_answers_a_bomb_with_400_at_once(
    cloning_service: tuple[str, ChatterboxTTSStandIn], name: str, message: str
) -> None:
    url, model = cloning_service
    body = {
        "text": "Hello in a voice from a bomb.",
        "reference_audio": base64.b64encode(BOMBS[name][0]()).decode(),
    }
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        prepared = len(model.prepare_calls)
        started = time.monotonic()
        response = http.post("/v1/tts", json=body)
        elapsed_s = time.monotonic() - started
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_reference_audio"
        assert message in error["message"]
        assert elapsed_s < 3.0  # the old decoder took 2-15 s and gigabytes on these
        assert len(model.prepare_calls) == prepared  # nothing reached the model
        fine = http.post(
            "/v1/tts", json={**body, "reference_audio": base64.b64encode(clip("wav")).decode()}
        )
        assert fine.status_code == 200, fine.text
