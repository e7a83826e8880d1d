"""Where the Chatterbox weights come from, and the model built from them on a device.

A module of its own because getting the weights (a checkpoint directory, the hub, the
revision that goes into every cache key) is a job apart from speaking with them: the Modal
app fills its volume with ``download_checkpoint`` without ever building an engine.

``checkpoint_dir`` (a directory with the files of ``CHECKPOINT_FILES``) loads with
``ChatterboxTTS.from_local`` and never touches the network; ``download_checkpoint`` fills
such a directory once (the Modal app keeps it on a volume). Without it the files come from
the hub, cached in ``hub_cache_dir`` (or the default Hugging Face cache). chatterbox,
torch and huggingface_hub (the ``gpu`` extra) are imported only inside these functions.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tts_service.engines.chatterbox_model import ChatterboxModel
from tts_service.engines.watermark import WatermarkUnavailable, perth_import_error

log = logging.getLogger(__name__)

HUB_REPO_ID = "ResembleAI/chatterbox"  # chatterbox.tts.REPO_ID in 0.1.7
# What ChatterboxTTS.from_pretrained fetches in 0.1.7 and from_local reads; conds.pt
# is the built-in voice.
CHECKPOINT_FILES = (
    "ve.safetensors",
    "t3_cfg.safetensors",
    "s3gen.safetensors",
    "tokenizer.json",
    "conds.pt",
)
REVISION_FILE = "REVISION"  # written by download_checkpoint: the hub commit of the weights


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


def load_chatterbox(
    checkpoint_dir: Path | None, hub_cache_dir: Path | None, device: str | None
) -> tuple[ChatterboxModel, str | None]:
    """The real model and the hub revision of its weights (when known)."""
    if checkpoint_dir is not None:
        missing = [name for name in CHECKPOINT_FILES if not (checkpoint_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"the Chatterbox checkpoint in {checkpoint_dir} lacks {', '.join(missing)}; "
                "fill it with download_checkpoint() (on Modal: the download_weights function)"
            )
        revision_file = checkpoint_dir / REVISION_FILE
        revision = revision_file.read_text().strip() if revision_file.is_file() else None
        source = checkpoint_dir
    else:
        source = _hub_snapshot(hub_cache_dir)
        revision = source.name  # .../snapshots/<commit>
    problem = perth_import_error()
    if problem is not None:  # before chatterbox fails on it obscurely, or quietly does without
        raise WatermarkUnavailable(
            f"Perth's watermarker cannot be imported ({problem}); install the gpu extra's "
            "dependencies (resemble-perth needs setuptools' pkg_resources, torchaudio and "
            "pyyaml) so that every answer is watermarked"
        )
    from chatterbox.tts import ChatterboxTTS

    chosen = pick_device(device)
    log.info("loading Chatterbox from %s on %s", source, chosen)
    model: ChatterboxModel = ChatterboxTTS.from_local(source, chosen)
    return model, revision


def _hub_snapshot(cache_dir: Path | None) -> Path:
    """What ``from_pretrained`` does, with the cache where we want it (e.g. on a volume)."""
    # huggingface_hub comes with chatterbox (the gpu extra); typed only where installed.
    from huggingface_hub import hf_hub_download  # type: ignore[import-not-found, unused-ignore]

    path = ""
    for filename in CHECKPOINT_FILES:
        path = hf_hub_download(
            repo_id=HUB_REPO_ID,
            filename=filename,
            cache_dir=str(cache_dir) if cache_dir else None,
        )
    return Path(path).parent


def download_checkpoint(target_dir: Path, revision: str = "main") -> str:
    """Fill ``target_dir`` with the weights from the hub once; returns their commit.

    Records the commit in ``REVISION`` so the engine's ``model_version`` (part
    of every audio cache key) changes when the weights do. Skips the download
    when the directory already holds that commit.
    """
    from huggingface_hub import (  # type: ignore[import-not-found, unused-ignore]
        HfApi,
        snapshot_download,
    )

    commit: str | None = HfApi().model_info(HUB_REPO_ID, revision=revision).sha
    if commit is None:
        raise RuntimeError(f"the hub gave no commit for {HUB_REPO_ID}@{revision}")
    revision_file = target_dir / REVISION_FILE
    complete = all((target_dir / name).is_file() for name in CHECKPOINT_FILES)
    if complete and revision_file.is_file() and revision_file.read_text().strip() == commit:
        log.info("Chatterbox weights %s already in %s", commit, target_dir)
        return commit
    target_dir.mkdir(parents=True, exist_ok=True)
    snapshot_download(
        repo_id=HUB_REPO_ID,
        revision=commit,
        allow_patterns=list(CHECKPOINT_FILES),
        local_dir=str(target_dir),
    )
    revision_file.write_text(commit + "\n")
    return commit
