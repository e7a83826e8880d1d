"""Piper called directly vs. the same texts through ``POST /v1/tts`` over loopback HTTP.

The baseline is the bare voice: piper-tts's own ``PiperVoice.synthesize`` (one
onnxruntime thread, one sentence after another), no loudness, no encoding. The
service side is a real uvicorn on 127.0.0.1 doing everything a bot gets: HTTP, JSON,
validation, chunking, loudness and OGG/Opus encoding, twice over:

- as deployed (``TTS_PARALLEL_SYNTHESES`` = cores): a lone request's sentences are
  spoken side by side on the slots nobody holds;
- with one slot (``TTS_PARALLEL_SYNTHESES=1``): one sentence at a time on one
  onnxruntime thread, as the baseline, so the ratio is the service's own cost.

Runs are interleaved so machine noise hits all alike, and each text is timed
seeded (noise-free) and unseeded.

    .venv/bin/python -m bench.bench_tts_service [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field

import httpx
import numpy as np
from pydantic import SecretStr

from tests.servers import serve_in_thread
from tts_service.api import create_app
from tts_service.engines.piper import PiperEngine
from tts_service.schema import TTSParams
from tts_service.settings import TTSSettings

TEXTS = [  # ~200 characters each: the size the target is set for
    "The morning train was late again, so Maria walked the last two miles along the river. "
    "She counted herons, waved at a fisherman, and arrived just as the old bakery on the corner "
    "opened its doors.",
    "Our quarterly numbers look steady. Revenue grew four percent, costs held flat, and the new "
    "support team answered most tickets within an hour. Next quarter we focus on retention and "
    "steady growth.",
    "Remember to water the tomatoes before noon. If the soil feels dry two knuckles deep, give "
    "them a long soak; otherwise a light sprinkle is enough until the weekend rain finally arrives "
    "here in town.",
]
SEEDS = {"seeded": 1, "unseeded": 0}
TOKEN = "bench-token"


SIDES = ("direct", "service", "one slot")


@dataclass
class Timings:
    seconds: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in SIDES})
    audio_s: float = 0.0

    def add(self, other: Timings) -> None:
        for side in SIDES:
            self.seconds[side] += other.seconds[side]
        self.audio_s += other.audio_s

    def report(self, label: str) -> None:
        direct = statistics.median(self.seconds["direct"])
        line = f"{label:9} direct p50 {direct * 1000:6.1f} ms"
        for side in SIDES[1:]:
            p50 = statistics.median(self.seconds[side])
            line += f"   {side} p50 {p50 * 1000:6.1f} ms ({p50 / direct:.3f}×)"
        rtf = sum(self.seconds["direct"]) / self.audio_s
        print(f"{line}   RTF direct {rtf:.3f}")


def piper_itself(engine: PiperEngine, params: TTSParams) -> np.ndarray:
    """piper-tts's own API, one sentence after another: the bare voice."""
    from piper import SynthesisConfig

    voice = engine._voice
    assert voice is not None
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0) if params.seed else None
    return np.concatenate([c.audio_float_array for c in voice.synthesize(params.text, config)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    engine = PiperEngine(onnx_threads=1)  # one slot per core, as deployed
    one_slot = PiperEngine(onnx_threads=1, parallel=1)
    for each in (engine, one_slot):
        each.load()
    rate = engine.info.sample_rate
    settings = TTSSettings(api_token=SecretStr(TOKEN), _env_file=None)  # type: ignore[call-arg]
    timings = {label: Timings() for label in SEEDS}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with (
        serve_in_thread(create_app(engine, settings)) as url,
        serve_in_thread(create_app(one_slot, settings)) as one_slot_url,
        httpx.Client(headers=auth, timeout=60) as client,
    ):
        services = {"service": f"{url}/v1/tts", "one slot": f"{one_slot_url}/v1/tts"}
        for text in TEXTS:  # warm-up: first calls pay for onnxruntime's allocations
            piper_itself(engine, TTSParams(text=text, seed=1))
            for address in services.values():
                client.post(address, json={"text": text, "seed": 1}).raise_for_status()
        for _ in range(args.rounds):
            for text in TEXTS:
                for label, seed in SEEDS.items():
                    timing = timings[label]
                    started = time.perf_counter()
                    samples = piper_itself(engine, TTSParams(text=text, seed=seed))
                    timing.seconds["direct"].append(time.perf_counter() - started)
                    timing.audio_s += samples.size / rate
                    for side, address in services.items():
                        started = time.perf_counter()
                        response = client.post(address, json={"text": text, "seed": seed})
                        timing.seconds[side].append(time.perf_counter() - started)
                        response.raise_for_status()

    chars = statistics.mean(len(t) for t in TEXTS)
    print(
        f"{len(TEXTS)} texts of {chars:.0f} characters on average × {args.rounds} rounds, "
        f"seeded and unseeded; one onnxruntime thread each; {engine.parallel} slots as "
        "deployed; target ratio ≤ 1.05×"
    )
    everything = Timings()
    for label, timing in timings.items():
        timing.report(label)
        everything.add(timing)
    everything.report("all")
    print("RTF = seconds of work per second of audio (direct side's audio length)")


if __name__ == "__main__":
    main()
