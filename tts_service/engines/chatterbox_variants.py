"""The three Chatterbox models of ``chatterbox-tts`` 0.1.7, as ``TTS_CHATTERBOX_MODEL`` names them.

original
    ``chatterbox.tts.ChatterboxTTS``: English, ``exaggeration`` and ``cfg_weight``.
multilingual
    ``chatterbox.mtl_tts.ChatterboxMultilingualTTS``: 23 languages, ``generate(text,
    language_id, …)``. Its Chinese tokenizer reads ``Cangjie5_TC.json``, which the library
    fetches from the hub when the model is built (``chatterbox_weights.install_cangjie``
    puts the Volume's copy where that fetch finds it offline).
turbo
    ``chatterbox.tts_turbo.ChatterboxTurboTTS`` (``ResembleAI/chatterbox-turbo``): English,
    faster, paralinguistic tags such as ``[laugh]``; it ignores ``exaggeration`` and
    ``cfg_weight`` (and says so in a warning when they are non-zero, so they go in as 0),
    and needs a voice clip longer than 5 s.

Each entry says where the weights are, which files ``from_local`` reads, which of the
contract's parameters make a difference, and the keywords ``generate`` takes from a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tts_service.schema import TTSParams

VariantName = Literal["original", "multilingual", "turbo"]

# cfg_weight=0 on the original runs as this: its generate() then builds a batch of one while
# T3 always pairs two start tokens; (cond - uncond) * 1e-4 is far below what sampling can
# tell apart. Multilingual always builds the pair and takes 0 as it is.
MIN_CFG_WEIGHT = 1e-4
CANGJIE_FILE = "Cangjie5_TC.json"
# ChatterboxMultilingualTTS's languages in 0.1.7 (chatterbox.mtl_tts.SUPPORTED_LANGUAGES;
# the tier checks they agree), so /v1/engine lists them before the model is loaded.
MULTILINGUAL_LANGUAGES = (
    "ar", "da", "de", "el", "en", "es", "fi", "fr", "he", "hi", "it", "ja",
    "ko", "ms", "nl", "no", "pl", "pt", "ru", "sv", "sw", "tr", "zh",
)  # fmt: skip
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class ChatterboxVariant:
    name: VariantName
    repo_id: str
    module: str  # chatterbox.<module>.<class_name>
    class_name: str
    files: tuple[str, ...]  # what from_local reads; the checkpoint is incomplete without one
    # More files from_local may read when present (Turbo's tokenizer configuration): fetched
    # and part of the digest, but not required.
    optional_patterns: tuple[str, ...] = ()
    honoured_params: tuple[str, ...] = ("exaggeration", "temperature", "cfg_weight", "seed")
    languages: tuple[str, ...] = ()
    min_reference_s: float = 0.0

    def generate_kwargs(self, params: TTSParams) -> dict[str, Any]:
        """What ``generate`` gets besides the text; sampling knobs the contract does not
        expose stay at each model's own defaults, written out."""
        if self.name == "turbo":
            return {
                "repetition_penalty": 1.2,
                "min_p": 0.0,
                "top_p": 0.95,
                "audio_prompt_path": None,  # the voice is already in model.conds
                "exaggeration": 0.0,
                "cfg_weight": 0.0,
                "temperature": params.temperature,
                "top_k": 1000,
                "norm_loudness": True,
            }
        kwargs: dict[str, Any] = {
            "repetition_penalty": 2.0 if self.name == "multilingual" else 1.2,
            "min_p": 0.05,
            "top_p": 1.0,
            "audio_prompt_path": None,
            "exaggeration": params.exaggeration,
            "cfg_weight": params.cfg_weight,
            "temperature": params.temperature,
        }
        if self.name == "multilingual":
            kwargs["language_id"] = params.language or DEFAULT_LANGUAGE
        else:
            kwargs["cfg_weight"] = max(params.cfg_weight, MIN_CFG_WEIGHT)
        return kwargs


VARIANTS: dict[str, ChatterboxVariant] = {
    "original": ChatterboxVariant(
        name="original",
        repo_id="ResembleAI/chatterbox",
        module="tts",
        class_name="ChatterboxTTS",
        files=(
            "ve.safetensors",
            "t3_cfg.safetensors",
            "s3gen.safetensors",
            "tokenizer.json",
            "conds.pt",
        ),
    ),
    "multilingual": ChatterboxVariant(
        name="multilingual",
        repo_id="ResembleAI/chatterbox",
        module="mtl_tts",
        class_name="ChatterboxMultilingualTTS",
        files=(
            "ve.pt",
            "t3_mtl23ls_v2.safetensors",
            "s3gen.pt",
            "grapheme_mtl_merged_expanded_v1.json",
            "conds.pt",
            CANGJIE_FILE,
        ),
        languages=MULTILINGUAL_LANGUAGES,
    ),
    "turbo": ChatterboxVariant(
        name="turbo",
        repo_id="ResembleAI/chatterbox-turbo",
        module="tts_turbo",
        class_name="ChatterboxTurboTTS",
        files=(
            "ve.safetensors",
            "t3_turbo_v1.safetensors",
            "s3gen_meanflow.safetensors",
            "vocab.json",  # a GPT-2 tokenizer (AutoTokenizer.from_pretrained)
            "merges.txt",
            "conds.pt",
        ),
        # from_pretrained's patterns in 0.1.7: the tokenizer's configuration files.
        optional_patterns=("*.json", "*.txt", "*.model"),
        honoured_params=("temperature", "seed"),
        min_reference_s=5.0,  # prepare_conditionals asserts more than 5 s
    ),
}


def variant(name: str) -> ChatterboxVariant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(
            f"unknown Chatterbox model {name!r}; one of: {', '.join(VARIANTS)}"
        ) from None
