"""Getting an answer ready for a Discord voice channel: its own Opus packets vs. re-encoding.

saybot hands the answer's packets to discord.py as they are (``OpusPackets.of_ogg``: demux
the Ogg pages, check each packet's TOC). The peer is what a PCM source costs: the answer
decoded to samples and encoded to Opus again (PyAV's libopus, 20 ms frames, as the service
encodes; discord.py's own encoder would do the same work frame by frame while playing). Both
run on the same real answers (the bundled Piper voice, encoded by the service's own code),
interleaved, in one process; the ratio is ours / peer.

    .venv/bin/python -m bench.bench_voice [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

from bots.discord_bot.voice.opus_source import OpusPackets
from tts_service import audio
from tts_service.engines.piper import PiperEngine
from tts_service.schema import AudioFormat, TTSParams

TEXTS = [
    "Hello everyone, welcome to the voice channel.",
    "The morning train was late again, so Maria walked the last two miles along the river. "
    "She counted herons, waved at a fisherman, and arrived just as the bakery opened its doors.",
]


def ours(answer: bytes) -> int:
    source = OpusPackets.of_ogg(answer)
    packets = 0
    while source.read():
        packets += 1
    return packets


def peer(answer: bytes) -> int:
    samples, rate = audio.decode(answer)
    encoded = audio.encode_ogg_opus(audio.resample(samples, rate, audio.OPUS_SAMPLE_RATE), "")
    return len(encoded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    engine = PiperEngine(onnx_threads=1)
    engine.load()
    answers = []
    for text in TEXTS:
        samples = engine.synthesize(text, TTSParams(text=text, seed=1), None)
        answers.append(
            audio.encode(samples, engine.info.sample_rate, AudioFormat.OGG_OPUS, engine=engine.info)
        )
    for answer in answers:  # warm-up: FFmpeg's first open pays for its codec tables
        ours(answer)
        peer(answer)
    for text, answer in zip(TEXTS, answers, strict=True):
        ours_s: list[float] = []
        peer_s: list[float] = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            packets = ours(answer)
            ours_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            peer(answer)
            peer_s.append(time.perf_counter() - started)
        ratio = statistics.median(ours_s) / statistics.median(peer_s)
        print(
            f"{len(text):4} characters, {packets * 0.02:5.2f} s of audio ({packets} packets): "
            f"packets as they are p50 {statistics.median(ours_s) * 1000:6.2f} ms   "
            f"decode + re-encode p50 {statistics.median(peer_s) * 1000:7.2f} ms   "
            f"ratio {ratio:.3f}×"
        )


if __name__ == "__main__":
    main()
