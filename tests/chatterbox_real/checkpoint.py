"""Chatterbox checkpoints with random weights, built here: the real library, no hub.

The hub's weights cannot be fetched on this machine or in CI, so the tier builds the
models the library builds (``VoiceEncoder``, ``T3``, ``S3Gen``), with T3 shrunk through
``chatterbox.models.t3.llama_configs`` to two layers, and saves their state dicts under the
file names each model's ``from_local`` reads. The built-in voice (``conds.pt``) comes from
``prepare_conditionals`` on a synthetic clip, as Resemble made theirs from a recording.

``shrink_chatterbox`` must run before any model is built or loaded, in every process that
loads one: it shrinks T3, points Multilingual's alignment heads into the two layers, and
caps the tokens T3 generates (random weights rarely stop by themselves; the cap keeps a
chunk under a second of audio, so a request costs CPU seconds, not minutes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

T3_LAYERS = 2
MAX_SPEECH_TOKENS = 10  # at 25 tokens a second: at most 0.4 s of speech a chunk
SYNTHETIC_VOICE_S = 2.0
SAMPLE_RATE = 24_000

# EnTokenizer/MTLTokenizer assert [START] and [STOP]; T3Config reads text from id 255
# (start) to id 0 (stop), and the library writes spaces as [SPACE] and unknowns as [UNK].
SPECIAL_IDS = {"[STOP]": 0, "[UNK]": 1, "[SPACE]": 2, "[START]": 255}
EXTRA_SPECIALS = ("[PAD]", "[SEP]", "[CLS]", "[MASK]")
_shrunk = False


def shrink_chatterbox() -> None:
    """Two T3 layers, alignment heads inside them, at most ``MAX_SPEECH_TOKENS`` a chunk."""
    global _shrunk
    if _shrunk:
        return
    from chatterbox.models.t3 import llama_configs, t3
    from chatterbox.models.t3.inference import alignment_stream_analyzer

    llama_configs.LLAMA_CONFIGS["Llama_520M"].update(
        num_hidden_layers=T3_LAYERS, intermediate_size=1024
    )
    # Turbo's GPT-2: two layers, 256 wide (its text vocabulary of 50276 is fixed in from_local).
    llama_configs.LLAMA_CONFIGS["GPT2_medium"].update(
        n_layer=T3_LAYERS, n_embd=256, hidden_size=256, n_head=4
    )
    # Multilingual reads alignment from (layer, head) pairs of the 30-layer model.
    alignment_stream_analyzer.LLAMA_ALIGNED_HEADS[:] = [(1, 15), (1, 11), (0, 2)]

    inference, inference_turbo = t3.T3.inference, t3.T3.inference_turbo

    def capped(self: Any, *args: Any, max_new_tokens: int | None = None, **kwargs: Any) -> Any:
        limit = min(max_new_tokens or MAX_SPEECH_TOKENS, MAX_SPEECH_TOKENS)
        return inference(self, *args, max_new_tokens=limit, **kwargs)

    def capped_turbo(self: Any, *args: Any, max_gen_len: int = 1000, **kwargs: Any) -> Any:
        return inference_turbo(
            self, *args, max_gen_len=min(max_gen_len, MAX_SPEECH_TOKENS), **kwargs
        )

    t3.T3.inference = capped
    t3.T3.inference_turbo = capped_turbo
    _shrink_s3gen()
    _shrunk = True


def _shrink_s3gen() -> None:
    """S3Gen's flow decoder with one block where it has 4 and 12, its encoder with one of 6.

    The flow decoder runs 10 times a chunk, on every frame of the voice's prompt too: at
    full size a chunk costs a minute of CPU; this way, seconds. S3Gen takes no config, so
    the classes it builds them from are swapped for ones that pass smaller sizes.
    """
    from chatterbox.models.s3gen import s3gen

    decoder, encoder = s3gen.ConditionalDecoder, s3gen.UpsampleConformerEncoder

    class SmallDecoder(decoder):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**{**kwargs, "n_blocks": 1, "num_mid_blocks": 1})

    class SmallEncoder(encoder):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**{**kwargs, "num_blocks": 1})

    s3gen.ConditionalDecoder = SmallDecoder
    s3gen.UpsampleConformerEncoder = SmallEncoder


def synthetic_voice(seconds: float = SYNTHETIC_VOICE_S, pitch_hz: float = 130.0) -> np.ndarray:
    """A voiced sound in syllables (harmonics of ``pitch_hz``), float32 at 24 kHz."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    voice = sum(np.sin(2 * np.pi * pitch_hz * k * t) / k for k in range(1, 12))
    syllables = 0.15 + 0.85 * np.abs(np.sin(np.pi * 2.5 * t))
    return np.asarray(0.3 * voice / np.max(np.abs(voice)) * syllables, dtype=np.float32)


def _char_vocabulary(size: int, extra_tokens: tuple[str, ...] = ()) -> dict[str, int]:
    """The special ids, then ``extra_tokens``, then characters, up to ``size`` entries."""
    vocab = dict(SPECIAL_IDS)
    free = (i for i in range(size) if i not in SPECIAL_IDS.values())
    chars = [chr(c) for c in range(0x21, 0x7F)] + [chr(c) for c in range(0xC0, 0x250)]
    chars += [chr(c) for c in range(0x300, 0x370)]  # combining marks: NFKD leaves them
    for token in (*EXTRA_SPECIALS, *extra_tokens, *chars):
        if token in vocab:
            continue
        index = next(free, None)
        if index is None:
            break
        vocab[token] = index
    return vocab


def write_char_tokenizer(path: Path, size: int, extra_tokens: tuple[str, ...] = ()) -> None:
    """A character-level ``tokenizer.json``: what EnTokenizer/MTLTokenizer load."""
    from tokenizers import AddedToken, Tokenizer, models

    vocab = _char_vocabulary(size, extra_tokens)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    specials = [*SPECIAL_IDS, *EXTRA_SPECIALS, *extra_tokens]
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in specials])
    tokenizer.save(str(path))


def _save_builtin_voice(model: Any, directory: Path) -> None:
    clip = directory / "voice.wav"
    sf.write(clip, synthetic_voice(SYNTHETIC_VOICE_S), 24_000)
    model.prepare_conditionals(str(clip))
    model.conds.save(directory / "conds.pt")
    clip.unlink()


def build_original(directory: Path) -> Path:
    """``ChatterboxTTS.from_local``'s files, random weights."""
    import torch
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.tts import ChatterboxTTS
    from safetensors.torch import save_file

    shrink_chatterbox()
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1234)
    save_file(VoiceEncoder().state_dict(), directory / "ve.safetensors")
    t3 = T3()
    with torch.no_grad():  # random weights hide exaggeration's effect; make it count
        t3.cond_enc.emotion_adv_fc.weight.mul_(50.0)
    save_file(t3.state_dict(), directory / "t3_cfg.safetensors")
    s3gen = {k: v.contiguous() for k, v in S3Gen().state_dict().items()}
    save_file(s3gen, directory / "s3gen.safetensors")
    write_char_tokenizer(directory / "tokenizer.json", 704)
    _save_builtin_voice(ChatterboxTTS.from_local(directory, "cpu"), directory)
    return directory


# Multilingual's tokenizer: the language tokens it prepends ("[fr]") and the Cangjie codes
# its Chinese text turns into ("[cj_a]" … "[cj_.]"), as in the real vocabulary.
SPEECH_VOCAB = 6561  # the S3 tokenizer's codes: what S3Gen can turn into sound
MULTILINGUAL_VOCAB = 2454  # T3Config.multilingual(): is_multilingual means exactly this size
CANGJIE_TOKENS = tuple(f"[cj_{c}]" for c in "abcdefghijklmnopqrstuvwxyz.")
# A few lines of Cangjie5_TC.json's format ("glyph<TAB>code"), enough to encode 你好世界.
CANGJIE_ENTRIES = ("你\tonf", "好\tvnd", "世\tpt", "界\twol", "中\tl", "文\tyk")


def build_multilingual(directory: Path, original: Path) -> Path:
    """``ChatterboxMultilingualTTS.from_local``'s files and ``Cangjie5_TC.json``, random
    weights. The Cangjie file lies beside the weights as download_checkpoint leaves it; the
    engine's loader puts it where the library looks. The voice encoder, S3Gen and the
    built-in voice are the ``original`` checkpoint's (the same models), saved as ``.pt``.

    T3's head scores 8194 speech ids, of which S3Gen knows the first 6561 (then start and
    stop). A trained head never ranks the unused ids high; a random one samples them at
    every step, and Multilingual (unlike the original) passes them on to S3Gen, which
    fails. So the random head scores the real ids 8 times louder and the unused ones 0
    (``min_p`` then drops them). And random weights drown the one language token among the
    voice's 150 prompt tokens; its embedding is made 50 times louder, so it counts.
    """
    import json
    import shutil

    import torch
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.mtl_tts import SUPPORTED_LANGUAGES
    from safetensors.torch import load_file, save_file

    shrink_chatterbox()
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(2345)
    torch.save(load_file(original / "ve.safetensors"), directory / "ve.pt")
    torch.save(load_file(original / "s3gen.safetensors"), directory / "s3gen.pt")
    shutil.copyfile(original / "conds.pt", directory / "conds.pt")
    languages = tuple(f"[{code}]" for code in SUPPORTED_LANGUAGES)
    extra_tokens = (*languages, *CANGJIE_TOKENS)
    vocabulary = _char_vocabulary(MULTILINGUAL_VOCAB, extra_tokens)
    t3 = T3(T3Config.multilingual())
    with torch.no_grad():
        t3.speech_head.weight[:SPEECH_VOCAB].mul_(8.0)
        t3.speech_head.weight[SPEECH_VOCAB + 2 :].zero_()
        for token in languages:
            t3.text_emb.weight[vocabulary[token]].mul_(50.0)
    save_file(t3.state_dict(), directory / "t3_mtl23ls_v2.safetensors")
    write_char_tokenizer(
        directory / "grapheme_mtl_merged_expanded_v1.json", MULTILINGUAL_VOCAB, extra_tokens
    )
    (directory / "Cangjie5_TC.json").write_text(json.dumps(list(CANGJIE_ENTRIES)))
    return directory


TURBO_TEXT_VOCAB = 50276  # ChatterboxTurboTTS.from_local builds T3 with this many text tokens
PARALINGUISTIC_TAGS = ("[laugh]", "[chuckle]", "[sigh]", "[cough]", "[gasp]", "[groan]")


def turbo_t3_config() -> Any:
    """The T3 configuration ``ChatterboxTurboTTS.from_local`` builds (0.1.7), as it builds it."""
    from chatterbox.models.t3.modules.t3_config import T3Config

    hp = T3Config(text_tokens_dict_size=TURBO_TEXT_VOCAB)
    hp.llama_config_name = "GPT2_medium"
    hp.speech_tokens_dict_size = 6563
    hp.input_pos_emb = None
    hp.speech_cond_prompt_len = 375
    hp.use_perceiver_resampler = False
    hp.emotion_adv = False
    return hp


def write_gpt2_tokenizer(directory: Path) -> None:
    """A byte-level BPE (GPT-2's kind: ``vocab.json``, ``merges.txt``) learnt from a few
    sentences, the paralinguistic tags as added tokens (``added_tokens.json``) and a
    ``tokenizer_config.json`` naming GPT2Tokenizer: what AutoTokenizer loads."""
    import json

    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    corpus = ["Hello there, this is a test of the tokenizer.", "Ha ha, that is funny!"] * 4
    bpe.train_from_iterator(
        corpus, vocab_size=400, min_frequency=1, show_progress=False,
        special_tokens=["<|endoftext|>"],
    )  # fmt: skip
    bpe.save_model(str(directory))
    size = len(json.loads((directory / "vocab.json").read_text()))
    added = {tag: size + i for i, tag in enumerate(PARALINGUISTIC_TAGS)}
    (directory / "added_tokens.json").write_text(json.dumps(added))
    config = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))


def build_turbo(directory: Path, original: Path) -> Path:
    """``ChatterboxTurboTTS.from_local``'s files, random weights: GPT-2 T3 (two layers, 256
    wide), the meanflow S3Gen, a GPT-2 tokenizer; the voice encoder and the built-in voice
    are the ``original`` checkpoint's (the same shapes; Turbo's own came from a longer clip)."""
    import shutil

    import torch
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from safetensors.torch import save_file

    shrink_chatterbox()
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(3456)
    for name in ("ve.safetensors", "conds.pt"):
        shutil.copyfile(original / name, directory / name)
    t3 = {k: v.contiguous() for k, v in T3(turbo_t3_config()).state_dict().items()}
    save_file(t3, directory / "t3_turbo_v1.safetensors")
    s3gen = {k: v.contiguous() for k, v in S3Gen(meanflow=True).state_dict().items()}
    save_file(s3gen, directory / "s3gen_meanflow.safetensors")
    write_gpt2_tokenizer(directory)
    return directory
