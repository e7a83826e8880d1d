"""Piper called directly vs. the same texts through ``POST /v1/tts`` over loopback HTTP.

Both sides do the same work (synthesis + loudness + OGG/Opus encoding); the ratio
is the service's overhead: HTTP, JSON, validation, the worker thread. Runs are
interleaved so machine noise hits both alike. Prints ratios and real-time factors.

    .venv/bin/python -m bench.bench_tts_service [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
from pydantic import SecretStr

from tests.servers import serve_in_thread
from tts_service import synthesis
from tts_service.api import create_app
from tts_service.engines.piper import PiperEngine
from tts_service.schema import TTSParams
from tts_service.settings import TTSSettings

TEXTS = [
    "The morning train was late again, so Maria walked the last two miles along the river. "
    "She counted herons, waved at a fisherman, and arrived just as the old bakery on the corner opened its doors.",
    "Our quarterly numbers look steady. Revenue grew four percent, costs held flat, and the new "
    "support team answered most tickets within an hour. Next quarter we focus on retention and onboarding.",
    "Remember to water the tomatoes before noon. If the soil feels dry two knuckles deep, give "
    "them a long soak; otherwise a light sprinkle is enough until the weekend rain finally arrives.",
]
TOKEN = "bench-token"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    engine = PiperEngine(onnx_threads=1)
    engine.load()
    settings = TTSSettings(api_token=SecretStr(TOKEN), _env_file=None)  # type: ignore[call-arg]
    direct_s: list[float] = []
    http_s: list[float] = []
    audio_s = 0.0
    with (
        serve_in_thread(create_app(engine, settings)) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client,
    ):
        for text in TEXTS:  # warm-up: first calls pay for onnxruntime's allocations
            synthesis.synthesize(engine, TTSParams(text=text, seed=1))
            client.post("/v1/tts", json={"text": text, "seed": 1}).raise_for_status()
        for _ in range(args.rounds):
            for text in TEXTS:
                started = time.perf_counter()
                result = synthesis.synthesize(engine, TTSParams(text=text, seed=1))
                direct_s.append(time.perf_counter() - started)
                audio_s += result.duration_s

                started = time.perf_counter()
                response = client.post("/v1/tts", json={"text": text, "seed": 1}, timeout=60)
                http_s.append(time.perf_counter() - started)
                response.raise_for_status()
                assert response.content == result.audio, "service and direct call disagree"

    chars = statistics.mean(len(t) for t in TEXTS)
    direct_total, http_total = sum(direct_s), sum(http_s)
    print(f"texts: {len(TEXTS)} × {args.rounds} rounds, {chars:.0f} characters on average")
    print(f"direct  p50 {statistics.median(direct_s) * 1000:7.1f} ms   total {direct_total:6.2f} s")
    print(f"http    p50 {statistics.median(http_s) * 1000:7.1f} ms   total {http_total:6.2f} s")
    print(
        f"ratio http/direct: p50 {statistics.median(http_s) / statistics.median(direct_s):.3f}×"
        f"   total {http_total / direct_total:.3f}×   (target ≤ 1.05×)"
    )
    print(
        f"real-time factor (synthesis s / audio s): direct {direct_total / audio_s:.3f}"
        f"   http {http_total / audio_s:.3f}"
    )


if __name__ == "__main__":
    main()
