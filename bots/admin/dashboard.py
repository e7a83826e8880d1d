"""The ``/admin`` page and its login form, rendered on the server as HTML with inline SVG.

No JavaScript and nothing from the internet: the charts are plain SVG drawn here, the
stylesheet and icon are package files under ``bots/admin/static/``. The page's Content
Security Policy allows only those (no inline styles or scripts), so anything else a
browser would be asked to load is refused and shows up in its console.

Every value put into markup goes through ``html.escape``; the page shows counts, error
codes, component states and platform user ids — never a token, a message or audio.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from bots.admin.reports import CURRENCY, estimated_cost
from bots.admin.status import ComponentStatus, Readiness
from bots.metrics import Percentiles
from storage.usage import UsageCounts, UsageSummary, UserUsage

RANGE_CHOICES_DAYS = (7, 14, 30, 90)

# Chart geometry, in SVG user units (the SVG scales to the width of its card).
WIDTH, HEIGHT = 480, 200
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 64, 8, 10, 24
PLOT_W = WIDTH - PAD_LEFT - PAD_RIGHT
PLOT_H = HEIGHT - PAD_TOP - PAD_BOTTOM
BAR_FILL = 0.7  # of each day's slot


@dataclass(frozen=True)
class DashboardData:
    readiness: Readiness
    summary: UsageSummary | None  # None when storage could not be read
    usage_error: str | None
    top_users: list[UserUsage]
    request_latency: Percentiles
    tts_latency: Percentiles
    days: int
    generated_at: dt.datetime


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


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title>"
        '<link rel="icon" href="/admin/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/admin/static/admin.css">'
        f"</head><body>{body}</body></html>\n"
    )


def _component_item(component: ComponentStatus) -> str:
    name = {"redis": "Redis", "tts": "TTS service"}.get(component.name, component.name.title())
    facts = []
    if component.name == "redis":
        facts.append("embedded Valkey" if component.detail.get("embedded") else "REDIS_URL")
    engine = component.detail.get("engine")
    if isinstance(engine, dict):
        facts.append(f"{engine.get('name')} {engine.get('model_version')}")
    state = "ok" if component.ok else (component.reason or "down")
    fact_text = f" <span class='facts'>({escape(', '.join(facts))})</span>" if facts else ""
    css = "ok" if component.ok else "down"
    return (
        f'<li class="component {css}" data-component="{escape(component.name)}">'
        f'<span class="dot" aria-hidden="true"></span><strong>{escape(name)}</strong>'
        f'{fact_text} <span class="state">{escape(state)}</span></li>'
    )


def _tile(label: str, value: str, tile_id: str) -> str:
    return (
        f'<div class="tile" id="tile-{tile_id}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div></div>'
    )


def _card(card_id: str, title: str, content: str, note: str = "") -> str:
    note_html = f'<p class="note">{note}</p>' if note else ""
    return (
        f'<section class="card" id="{card_id}"><h2>{escape(title)}</h2>{content}{note_html}'
        "</section>"
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], table_id: str) -> str:
    if not rows:
        return '<p class="note">none</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _range_nav(days: int) -> str:
    links = []
    for choice in RANGE_CHOICES_DAYS:
        current = ' aria-current="page"' if choice == days else ""
        links.append(f'<a href="/admin?days={choice}"{current}>{choice} d</a>')
    return f'<nav class="range" aria-label="Days shown">{"".join(links)}</nav>'


def render_dashboard(data: DashboardData) -> str:
    readiness = data.readiness
    overall = "ready" if readiness.ready else "not ready"
    status = (
        f'<section class="card status {"ok" if readiness.ready else "down"}" id="status">'
        f'<h2>Components <span class="overall">{overall}</span></h2>'
        f'<ul id="components">{"".join(_component_item(c) for c in readiness.components)}</ul>'
        "</section>"
    )
    sections = [status]
    summary = data.summary
    if summary is None:
        sections.append(
            _card(
                "usage-unavailable",
                "Usage",
                f'<p class="error">{escape(data.usage_error or "")}</p>',
            )
        )
    else:
        totals = summary.totals
        price = summary.price_per_gpu_second
        sections.append(
            '<section class="tiles" id="totals">'
            + _tile("Requests", fmt_int(totals.requests), "requests")
            + _tile("Hit ratio", fmt_ratio(totals.hit_ratio), "hit-ratio")
            + _tile("Errors", fmt_int(totals.errors), "errors")
            + _tile("Audio", fmt_seconds(totals.audio_seconds), "audio")
            + _tile("GPU time", fmt_seconds(totals.synthesis_seconds), "gpu")
            + _tile("Est. cost", fmt_cost(estimated_cost(totals, price)), "cost")
            + "</section>"
        )
        legend = (
            '<p class="legend"><span class="key hits"></span>hits '
            '<span class="key misses"></span>misses <span class="key errors"></span>errors</p>'
        )
        sections.append(
            _card("requests", "Requests per day", requests_chart(summary.per_day) + legend)
        )
        sections.append(
            _card(
                "hit-ratio",
                "Cache hit ratio",
                hit_ratio_chart(summary.per_day),
                "hits ÷ (hits + misses); days without lookups are left out",
            )
        )
    sections.append(
        _card(
            "latency",
            "Latency",
            latency_chart(data.request_latency, data.tts_latency),
            escape(
                f"since this process started: {data.request_latency.count} requests, "
                f"{data.tts_latency.count} TTS calls; estimated from histogram buckets"
            ),
        )
    )
    if summary is not None:
        sections.append(
            _card(
                "cost",
                "Estimated cost",
                cost_chart(summary.per_day, summary.price_per_gpu_second),
                escape(
                    f"GPU seconds × {summary.price_per_gpu_second:g} {CURRENCY}; "
                    "cache hits cost nothing"
                ),
            )
        )
        errors = [(code, fmt_int(count)) for code, count in summary.errors_by_code.items()]
        sections.append(
            _card("errors", "Errors by code", _table(["code", "count"], errors, "errors-table"))
        )
        users = [
            (
                user.platform,
                user.user_id,
                fmt_int(user.counts.requests),
                fmt_ratio(user.counts.hit_ratio),
                fmt_seconds(user.counts.synthesis_seconds),
            )
            for user in data.top_users
        ]
        sections.append(
            _card(
                "top-users",
                "Top users",
                _table(
                    ["platform", "user id", "requests", "hit ratio", "GPU"], users, "users-table"
                ),
            )
        )
    period = (
        f"{summary.from_day.isoformat()} – {summary.to_day.isoformat()} (UTC)"
        if summary is not None
        else f"last {data.days} days"
    )
    header = (
        "<header><h1>saybot</h1>"
        f'<p class="period">{escape(period)}</p>{_range_nav(data.days)}'
        '<form method="post" action="/admin/logout"><button type="submit">Log out</button></form>'
        "</header>"
    )
    footer = (
        f"<footer>generated {escape(data.generated_at.strftime('%Y-%m-%d %H:%M:%S'))} UTC · "
        '<a href="/usage">usage JSON</a> · <a href="/readyz">readiness JSON</a> · '
        '<a href="/metrics">metrics</a></footer>'
    )
    return _page("saybot admin", f"{header}<main>{''.join(sections)}</main>{footer}")


def render_login(message: str | None, configured: bool) -> str:
    if not configured:
        content = (
            '<p class="error" id="login-message">ADMIN_TOKEN is not configured; set it and '
            "restart saybot to use this page.</p>"
        )
    else:
        alert = f'<p class="error" id="login-message">{escape(message)}</p>' if message else ""
        content = (
            f"{alert}"
            '<form method="post" action="/admin/login" id="login">'
            '<label for="token">Admin token</label>'
            '<input id="token" name="token" type="password" autocomplete="current-password" '
            "required>"
            '<button type="submit">Log in</button></form>'
        )
    body = (
        f'<main class="login"><section class="card"><h1>saybot admin</h1>{content}</section></main>'
    )
    return _page("saybot admin: log in", body)
