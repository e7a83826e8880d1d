"""Where the Chatterbox weights come from, and the model built from them on a device.

A module of its own because getting the weights (a checkpoint directory, the hub, the
revision that goes into every cache key) is a job apart from speaking with them: the Modal
app fills its volume with ``download_checkpoint`` without ever building an engine.

``checkpoint_dir`` (a directory with the model's ``files``, see ``chatterbox_variants``)
loads with its class's ``from_local`` and never touches the network;
``download_checkpoint`` fills such a directory once (the Modal app keeps it on a volume).
Without it the files come from the hub, cached in ``hub_cache_dir`` (or the default Hugging
Face cache). chatterbox, torch and huggingface_hub (the ``gpu`` extra) are imported only
inside these functions.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import logging
import shutil
from pathlib import Path
from typing import Any

from tts_service.engines.chatterbox_model import ChatterboxModel
from tts_service.engines.chatterbox_variants import (
    CANGJIE_FILE,
    VARIANTS,
    ChatterboxVariant,
)
from tts_service.engines.watermark import WatermarkUnavailable, perth_import_error

log = logging.getLogger(__name__)

ORIGINAL = VARIANTS["original"]
HUB_REPO_ID = ORIGINAL.repo_id  # chatterbox.tts.REPO_ID in 0.1.7
# What ChatterboxTTS.from_pretrained fetches in 0.1.7 and from_local reads; conds.pt
# is the built-in voice. The other models' files: chatterbox_variants.
CHECKPOINT_FILES = ORIGINAL.files
REVISION_FILE = "REVISION"  # written by download_checkpoint: the hub commit of the weights
# Written by download_checkpoint: "<sha256>  <file>" for each checkpoint file, so a
# container knows its weights' digest without reading a gigabyte at every start.
MANIFEST_FILE = "SHA256SUMS"
_HASH_BLOCK = 1 << 20


class DeviceUnavailable(RuntimeError):
    """The model was asked for on a device that is not there (CUDA after a bad restore)."""


def pick_device(requested: str | None = None) -> str:
    """``requested`` if given, else CUDA when available, else MPS, else CPU."""
    if requested:
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def check_device(model: ChatterboxModel, requested: str | None) -> None:
    """Fail loudly unless a model asked for on CUDA really is on CUDA.

    After a Modal memory snapshot, torch may have cached "no GPU" from the snapshot phase;
    a model that then loads on the CPU answers every request minutes late. Better no start.
    """
    if not requested or not requested.startswith("cuda"):
        return
    require_cuda(requested)
    placed = {str(p.device.type) for p in model.t3.parameters()}  # type: ignore[attr-defined]
    if placed != {"cuda"}:
        raise DeviceUnavailable(f"Chatterbox was asked for on {requested} but is on {placed}")


def require_cuda(requested: str | None) -> None:
    """``DeviceUnavailable`` when CUDA is asked for and torch sees none."""
    if not requested or not requested.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise DeviceUnavailable(
            f"TTS_CHATTERBOX_DEVICE is {requested} but torch sees no CUDA device "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); refusing to run "
            "Chatterbox on the CPU"
        )


def checkpoint_digest(directory: Path, names: tuple[str, ...] = CHECKPOINT_FILES) -> str:
    """sha256 over the checkpoint files' own sha256s: the weights' identity, whatever
    else the hub repository holds. Read from ``SHA256SUMS`` when it lists them all."""
    sums = read_manifest(directory)
    if not all(name in sums for name in names):
        sums = {name: file_sha256(directory / name) for name in names}
    joined = "".join(f"{sums[name]}  {name}\n" for name in sorted(names))
    return hashlib.sha256(joined.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: Path) -> dict[str, str]:
    manifest = directory / MANIFEST_FILE
    if not manifest.is_file():
        return {}
    sums = {}
    for line in manifest.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if digest and name:
            sums[name] = digest
    return sums


def write_manifest(directory: Path, names: tuple[str, ...] = CHECKPOINT_FILES) -> None:
    lines = [f"{file_sha256(directory / name)}  {name}" for name in sorted(names)]
    (directory / MANIFEST_FILE).write_text("\n".join(lines) + "\n")


def checkpoint_files(directory: Path, model: ChatterboxVariant) -> tuple[str, ...]:
    """The files that make up ``model``'s weights in ``directory``: the required ones and
    those of its optional patterns that are there (Turbo's tokenizer configuration)."""
    extra = {
        path.name
        for path in directory.iterdir()
        if path.is_file()
        and path.name not in (REVISION_FILE, MANIFEST_FILE)
        and any(fnmatch.fnmatch(path.name, pattern) for pattern in model.optional_patterns)
    }
    return tuple(sorted({*model.files, *extra}))


def load_chatterbox(
    checkpoint_dir: Path | None,
    hub_cache_dir: Path | None,
    device: str | None,
    model: ChatterboxVariant = ORIGINAL,
) -> tuple[ChatterboxModel, str]:
    """The real model and the digest of its checkpoint files (``checkpoint_digest``)."""
    if checkpoint_dir is not None:
        missing = [name for name in model.files if not (checkpoint_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"the Chatterbox {model.name} checkpoint in {checkpoint_dir} lacks "
                f"{', '.join(missing)}; fill it with download_checkpoint() (on Modal: the "
                "download_weights function)"
            )
        source = checkpoint_dir
        if CANGJIE_FILE in model.files:
            install_cangjie(source)
    else:
        source = _hub_snapshot(hub_cache_dir, model)
    digest = checkpoint_digest(source, checkpoint_files(source, model))
    problem = perth_import_error()
    if problem is not None:  # before chatterbox fails on it obscurely, or quietly does without
        raise WatermarkUnavailable(
            f"Perth's watermarker cannot be imported ({problem}); install the gpu extra's "
            "dependencies (resemble-perth needs setuptools' pkg_resources, torchaudio and "
            "pyyaml) so that every answer is watermarked"
        )
    module = importlib.import_module(f"chatterbox.{model.module}")
    model_class: Any = getattr(module, model.class_name)
    require_cuda(device)  # before from_local fails on it obscurely
    chosen = pick_device(device)
    log.info("loading Chatterbox %s from %s on %s", model.name, source, chosen)
    loaded: ChatterboxModel = model_class.from_local(source, chosen)
    if CANGJIE_FILE in model.files:
        check_cangjie(loaded, source)
    return loaded, digest


def install_cangjie(directory: Path) -> None:
    """Put the checkpoint's ``Cangjie5_TC.json`` where Multilingual's tokenizer looks for it.

    ``MTLTokenizer`` asks ``hf_hub_download(ResembleAI/chatterbox, Cangjie5_TC.json,
    cache_dir=<checkpoint>)`` for its ``main``; offline (or when the hub cannot be reached)
    that finds the file in the hub cache layout under the checkpoint directory: ``refs/main``
    naming a snapshot that holds it. The snapshot is the weights' commit (``REVISION``).
    """
    source = directory / CANGJIE_FILE
    store = directory / ("models--" + VARIANTS["multilingual"].repo_id.replace("/", "--"))
    revision = directory / REVISION_FILE
    commit = revision.read_text().strip() if revision.is_file() else "local"
    placed = store / "snapshots" / commit / CANGJIE_FILE
    ref = store / "refs" / "main"
    if placed.is_file() and ref.is_file() and ref.read_text() == commit:
        return
    placed.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, placed)
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)  # read back verbatim by huggingface_hub: no newline


def check_cangjie(model: Any, source: Path) -> None:
    """Multilingual only warns when its Chinese mapping is missing, then speaks Chinese
    as raw characters its tokenizer does not know; refuse that instead."""
    converter = getattr(getattr(model, "tokenizer", None), "cangjie_converter", None)
    if converter is None or not getattr(converter, "word2cj", None):
        raise FileNotFoundError(
            f"Chatterbox multilingual could not read {CANGJIE_FILE} from {source}; fill the "
            "checkpoint with download_checkpoint() (on Modal: the download_weights function)"
        )


def _hub_snapshot(cache_dir: Path | None, model: ChatterboxVariant) -> Path:
    """What ``from_pretrained`` does, with the cache where we want it (e.g. on a volume)."""
    # huggingface_hub comes with chatterbox (the gpu extra); typed only where installed.
    from huggingface_hub import (  # type: ignore[import-not-found, unused-ignore]
        snapshot_download,
    )

    path = snapshot_download(
        repo_id=model.repo_id,
        allow_patterns=[*model.files, *model.optional_patterns],
        cache_dir=str(cache_dir) if cache_dir else None,
    )
    return Path(path)


def download_checkpoint(
    target_dir: Path, revision: str, model: ChatterboxVariant = ORIGINAL
) -> str:
    """Fill ``target_dir`` with ``model``'s weights from the hub once; returns their commit.

    Records the commit in ``REVISION`` and the files' sha256 in ``SHA256SUMS`` (the
    engine's ``model_version``, part of every audio cache key, comes from those). Skips
    the download when the directory already holds that commit. Multilingual's Chinese
    mapping goes where its tokenizer finds it without the hub (``install_cangjie``).
    """
    from huggingface_hub import (  # type: ignore[import-not-found, unused-ignore]
        HfApi,
        snapshot_download,
    )

    commit: str | None = HfApi().model_info(model.repo_id, revision=revision).sha
    if commit is None:
        raise RuntimeError(f"the hub gave no commit for {model.repo_id}@{revision}")
    revision_file = target_dir / REVISION_FILE
    complete = all((target_dir / name).is_file() for name in model.files)
    if complete and revision_file.is_file() and revision_file.read_text().strip() == commit:
        log.info("Chatterbox %s weights %s already in %s", model.name, commit, target_dir)
        return commit
    target_dir.mkdir(parents=True, exist_ok=True)
    snapshot_download(
        repo_id=model.repo_id,
        revision=commit,
        allow_patterns=[*model.files, *model.optional_patterns],
        local_dir=str(target_dir),
    )
    write_manifest(target_dir, checkpoint_files(target_dir, model))
    revision_file.write_text(commit + "\n")
    if CANGJIE_FILE in model.files:
        install_cangjie(target_dir)
    return commit
