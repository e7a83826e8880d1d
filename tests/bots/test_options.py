"""A request's options against the engine that will speak them: language and no-effect notes.

Pure functions of the request and ``/v1/engine``'s answer (``EngineInfo``), so the engines
that list languages (Chatterbox Multilingual) or honour fewer options (Turbo, Piper) are
described here by what their ``/v1/engine`` says.
"""

from __future__ import annotations

import pytest

from bots.errors import InvalidInput
from bots.requests import SayRequest, options_note, parse_params
from tts_service.schema import EngineInfo

MULTILINGUAL = EngineInfo(
    name="chatterbox",
    model_version="chatterbox-tts-0.1.7-multilingual",
    sample_rate=24_000,
    can_clone_voice=True,
    honoured_params=["exaggeration", "temperature", "cfg_weight", "seed"],
    max_chunk_chars=250,
    languages=["de", "en", "fr", "zh"],
)
TURBO = MULTILINGUAL.model_copy(
    update={"honoured_params": ["temperature", "seed"], "languages": []}
)


def request(**options: float | int | str) -> SayRequest:
    return SayRequest(platform="telegram", user_id="1", chat_id="1", text="Hi.", params=options)


def note(engine: EngineInfo, **options: float | int | str) -> str | None:
    said = request(**options)
    return options_note(said, parse_params(said), engine)


def test_a_listed_language_passes_and_is_in_the_params() -> None:
    said = request(language="fr")
    assert parse_params(said).language == "fr"
    assert note(MULTILINGUAL, language="fr", exaggeration=1.2) is None


def test_a_language_the_engine_does_not_list_is_refused() -> None:
    with pytest.raises(InvalidInput, match="language ja is not one of this engine's: de, en"):
        note(MULTILINGUAL, language="ja")
    with pytest.raises(InvalidInput, match=r"\(chatterbox\) speaks one language"):
        note(TURBO, language="fr")


def test_options_without_effect_are_named_once_each() -> None:
    assert note(TURBO, exaggeration=1.5) == "exaggeration has no effect on this engine"
    assert note(TURBO, cfg_weight=0, exaggeration=1, seed=2) == (
        "cfg_weight and exaggeration have no effect on this engine"
    )
    assert note(TURBO, temperature=0.5, seed=2) is None


def test_a_bad_language_code_is_one_sentence() -> None:
    with pytest.raises(InvalidInput, match="language must be a two-letter language code"):
        parse_params(request(language="french"))
