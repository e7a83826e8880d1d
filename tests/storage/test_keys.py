"""The cache key: everything that changes the audio changes it; nothing else does."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest

from storage import keys
from storage.cache_keys import PARAM_DECIMALS, cache_key
from tts_service.schema import AudioFormat, TTSParams

REF = "ab" * 32
BASE: dict[str, Any] = {
    "params": TTSParams(text="hi there", exaggeration=0.5, temperature=0.8, cfg_weight=0.5, seed=7),
    "reference_sha256": REF,
    "engine_name": "chatterbox",
    "model_version": "0.1.7",
    "fmt": AudioFormat.OGG_OPUS,
}


def key_with(**changes: Any) -> str:
    args = dict(BASE)
    param_changes = {k: v for k, v in changes.items() if k in TTSParams.model_fields}
    if param_changes:
        args["params"] = BASE["params"].model_copy(update=param_changes)
    args.update({k: v for k, v in changes.items() if k not in TTSParams.model_fields})
    return cache_key(**args)


def test_key_is_namespaced_and_versioned() -> None:
    key = key_with()
    assert key.startswith("saybot:v1:audio:")
    assert re.fullmatch(r"[0-9a-f]{64}", keys.digest_of(key)), key


@pytest.mark.parametrize(
    "change",
    [
        {"text": "hi there!"},
        {"text": "Hi there"},
        {"exaggeration": 0.6},
        {"exaggeration": 0.501},
        {"temperature": 0.9},
        {"cfg_weight": 0.0},
        {"seed": 8},
        {"seed": 0},
        {"reference_sha256": "cd" * 32},
        {"reference_sha256": None},
        {"engine_name": "piper"},
        {"model_version": "0.1.8"},
        {"fmt": AudioFormat.WAV},
        {"fmt": AudioFormat.MP3},
        {"language": "fr"},
    ],
    ids=lambda change: "-".join(f"{k}={v}" for k, v in change.items()),
)
def test_each_input_changes_the_key(change: dict[str, Any]) -> None:
    assert key_with(**change) != key_with()


def test_every_parameter_of_the_contract_is_covered() -> None:
    """A parameter added to TTSParams later must change the key without touching cache.py."""
    numeric = [n for n in TTSParams.model_fields if n not in ("text", "format", "language")]
    base = BASE["params"]
    for name in numeric:
        bumped = base.model_copy(update={name: getattr(base, name) + 1})
        assert cache_key(bumped, REF, "chatterbox", "0.1.7") != key_with(), name


def test_a_language_changes_the_key_and_its_absence_keeps_the_old_keys() -> None:
    """Keys made before the language field existed stay valid: unset, it is not in the key."""
    french = key_with(language="fr")
    assert french != key_with(language="de") and french != key_with()
    canonical = (
        '{"engine":"chatterbox","format":"ogg_opus","model_version":"0.1.7","params":'
        '{"cfg_weight":"0.500","exaggeration":"0.500","seed":"7","temperature":"0.800"},'
        f'"reference":"{REF}","text":"hi there","v":1}}'
    )
    assert key_with() == keys.audio(hashlib.sha256(canonical.encode()).hexdigest())


@pytest.mark.parametrize(
    "equivalent",
    [
        {"text": "hi  there"},
        {"text": "  hi there \n"},
        {"text": "hi\tthere"},
        {"exaggeration": 0.50},
        {"exaggeration": 0.5000001},
        {"exaggeration": 0.5004},  # rounds to 0.500 at PARAM_DECIMALS = 3 …
        {"exaggeration": 0.4996},  # … from either side
        {"reference_sha256": REF.upper()},
    ],
    ids=repr,
)
def test_equivalent_inputs_share_the_key(equivalent: dict[str, Any]) -> None:
    assert key_with(**equivalent) == key_with()


def test_the_precision_is_fixed_at_three_decimals() -> None:
    assert PARAM_DECIMALS == 3
    assert key_with(exaggeration=0.5004) == key_with(exaggeration=0.4996)
    assert key_with(exaggeration=0.5006) != key_with(exaggeration=0.5004)  # 0.501 vs 0.500


@pytest.mark.parametrize(
    ("as_int", "as_float"),
    [({"exaggeration": 1}, {"exaggeration": 1.0}), ({"seed": 7}, {"seed": 7.0})],
    ids=repr,
)
def test_an_int_and_the_equal_float_share_the_key(
    as_int: dict[str, Any], as_float: dict[str, Any]
) -> None:
    """``model_copy`` does not validate, so an int can reach a float field (and vice versa)."""
    assert key_with(**as_int) == key_with(**as_float)


def test_an_integer_exaggeration_from_fields_is_the_float() -> None:
    from_int = cache_key({"text": "hi there", "exaggeration": 1}, REF, "c", "1")
    assert from_int == cache_key({"text": "hi there", "exaggeration": 1.0}, REF, "c", "1")


def test_a_fractional_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="whole number"):
        key_with(seed=7.5)


def test_unicode_text_is_nfc_normalised() -> None:
    composed = cache_key({"text": "caf\u00e9"}, None, "piper", "1")
    decomposed = cache_key({"text": "cafe\u0301"}, None, "piper", "1")
    assert composed == decomposed


def test_fields_mapping_equals_model_and_format_defaults_to_params() -> None:
    params = TTSParams(text="hello", format=AudioFormat.WAV)
    from_model = cache_key(params, None, "piper", "1")
    from_fields = cache_key({"text": "hello", "format": "wav"}, None, "piper", "1")
    assert from_model == from_fields
    assert from_model == cache_key(params, None, "piper", "1", AudioFormat.WAV)
    assert from_model != cache_key(params, None, "piper", "1", AudioFormat.OGG_OPUS)


def test_negative_zero_is_zero() -> None:
    zero = cache_key({"text": "x", "cfg_weight": 0.0}, None, "piper", "1")
    assert cache_key({"text": "x", "cfg_weight": -0.0}, None, "piper", "1") == zero


def test_invalid_fields_are_rejected() -> None:
    with pytest.raises(ValueError):
        cache_key({"text": "x", "exaggeration": 9.0}, None, "piper", "1")


def test_key_helpers_reject_separators() -> None:
    with pytest.raises(ValueError):
        keys.check_field("user_id", "1:2")
    with pytest.raises(ValueError):
        keys.check_voice_id("{evil}")
    with pytest.raises(ValueError):
        keys.digest_of("saybot:v1:voice:abc")
    assert keys.voice_clip("ab" * 8) == "saybot:v1:voice:{abababababababab}:clip"
