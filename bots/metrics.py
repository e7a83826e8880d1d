"""Prometheus metrics of the bot process, on a ``CollectorRegistry`` the caller owns.

``PrometheusObserver`` implements ``bots.flow_observer.FlowObserver`` (requests by platform and
outcome, end-to-end and TTS-call latency histograms, requests in flight, TTS errors by
code); ``StorageCollector`` exports a live ``StorageMetrics`` (cache hits and misses, Redis
errors, the breaker's state…) at scrape time. Nothing is registered globally: ``run()``
builds one registry per process and tests build their own, so they never see each other's
counts.

    registry = new_registry()
    observer = PrometheusObserver(registry)
    registry.register(StorageCollector(storage_metrics))

Latency percentiles for the dashboard are estimated from the histogram buckets (see
``Percentiles``), so they cover the whole life of the process and cost no extra memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from storage.metrics import StorageMetrics

# A cache hit takes milliseconds; a cold Chatterbox container tens of seconds; the bots give
# up on the TTS service after 180 s. Buckets cover all three with ~2× steps.
LATENCY_BUCKETS_S = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    4.0,
    8.0,
    15.0,
    30.0,
    60.0,
    120.0,
    180.0,
    math.inf,
)

PERCENTILES = (0.5, 0.9, 0.99)

# What each StorageMetrics counter means; a counter added there later is exported too,
# with a generic help text.
_STORAGE_HELP = {
    "redis_errors": "Redis commands that failed: storage calls (which degraded) and the "
    "admin endpoint's own usage reads and readiness PINGs",
    "cache_hits": "Audio cache lookups answered from Redis",
    "cache_misses": "Audio cache lookups that found nothing",
    "cache_stores": "Answers written to the audio cache",
    "cache_too_large": "Answers not cached: over cache_max_entry_bytes",
    "cache_corrupt": "Cached values that did not decode (treated as misses)",
    "cache_voice_forgotten": "Answers not cached: their voice was forgotten while they ran",
    "singleflight_leads": "Syntheses this process ran while holding a key's lock",
    "singleflight_joins": "Requests answered by a synthesis another caller ran",
    "singleflight_timeouts": "Requests that gave up waiting for another caller's synthesis",
    "ratelimit_denied": "Requests refused by the per-user rate limit",
    "redis_skipped": "Storage calls that degraded without trying: the breaker was open",
}


def new_registry() -> CollectorRegistry:
    """A fresh registry with the usual process, platform and GC collectors."""
    registry = CollectorRegistry()
    # New instances: the module-level ones of prometheus_client belong to its global registry.
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


@dataclass(frozen=True)
class Percentiles:
    """Estimated latency percentiles in seconds (None before the first observation).

    Estimated from cumulative histogram buckets as Prometheus' ``histogram_quantile`` does:
    find the bucket the rank falls in, interpolate linearly inside it; a rank in the
    ``+Inf`` bucket answers the highest finite bound. Accuracy is therefore one bucket
    (~2× steps here), which is what a dashboard needs; it costs no memory per request.
    """

    count: int
    p50: float | None
    p90: float | None
    p99: float | None


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of cumulative ``(upper_bound, count)`` buckets, sorted by bound."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # the highest finite bound: all we know
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def histogram_percentiles(histogram: Histogram) -> Percentiles:
    """p50/p90/p99 of ``histogram``, all its label values summed."""
    summed: dict[float, float] = {}
    for family in histogram.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                summed[bound] = summed.get(bound, 0.0) + sample.value
    buckets = sorted(summed.items())
    p50, p90, p99 = (quantile(q, buckets) for q in PERCENTILES)
    return Percentiles(count=int(buckets[-1][1]) if buckets else 0, p50=p50, p90=p90, p99=p99)


class PrometheusObserver:
    """The flow's hooks as Prometheus metrics (``bots.flow_observer.FlowObserver``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "saybot_requests",
            "/say requests finished, by platform and outcome (hit, miss or an error code)",
            ["platform", "outcome"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "saybot_request_seconds",
            "End-to-end time of a /say in the flow, from accepted to answered",
            ["platform"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.in_flight = Gauge(
            "saybot_requests_in_flight",
            "/say requests being handled now",
            ["platform"],
            registry=registry,
        )
        self.tts_seconds = Histogram(
            "saybot_tts_call_seconds",
            "Time of one call to the TTS service (retries included)",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.tts_errors = Counter(
            "saybot_tts_errors",
            "Failed calls to the TTS service, by error code",
            ["code"],
            registry=registry,
        )

    def request_started(self, platform: str) -> None:
        self.in_flight.labels(platform).inc()

    def request_finished(self, platform: str, outcome: str, seconds: float) -> None:
        self.in_flight.labels(platform).dec()
        self.requests.labels(platform, outcome).inc()
        self.request_seconds.labels(platform).observe(seconds)

    def tts_called(self, seconds: float, error_code: str | None) -> None:
        self.tts_seconds.observe(seconds)
        if error_code is not None:
            self.tts_errors.labels(error_code).inc()

    def request_percentiles(self) -> Percentiles:
        """End-to-end latency percentiles since the process started, all platforms."""
        return histogram_percentiles(self.request_seconds)

    def tts_percentiles(self) -> Percentiles:
        """TTS-call latency percentiles since the process started."""
        return histogram_percentiles(self.tts_seconds)


class StorageCollector(Collector):
    """Exports one live ``StorageMetrics`` at scrape time (storage stays Prometheus-free)."""

    def __init__(self, metrics: StorageMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for name, value in self.metrics.snapshot().items():
            if isinstance(value, bool):
                help_text = "1 while Redis answers, as last observed by any storage call"
                yield GaugeMetricFamily(f"saybot_{name}", help_text, value=float(value))
            else:
                help_text = _STORAGE_HELP.get(name, f"storage counter {name}")
                yield CounterMetricFamily(f"saybot_{name}", help_text, value=float(value))

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())


@dataclass(frozen=True)
class ProcessMetrics:
    """The one ``StorageMetrics``, registry and observer of a bot process, built together."""

    storage: StorageMetrics
    registry: CollectorRegistry
    observer: PrometheusObserver

    @classmethod
    def create(cls, storage: StorageMetrics | None = None) -> ProcessMetrics:
        storage = storage if storage is not None else StorageMetrics()
        registry = new_registry()
        observer = PrometheusObserver(registry)
        registry.register(StorageCollector(storage))
        return cls(storage, registry, observer)
