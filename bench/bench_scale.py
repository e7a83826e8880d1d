"""Past one machine, under load: ``/say`` from many users through two Telegram webhook
workers (two ``saybot run`` processes behind a round-robin proxy) over a 3-primary Valkey
cluster and one real TTS service (``saybot serve-tts``, Piper), all as separate processes.

Messages are drawn from ``--texts`` sentences with Zipf-like repetition (weight 1/rank^s)
and pushed through the proxy as fast as they are answered: ``--concurrency`` messages await
their reply at any time (closed loop; an open one only measures the backlog the burst
leaves in the workers). The Bot API stand-in runs here and records every reply.

Prints: replies (exactly one per message: none lost, none doubled), syntheses the TTS
service made vs. distinct texts sent (single-flight and the cache are global across
processes), p50/p99 latency (POST of the update → the reply reaching the Bot API), messages
per second, RSS of every process at start and end, and the cluster's memory.

    .venv/bin/python -m bench.bench_scale [--messages 10000] [--users 500] [--texts 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bots.asgi_server import serve_app
from tests.redis_fixtures import free_port
from tests.round_robin import RoundRobin
from tests.standins.telegram_api import TOKEN, TelegramStandin
from tests.valkey_cluster import ValkeyCluster, start_cluster

ROOT = Path(__file__).resolve().parents[1]
HOOK = "https://bot.example.org/telegram/hook"
REPLIES = ("sendVoice", "sendMessage", "sendAudio", "sendDocument")


@dataclass
class Report:
    messages: int
    distinct_texts: int
    replies_per_message: Counter[int]  # how many messages got 0, 1, 2… replies
    reply_kinds: Counter[str]
    syntheses: int
    latencies_s: list[float]
    wall_s: float
    rss_kib: dict[str, tuple[int, int]]  # process → (start, end)
    redis_used_bytes: int
    routed: dict[str, int] = field(default_factory=dict)

    @property
    def exactly_once(self) -> bool:
        return set(self.replies_per_message) == {1}

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def lines(self) -> list[str]:
        growth = {name: (end - start) / start * 100 for name, (start, end) in self.rss_kib.items()}
        return [
            f"messages {self.messages}, distinct texts {self.distinct_texts}",
            f"  replies per message {dict(sorted(self.replies_per_message.items()))}"
            f"  ({'exactly one each' if self.exactly_once else 'NOT exactly one each'})",
            f"  reply kinds {dict(self.reply_kinds)}",
            f"  syntheses {self.syntheses} vs distinct texts {self.distinct_texts}"
            f"   ratio {self.syntheses / max(1, self.distinct_texts):.3f}",
            f"  latency p50 {self.percentile(0.5) * 1000:.0f} ms, p99 "
            f"{self.percentile(0.99) * 1000:.0f} ms",
            f"  throughput {self.messages / self.wall_s:.1f} msg/s over {self.wall_s:.1f} s",
            *(
                f"  RSS {name}: {start / 1024:.1f} → {end / 1024:.1f} MiB ({growth[name]:+.1f} %)"
                for name, (start, end) in self.rss_kib.items()
            ),
            f"  Redis used memory (all primaries) {self.redis_used_bytes / 2**20:.1f} MiB",
            f"  updates routed per worker {self.routed}",
        ]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def zipf_texts(count: int, draws: int, rng: random.Random, s: float = 1.1) -> list[str]:
    sentences = [f"Scale test sentence number {rank}." for rank in range(1, count + 1)]
    weights = [1 / rank**s for rank in range(1, count + 1)]
    return rng.choices(sentences, weights, k=draws)


def clean_env(**values: str) -> dict[str, str]:
    """The bench's environment without anything that would point a child elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "CACHE_REDIS", "TTS_", "TELEGRAM_", "DISCORD_", "ADMIN_"))
    }
    env.update(PYTHONPATH=str(ROOT), **values)
    return env


async def wait_until(url: str, headers: dict[str, str], proc: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=5, headers=headers) as http:
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"{url}: the process exited ({proc.returncode})")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not ready within {timeout_s} s")
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def process(args: list[str], env: dict[str, str], cwd: Path) -> AsyncIterator[Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def run_scale(
    messages: int = 10_000,
    users: int = 500,
    texts: int = 300,
    workers: int = 2,
    concurrency: int = 50,
    seed: int = 1,
) -> Report:
    rng = random.Random(seed)
    drawn = zipf_texts(texts, messages, rng)
    senders = [5_000_000 + rng.randrange(users) for _ in range(messages)]
    tts_token, admin_token, hook_secret = (secrets.token_urlsafe(24) for _ in range(3))
    with tempfile.TemporaryDirectory(prefix="saybot-scale-") as tmp:
        work = Path(tmp)
        cluster = await asyncio.to_thread(start_cluster, work / "cluster", 3)
        try:
            return await _run(
                cluster, work, drawn, senders, workers, concurrency,
                tts_token, admin_token, hook_secret,
            )  # fmt: skip
        finally:
            cluster.stop()


async def _run(
    cluster: ValkeyCluster,
    work: Path,
    drawn: list[str],
    senders: list[int],
    workers: int,
    concurrency: int,
    tts_token: str,
    admin_token: str,
    hook_secret: str,
) -> Report:
    tts_port = free_port()
    async with contextlib.AsyncExitStack() as stack:
        tg = await stack.enter_async_context(TelegramStandin())
        tts = await stack.enter_async_context(
            process(
                ["-m", "bots.cli", "serve-tts", "--port", str(tts_port)],
                clean_env(TTS_API_TOKEN=tts_token, TTS_ONNX_THREADS="1", TTS_MAX_IN_FLIGHT="8"),
                work,
            )
        )
        await wait_until(f"http://127.0.0.1:{tts_port}/healthz", {}, tts)
        await _warm_up(f"http://127.0.0.1:{tts_port}", tts_token)  # RSS "at start" is warm
        tts_proxy = RoundRobin([f"http://127.0.0.1:{tts_port}"])  # counts the syntheses
        tts_url = await stack.enter_async_context(serve_app(tts_proxy, "127.0.0.1", 0))
        hook_ports, procs = [free_port() for _ in range(workers)], {"tts": tts}
        for index, hook_port in enumerate(hook_ports):
            admin_port = free_port()
            env = clean_env(
                REDIS_URL=cluster.url, REDIS_CLUSTER="true", RATELIMIT_ENABLED="false",
                TTS_SERVICE_URL=tts_url, TTS_API_TOKEN=tts_token,
                TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE_URL=tg.base_url,
                TELEGRAM_FILE_BASE_URL=tg.base_file_url, TELEGRAM_WEBHOOK_URL=HOOK,
                TELEGRAM_WEBHOOK_PORT=str(hook_port), TELEGRAM_WEBHOOK_SECRET=hook_secret,
                ADMIN_PORT=str(admin_port), ADMIN_TOKEN=admin_token,
            )  # fmt: skip
            proc = await stack.enter_async_context(process(["-m", "bots.cli", "run"], env, work))
            procs[f"worker{index}"] = proc
            await wait_until(
                f"http://127.0.0.1:{admin_port}/readyz",
                {"Authorization": f"Bearer {admin_token}"},
                proc,
            )
        entry_proxy = RoundRobin([f"http://127.0.0.1:{port}" for port in hook_ports])
        entry = await stack.enter_async_context(serve_app(entry_proxy, "127.0.0.1", 0))
        rss_start = {name: rss_kib(proc.pid) for name, proc in procs.items()}

        posted: dict[tuple[int, int], float] = {}
        waiting: dict[tuple[int, int], asyncio.Event] = {}
        limit = asyncio.Semaphore(concurrency)
        started = time.monotonic()
        watcher = asyncio.create_task(_release_answered(tg, waiting))
        # A fresh connection per update (as Telegram's own deliveries mostly are): a kept-alive
        # one the proxy is just closing would fail after the update may have been taken.
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:

            async def push(update_id: int, user: int, text: str) -> None:
                """One message; its slot is free again once its reply has arrived."""
                async with limit:
                    message = tg.send_text(user, user, f"/say {text}")
                    key = (user, message["message_id"])
                    answered = waiting[key] = asyncio.Event()
                    posted[key] = time.monotonic()
                    answer = await http.post(
                        f"{entry}/telegram/hook",
                        json={"update_id": update_id, "message": message},
                        headers={"X-Telegram-Bot-Api-Secret-Token": hook_secret},
                    )
                    answer.raise_for_status()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(answered.wait(), 300)

            await asyncio.gather(
                *(
                    push(1 + n, user, text)
                    for n, (user, text) in enumerate(zip(senders, drawn, strict=True))
                )
            )
            watcher.cancel()
            replies = await _all_replies(tg, len(drawn))
        wall_s = time.monotonic() - started
        rss = {name: (rss_start[name], rss_kib(proc.pid)) for name, proc in procs.items()}
        used = 0
        for index in range(len(cluster.ports)):
            with cluster.node(index) as node:
                info: Any = node.info("memory")
                used += int(info["used_memory"])
    per_message: Counter[tuple[int, int]] = Counter()
    latencies: list[float] = []
    kinds: Counter[str] = Counter()
    for call in replies:
        key = _reply_key(call)
        per_message[key] += 1
        kinds[call.method] += 1
        if key in posted and per_message[key] == 1:
            latencies.append(call.at - posted[key])
    counts = Counter(per_message[key] for key in posted)
    return Report(
        messages=len(drawn),
        distinct_texts=len(set(drawn)),
        replies_per_message=counts,
        reply_kinds=kinds,
        syntheses=tts_proxy.paths["POST /v1/tts"],
        latencies_s=latencies,
        wall_s=wall_s,
        rss_kib=rss,
        redis_used_bytes=used,
        routed=dict(entry_proxy.sent),
    )


async def _warm_up(tts_url: str, token: str) -> None:
    """One synthesis (not counted): the engine's first run sizes its buffers."""
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=60) as http:
        while True:
            answer = await http.post(
                f"{tts_url}/v1/tts",
                json={"text": "Warming up.", "format": "ogg_opus"},
                headers={"Authorization": f"Bearer {token}"},
            )
            if answer.status_code != 503 or time.monotonic() > deadline:  # 503: still loading
                answer.raise_for_status()
                return
            await asyncio.sleep(float(answer.headers.get("retry-after", "1")))


def _reply_key(call: Any) -> tuple[int, int]:
    """(chat, message answered) of a reply the Bot API received."""
    target = (call.params.get("reply_parameters") or {}).get("message_id") or call.params.get(
        "reply_to_message_id"
    )
    return int(call.params["chat_id"]), int(target or 0)


async def _release_answered(tg: TelegramStandin, waiting: dict[Any, asyncio.Event]) -> None:
    """Wake each pushed message's sender once its reply reached the Bot API."""
    seen = 0
    while True:
        calls = tg.calls()
        for call in calls[seen:]:
            if call.method in REPLIES and (event := waiting.get(_reply_key(call))) is not None:
                event.set()
        seen = len(calls)
        await asyncio.sleep(0.02)


async def _all_replies(tg: TelegramStandin, expected: int, idle_s: float = 30.0) -> list[Any]:
    """Every reply the Bot API received, once ``expected`` arrived and none came for a
    moment more (so doubled replies are counted too); gives up after ``idle_s`` without any."""
    last_count, last_change = -1, time.monotonic()
    while True:
        replies = [c for c in tg.calls() if c.method in REPLIES]
        if len(replies) != last_count:
            last_count, last_change = len(replies), time.monotonic()
        quiet_s = time.monotonic() - last_change
        if (len(replies) >= expected and quiet_s > 1.0) or quiet_s > idle_s:
            return replies
        await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50, help="messages awaiting a reply")
    args = parser.parse_args()
    report = asyncio.run(
        run_scale(args.messages, args.users, args.texts, concurrency=args.concurrency)
    )
    print("\n".join(report.lines()))
    if not report.exactly_once or report.syntheses != report.distinct_texts:
        sys.exit(1)


if __name__ == "__main__":
    main()
