"""The ``/admin`` page and its login form, rendered on the server as HTML with inline SVG.

No JavaScript and nothing from the internet: the charts are plain SVG drawn here, the
stylesheet and icon are package files under ``bots/admin/static/``. The page's Content
Security Policy allows only those (no inline styles or scripts), so anything else a
browser would be asked to load is refused and shows up in its console.

Every value put into markup goes through ``html.escape``; the page shows counts (cloned
requests, consents and forgets among them), this month's GPU spending against the budget,
error codes, component states and platform user ids — never a token, a message, a clip or
audio.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from bots.admin.charts import (
    cost_chart,
    fmt_cost,
    fmt_int,
    fmt_ratio,
    fmt_seconds,
    hit_ratio_chart,
    latency_chart,
    requests_chart,
)
from bots.admin.reports import CURRENCY, MonthSpent, estimated_cost
from bots.admin.status import ComponentStatus, Readiness
from bots.metrics import Percentiles
from storage.usage import UsageSummary, UserUsage

RANGE_CHOICES_DAYS = (7, 14, 30, 90)


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
    spent: MonthSpent | None = None  # this month's GPU spending (None: not read)


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="same-origin">'  # its forms then send their Origin
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


def _spend_card(spent: MonthSpent, price: float) -> str:
    """This month's GPU spending, against the budget where there is one."""
    cost = fmt_cost(spent.cost(price))
    used = spent.budget_used(price)
    if used is None:
        line = f"{cost} so far; no monthly budget is set"
    else:
        line = (
            f"{cost} of {fmt_cost(spent.budget_usd)} ({used:.0%}); past it, only "
            "cached audio answers until the 1st"
        )
    content = (
        f'<p class="spend" id="spend-line">{escape(line)}</p>'
        f'<p class="note">{escape(fmt_seconds(spent.gpu_seconds))} of GPU time in '
        f"{escape(spent.month)} (UTC)</p>"
    )
    return _card("spend", "GPU spending this month", content)


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
            + _tile("Cloned voice", fmt_int(totals.cloned), "cloned")
            + _tile("Consents", fmt_int(totals.consents), "consents")
            + _tile("Forgets", fmt_int(totals.forgets), "forgets")
            + "</section>"
        )
        if data.spent is not None:
            sections.append(_spend_card(data.spent, price))
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
        platforms = [
            (
                platform,
                fmt_int(counts.requests),
                fmt_ratio(counts.hit_ratio),
                fmt_int(counts.errors),
                fmt_seconds(counts.synthesis_seconds),
            )
            for platform, counts in summary.by_platform.items()
        ]
        sections.append(
            _card(
                "platforms",
                "By platform",
                _table(
                    ["platform", "requests", "hit ratio", "errors", "GPU"],
                    platforms,
                    "platforms-table",
                ),
                "web is the playground at /",
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
        '<a href="/" id="playground-link">Playground</a>'
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
