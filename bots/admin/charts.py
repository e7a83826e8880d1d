"""The dashboard's charts: plain SVG drawn on the server, no JavaScript, nothing fetched.

Every value put into markup is a number this module formats, or goes through
``html.escape``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from html import escape

from bots.admin.reports import CURRENCY, estimated_cost
from bots.metrics import Percentiles
from storage.usage import UsageCounts

# Chart geometry, in SVG user units (the SVG scales to the width of its card).
WIDTH, HEIGHT = 480, 200
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 64, 8, 10, 24
PLOT_W = WIDTH - PAD_LEFT - PAD_RIGHT
PLOT_H = HEIGHT - PAD_TOP - PAD_BOTTOM
BAR_FILL = 0.7  # of each day's slot


# --- formatting ------------------------------------------------------------------------------


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.2f} s"
    return f"{value / 60:.1f} min"


def fmt_cost(value: float) -> str:
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def nice_ceiling(value: float, steps: Sequence[float] = (1, 2, 2.5, 5, 10)) -> float:
    """The smallest ``step × 10^k`` that is ≥ ``value`` (the first step for nothing)."""
    if value <= 0:
        return float(steps[0])
    scale = 10.0 ** math.floor(math.log10(value))
    for step in steps:
        if value <= step * scale * (1 + 1e-9):
            return step * scale
    return 10 * scale


def count_ceiling(value: float) -> float:
    """An axis top for counts whose half is a whole number too (2, 4, 6, 8, 10, 20…)."""
    return max(nice_ceiling(value, (2, 4, 6, 8, 10)), 2.0)


def fmt_axis_cost(value: float) -> str:
    if value >= 100:
        return f"${value:,.0f}"
    return f"${value:.3g}" if value else "$0"


def _num(value: float) -> str:
    """A coordinate: two decimals, no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


# --- charts ----------------------------------------------------------------------------------


def _svg(chart_id: str, label: str, body: str, height: int = HEIGHT) -> str:
    return (
        f'<svg class="chart" id="{chart_id}" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def _y_axis(top: float, fmt: Callable[[float], str]) -> str:
    parts = []
    for fraction in (0.0, 0.5, 1.0):
        y = PAD_TOP + PLOT_H * (1 - fraction)
        parts.append(
            f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" '
            f'y1="{_num(y)}" y2="{_num(y)}"/>'
            f'<text class="ylabel" x="{PAD_LEFT - 6}" y="{_num(y + 4)}" '
            f'text-anchor="end">{escape(fmt(top * fraction))}</text>'
        )
    return "".join(parts)


def _x_labels(days: Sequence[dt.date]) -> str:
    """First, middle and last day, as MM-DD under their slots."""
    if not days:
        return ""
    slot = PLOT_W / len(days)
    picked = sorted({0, (len(days) - 1) // 2, len(days) - 1})
    parts = []
    for index in picked:
        x = PAD_LEFT + slot * (index + 0.5)
        anchor = "start" if index == 0 and len(days) > 1 else "middle"
        if index == len(days) - 1 and len(days) > 1:
            anchor = "end"
        parts.append(
            f'<text class="xlabel" x="{_num(x)}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
            f"{days[index].strftime('%m-%d')}</text>"
        )
    return "".join(parts)


def requests_chart(per_day: Sequence[tuple[dt.date, UsageCounts]]) -> str:
    """Stacked bars per day: cache hits, misses, errors (one ``g.bar`` per day)."""
    top = count_ceiling(max((counts.requests for _, counts in per_day), default=0))
    slot = PLOT_W / max(len(per_day), 1)
    width = max(slot * BAR_FILL, 1.0)
    parts = [_y_axis(top, fmt_int)]
    for index, (day, counts) in enumerate(per_day):
        x = PAD_LEFT + slot * index + (slot - width) / 2
        bottom = float(PAD_TOP + PLOT_H)
        title = (
            f"{day.isoformat()}: {counts.requests} requests "
            f"({counts.hits} hits, {counts.misses} misses, {counts.errors} errors)"
        )
        segments = []
        for series, value in (
            ("hits", counts.hits),
            ("misses", counts.misses),
            ("errors", counts.errors),
        ):
            if value <= 0:
                continue
            height = PLOT_H * value / top
            bottom -= height
            segments.append(
                f'<rect class="seg {series}" x="{_num(x)}" y="{_num(bottom)}" '
                f'width="{_num(width)}" height="{_num(height)}"/>'
            )
        parts.append(
            f'<g class="bar" data-day="{day.isoformat()}" data-requests="{counts.requests}">'
            f"<title>{escape(title)}</title>{''.join(segments)}</g>"
        )
    parts.append(_x_labels([day for day, _ in per_day]))
    return _svg("chart-requests", "Requests per day", "".join(parts))


def hit_ratio_chart(per_day: Sequence[tuple[dt.date, UsageCounts]]) -> str:
    """A line of the daily hit ratio (0–100 %); days without a cache lookup are gaps."""
    slot = PLOT_W / max(len(per_day), 1)
    parts = [_y_axis(1.0, fmt_ratio)]
    runs: list[list[tuple[float, float]]] = [[]]
    points = []
    for index, (day, counts) in enumerate(per_day):
        ratio = counts.hit_ratio
        if ratio is None:
            if runs[-1]:
                runs.append([])
            continue
        x = PAD_LEFT + slot * (index + 0.5)
        y = PAD_TOP + PLOT_H * (1 - ratio)
        runs[-1].append((x, y))
        title = f"{day.isoformat()}: {ratio:.0%} of {counts.hits + counts.misses} lookups"
        points.append(
            f'<circle class="point" cx="{_num(x)}" cy="{_num(y)}" r="3.5" '
            f'data-day="{day.isoformat()}" data-ratio="{ratio:.4f}">'
            f"<title>{escape(title)}</title></circle>"
        )
    for run in runs:
        if len(run) > 1:
            coords = " ".join(f"{_num(x)},{_num(y)}" for x, y in run)
            parts.append(f'<polyline class="line" points="{coords}"/>')
    parts += points
    parts.append(_x_labels([day for day, _ in per_day]))
    return _svg("chart-hit-ratio", "Cache hit ratio per day", "".join(parts))


def cost_chart(per_day: Sequence[tuple[dt.date, UsageCounts]], price: float) -> str:
    """Bars of the estimated GPU cost per day."""
    costs = [(day, estimated_cost(counts, price)) for day, counts in per_day]
    top = nice_ceiling(max((cost for _, cost in costs), default=0.0))
    slot = PLOT_W / max(len(costs), 1)
    width = max(slot * BAR_FILL, 1.0)
    parts = [_y_axis(top, fmt_axis_cost)]
    for index, (day, cost) in enumerate(costs):
        x = PAD_LEFT + slot * index + (slot - width) / 2
        height = PLOT_H * cost / top
        rect = (
            f'<rect class="seg cost" x="{_num(x)}" y="{_num(PAD_TOP + PLOT_H - height)}" '
            f'width="{_num(width)}" height="{_num(height)}"/>'
            if cost > 0
            else ""
        )
        title = f"{day.isoformat()}: {fmt_cost(cost)} {CURRENCY}"
        parts.append(
            f'<g class="bar" data-day="{day.isoformat()}" data-cost="{cost}">'
            f"<title>{escape(title)}</title>{rect}</g>"
        )
    parts.append(_x_labels([day for day, _ in costs]))
    return _svg("chart-cost", "Estimated cost per day", "".join(parts))


def latency_chart(request: Percentiles, tts: Percentiles) -> str:
    """Horizontal bars: p50/p90/p99 of the whole request and of the TTS call."""
    rows: list[tuple[str, str, str, float]] = []
    for kind, label, percentiles in (("request", "/say", request), ("tts", "TTS call", tts)):
        for name in ("p50", "p90", "p99"):
            value = getattr(percentiles, name)
            if value is not None:
                rows.append((kind, name, f"{label} {name}", value))
    row_h, label_w, value_w = 26, 96, 64
    height = PAD_TOP * 2 + row_h * max(len(rows), 1)
    if not rows:
        body = (
            f'<text class="empty" x="{WIDTH / 2}" y="{height / 2 + 4}" text-anchor="middle">'
            "no requests since this process started</text>"
        )
        return _svg("chart-latency", "Latency percentiles", body, height)
    top = nice_ceiling(max(value for *_, value in rows))
    span = WIDTH - label_w - value_w
    parts = []
    for index, (kind, name, label, value) in enumerate(rows):
        y = PAD_TOP + row_h * index
        width = max(span * value / top, 1.0)
        parts.append(
            f'<text class="rowlabel" x="{label_w - 6}" y="{y + 17}" text-anchor="end">'
            f"{escape(label)}</text>"
            f'<rect class="pbar {kind}" data-percentile="{name}" data-seconds="{value:.6f}" '
            f'x="{label_w}" y="{y + 4}" width="{_num(width)}" height="{row_h - 8}"/>'
            f'<text class="value" x="{_num(label_w + width + 6)}" y="{y + 17}">'
            f"{escape(fmt_seconds(value))}</text>"
        )
    return _svg("chart-latency", "Latency percentiles", "".join(parts), height)


# --- page ------------------------------------------------------------------------------------
