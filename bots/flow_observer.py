"""The hooks the ``/say`` flow reports through, so that it stays free of Prometheus.

``bots.metrics.PrometheusObserver`` implements them for ``saybot run``; tests count.
"""

from __future__ import annotations

from typing import Protocol


class FlowObserver(Protocol):
    """Hooks the metrics layer implements (``bots.metrics``); the flow stays Prometheus-free."""

    def request_started(self, platform: str) -> None: ...

    def request_finished(self, platform: str, outcome: str, seconds: float) -> None:
        """``outcome``: "hit", "miss" or an error code."""
        ...

    def tts_called(self, seconds: float, error_code: str | None) -> None: ...


class NoObserver:
    def request_started(self, platform: str) -> None:
        pass

    def request_finished(self, platform: str, outcome: str, seconds: float) -> None:
        pass

    def tts_called(self, seconds: float, error_code: str | None) -> None:
        pass
