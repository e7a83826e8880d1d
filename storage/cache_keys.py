"""Which requests share one cached answer: the audio cache key, derived without Redis.

Key: ``saybot:v1:audio:<sha256>`` over a canonical JSON of the normalised text, every
parameter at a fixed precision, the language when one is given, the reference clip's
sha256 (or ``default``), the engine name and model version, and the output format — so
equivalent requests share one entry and a new engine or model version can never be
answered with stale audio.

Pure (no Redis) and apart from ``storage.cache`` because deriving a key is a step of its
own: the flow derives one speculatively, before it knows the voice, and the benchmarks time
the derivation alone.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from storage import keys
from tts_service.schema import AudioFormat, TTSParams, normalize_text

KEY_SCHEMA_VERSION = 1  # bump when the canonical JSON changes meaning
PARAM_DECIMALS = 3  # 0.5 and 0.5004 are the same request; 0.5 and 0.501 are not
_NOT_PARAMS = frozenset({"text", "format", "language"})


def _canonical_number(name: str, value: object) -> str:
    """The parameter as its declared type would print it: ``exaggeration=1`` is ``1.000``
    like ``1.0``, and ``seed=7.0`` is ``7`` like ``7`` (``model_copy`` skips validation)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"parameter {name} is {type(value).__name__}, not a number")
    if not math.isfinite(value):
        raise ValueError(f"parameter {name} is {value}")
    if TTSParams.model_fields[name].annotation is int:
        if value != int(value):
            raise ValueError(f"parameter {name} is a whole number, not {value}")
        return str(int(value))
    text = f"{float(value):.{PARAM_DECIMALS}f}"
    return text.removeprefix("-") if float(text) == 0 else text  # -0.000 is 0.000


def cache_key(
    params: TTSParams | Mapping[str, Any],
    reference_sha256: str | None,
    engine_name: str,
    model_version: str,
    fmt: AudioFormat | str | None = None,
) -> str:
    """``saybot:v1:audio:<sha256>`` of everything that changes the audio.

    ``params`` is a ``TTSParams`` or the fields to build one (validated the same way);
    ``fmt`` defaults to ``params.format``.
    """
    if not isinstance(params, TTSParams):
        params = TTSParams.model_validate(dict(params))
    numbers = {
        name: _canonical_number(name, getattr(params, name))
        for name in sorted(TTSParams.model_fields)
        if name not in _NOT_PARAMS
    }
    canonical = {
        "v": KEY_SCHEMA_VERSION,
        "text": normalize_text(params.text),
        "params": numbers,
        "reference": reference_sha256.lower() if reference_sha256 else "default",
        "engine": engine_name,
        "model_version": model_version,
        "format": AudioFormat(fmt if fmt is not None else params.format).value,
    }
    if params.language is not None:  # absent when unset: keys made before it still hold
        canonical["language"] = params.language
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return keys.audio(hashlib.sha256(blob.encode()).hexdigest())
