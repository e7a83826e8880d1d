"""Piper called directly vs. the same texts through ``POST /v1/tts`` over loopback HTTP.

The baseline is the bare voice: ``PiperEngine.synthesize`` (PiperVoice over
onnxruntime, one chunk per sentence), no loudness, no encoding. The service
side is a real uvicorn on 127.0.0.1 doing everything a bot gets: HTTP, JSON,
validation, chunking, loudness and OGG/Opus encoding. The ratio is therefore
the whole cost of the service around the model. Both use the same engine (one
onnxruntime thread), runs are interleaved so machine noise hits both alike,
and each text is timed seeded (noise-free) and unseeded.

    .venv/bin/python -m bench.bench_tts_service [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field

import httpx
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


@dataclass
class Timings:
    direct_s: list[float] = field(default_factory=list)
    http_s: list[float] = field(default_factory=list)
    audio_s: float = 0.0

    def report(self, label: str) -> None:
        direct, http = sum(self.direct_s), sum(self.http_s)
        p50_ratio = statistics.median(self.http_s) / statistics.median(self.direct_s)
        print(
            f"{label:9} direct p50 {statistics.median(self.direct_s) * 1000:6.1f} ms"
            f"   http p50 {statistics.median(self.http_s) * 1000:6.1f} ms"
            f"   ratio p50 {p50_ratio:.3f}×  total {http / direct:.3f}×"
            f"   RTF direct {direct / self.audio_s:.3f}  http {http / self.audio_s:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    engine = PiperEngine(onnx_threads=1)
    engine.load()
    rate = engine.info.sample_rate
    settings = TTSSettings(api_token=SecretStr(TOKEN), _env_file=None)  # type: ignore[call-arg]
    timings = {label: Timings() for label in SEEDS}
    with (
        serve_in_thread(create_app(engine, settings)) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        ) as client,
    ):
        for text in TEXTS:  # warm-up: first calls pay for onnxruntime's allocations
            engine.synthesize(text, TTSParams(text=text, seed=1), None)
            client.post("/v1/tts", json={"text": text, "seed": 1}).raise_for_status()
        for _ in range(args.rounds):
            for text in TEXTS:
                for label, seed in SEEDS.items():
                    params = TTSParams(text=text, seed=seed)
                    started = time.perf_counter()
                    samples = engine.synthesize(params.text, params, None)
                    timings[label].direct_s.append(time.perf_counter() - started)
                    timings[label].audio_s += samples.size / rate

                    started = time.perf_counter()
                    response = client.post("/v1/tts", json={"text": text, "seed": seed})
                    timings[label].http_s.append(time.perf_counter() - started)
                    response.raise_for_status()

    chars = statistics.mean(len(t) for t in TEXTS)
    print(
        f"{len(TEXTS)} texts of {chars:.0f} characters on average × {args.rounds} rounds, "
        "seeded and unseeded; one onnxruntime thread; target ratio ≤ 1.05×"
    )
    for label, timing in timings.items():
        timing.report(label)
    everything = Timings(
        direct_s=[t for timing in timings.values() for t in timing.direct_s],
        http_s=[t for timing in timings.values() for t in timing.http_s],
        audio_s=sum(timing.audio_s for timing in timings.values()),
    )
    everything.report("all")
    print("RTF = seconds of work per second of audio (direct side's audio length)")


if __name__ == "__main__":
    main()
