"""The playground page, rendered on the server with the contract's numbers in it.

Ranges and defaults come from ``PARAM_RANGES`` and the text limit from ``MAX_TEXT_CHARS``,
so the sliders say what the service accepts. Everything is labelled; status changes are
announced by one live region; the script (``static/playground.js``) only adds behaviour to
this markup, and nothing is loaded from anywhere but this server (a strict CSP holds it to
that). Every value put into markup goes through ``html.escape``.
"""

from __future__ import annotations

from html import escape

from bots.consent import CONSENT_WORDING
from tts_service.schema import MAX_TEXT_CHARS, PARAM_RANGES, AudioFormat

SLIDERS = {  # name → (label, step, what it does)
    "exaggeration": ("Exaggeration", 0.05, "how expressive the delivery is"),
    "temperature": ("Temperature", 0.05, "how much each take varies"),
    "cfg_weight": ("CFG weight", 0.05, "how closely it follows the voice's pace"),
}
FORMAT_LABELS = {
    AudioFormat.OGG_OPUS: "OGG/Opus (small)",
    AudioFormat.MP3: "MP3",
    AudioFormat.WAV: "WAV (lossless)",
}
VOICE_CHOICES = (
    ("builtin", "Built-in voice"),
    ("saved", "My saved voice"),
    ("upload", "Upload a clip"),
    ("record", "Record with the microphone"),
)


def _slider(name: str) -> str:
    label, step, hint = SLIDERS[name]
    bounds = PARAM_RANGES[name]
    assert bounds.maximum is not None
    value = f"{bounds.default:g}"
    return (
        f'<div class="slider"><label for="{name}">{escape(label)}</label>'
        f'<input type="range" id="{name}" name="{name}" min="{bounds.minimum:g}" '
        f'max="{bounds.maximum:g}" step="{step:g}" value="{value}" '
        f'data-default="{value}" aria-describedby="{name}-hint">'
        f'<output id="{name}-value" for="{name}">{value}</output>'
        f'<small id="{name}-hint">{escape(hint)}; {bounds.minimum:g}–{bounds.maximum:g}, '
        f"default {value}</small></div>"
    )


def _voices() -> str:
    options = "".join(
        f'<label class="choice"><input type="radio" name="voice" value="{value}"'
        f"{' checked' if value == 'builtin' else ''}> {escape(label)}</label>"
        for value, label in VOICE_CHOICES
    )
    return (
        f'<fieldset id="voices"><legend>Voice</legend>{options}'
        '<div id="upload-row" class="voice-row" hidden>'
        '<label for="clip">Voice clip (1–60 s of one person speaking: WAV, MP3, OGG, FLAC, '
        'M4A or WebM)</label><input type="file" id="clip" name="clip" accept="audio/*"></div>'
        '<div id="record-row" class="voice-row" hidden>'
        '<button type="button" id="record" aria-pressed="false">Start recording</button>'
        '<span id="record-state">No recording yet.</span></div>'
        '<div id="clip-actions" class="voice-row" hidden>'
        '<button type="button" id="save-voice">Save this clip as my voice</button></div>'
        f'<p class="note">Only clone your own voice, or one you have permission to use: '
        f"before a recording is first used you confirm “{escape(CONSENT_WORDING)}”</p>"
        "</fieldset>"
    )


def render_playground() -> str:
    formats = "".join(
        f'<option value="{fmt.value}">{escape(label)}</option>'
        for fmt, label in FORMAT_LABELS.items()
    )
    seed = PARAM_RANGES["seed"]
    form = (
        '<form id="say" novalidate>'
        '<label for="text">Text to say</label>'
        f'<textarea id="text" name="text" rows="4" maxlength="{MAX_TEXT_CHARS}" '
        'aria-describedby="count" required></textarea>'
        f'<p id="count" class="note" data-limit="{MAX_TEXT_CHARS}">0 / {MAX_TEXT_CHARS} '
        "characters</p>"
        f"{_voices()}"
        f'<div class="sliders">{"".join(_slider(name) for name in SLIDERS)}</div>'
        '<div class="row"><div class="field"><label for="seed">Seed</label>'
        f'<input type="number" id="seed" name="seed" min="{seed.minimum:g}" step="1" '
        f'value="{seed.default:g}" inputmode="numeric" aria-describedby="seed-hint">'
        '<button type="button" id="dice" aria-label="Pick a random seed">Random</button>'
        '<small id="seed-hint">0: a fresh take each time; any other number repeats</small>'
        "</div>"
        f'<div class="field"><label for="format">Format</label>'
        f'<select id="format" name="format">{formats}</select></div></div>'
        '<button type="submit" id="generate">Generate</button>'
        "</form>"
    )
    consent = (
        '<section id="consent" class="card" hidden aria-labelledby="consent-title">'
        '<h2 id="consent-title">Your consent</h2><p id="consent-text"></p>'
        '<button type="button" id="consent-yes"></button> '
        '<button type="button" id="consent-no" class="secondary"></button></section>'
    )
    result = (
        '<section id="result" class="card" hidden aria-labelledby="result-title">'
        '<h2 id="result-title">Latest take</h2>'
        '<audio id="player" controls preload="auto"></audio>'
        '<p id="take-facts" class="note"></p>'
        '<p class="actions"><a id="download" download>Download</a> '
        '<button type="button" id="again">Another take (new seed)</button></p></section>'
        '<section id="session" class="card" aria-labelledby="takes-title">'
        '<h2 id="takes-title">This session’s takes</h2>'
        '<ol id="takes" reversed></ol><p id="no-takes" class="note">None yet.</p>'
        '<p class="actions"><button type="button" id="forget" class="secondary">'
        "Forget my voice (clips, consents and audio made with them)</button></p></section>"
    )
    header = (
        "<header><h1>saybot playground</h1>"
        '<p id="engine" class="note">Engine: <span id="engine-name">…</span> · '
        '<span id="engine-state">checking…</span></p>'
        '<nav><a href="/admin">Dashboard</a>'
        '<form method="post" action="/admin/logout"><button type="submit" class="link">'
        "Log out</button></form></nav></header>"
    )
    body = (
        f'{header}<main><p class="note">Everything spoken here is AI-generated speech.</p>'
        f'<section class="card">{form}</section>'
        '<p id="status" role="status" aria-live="polite"></p>'
        f"{consent}{result}</main>"
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="same-origin">'
        "<title>saybot playground</title>"
        '<link rel="icon" href="/admin/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/play/static/playground.css">'
        '<script src="/play/static/playground.js" defer></script>'
        f"</head><body>{body}</body></html>\n"
    )
