"""What the Modal image installs: one list, read by ``make locks``, the image and the tests.

A module of its own (no modal import) so that the lock file, the image and the real-library
test tier (``make test-gpu-stack``) are made from the same names.

chatterbox-tts 0.1.7 is installed *without its dependencies* (``--no-deps``): its metadata
pins gradio 6.8 (its demo UI, never imported by the library), which holds starlette below 1
and so would give the image a different web stack from the one the tests run. In its place
the image installs ``CHATTERBOX_RUNTIME``, the rest of its requirements. Everything, with
every transitive dependency, is pinned in ``requirements/tts-image.lock``; the image and the
tier both install that file with ``--no-deps``, so neither resolves anything of its own.
"""

from __future__ import annotations

from pathlib import Path

CHATTERBOX = "chatterbox-tts==0.1.7"
# chatterbox-tts 0.1.7's requirements but gradio (the demo UI) and spacy-pkuseg (Chinese
# word segmentation for Multilingual, optional there: without it the library skips the
# segmentation, and with it pkuseg() would fetch its model from the internet at start-up).
# pykakasi stays: Multilingual reads Japanese kanji through it.
CHATTERBOX_RUNTIME = (
    "librosa==0.11.0",
    "s3tokenizer==0.3.0",
    "transformers==5.2.0",
    "diffusers==0.29.0",
    "resemble-perth==1.0.1",
    "conformer==0.3.2",
    "safetensors==0.5.3",
    "pyloudnorm==0.2.0",
    "omegaconf==2.4.0",
    "pykakasi==2.3.0",
)
# The `gpu` extra of pyproject.toml, exactly (a test keeps them equal).
# setuptools below 82: Perth's watermarker imports pkg_resources, which setuptools 82
# no longer ships; without it Perth quietly has no watermarker and Chatterbox cannot load.
GPU_REQUIREMENTS = (
    CHATTERBOX,
    "torch==2.6.0",
    "torchaudio==2.6.0",
    "setuptools==80.10.2",
)
# What tts_service imports, at the versions of requirements/bots.lock where chatterbox
# allows them (numpy stays below 2 for it), inside pyproject's ranges.
SERVICE_REQUIREMENTS = (
    "fastapi==0.165.0",
    "python-multipart==0.0.34",  # forms on POST /v1/tts
    "pydantic==2.14.4",
    "pydantic-settings==2.16.3",
    "numpy==1.26.4",
    "soundfile==0.14.0",
    "soxr==1.1.0",
    "av==18.1.0",
    "huggingface_hub==1.33.0",
)
IMAGE_REQUIREMENTS = (*GPU_REQUIREMENTS, *CHATTERBOX_RUNTIME, *SERVICE_REQUIREMENTS)
# What `make locks` resolves: all of the above but chatterbox-tts itself (appended after).
RESOLVED_REQUIREMENTS = tuple(r for r in IMAGE_REQUIREMENTS if r != CHATTERBOX)
# The test tier's own tools, resolved against the image's pins (requirements/gpu-stack-tests.lock).
TIER_TOOLS = ("pytest", "pytest-asyncio", "pytest-timeout", "httpx", "uvicorn", "packaging")
# The uv that builds the image (Modal copies this release) and the tier's virtualenv.
UV_VERSION = "0.13.9"

REQUIREMENTS_DIR = Path(__file__).resolve().parents[1] / "requirements"
IMAGE_LOCK = REQUIREMENTS_DIR / "tts-image.lock"
TIER_LOCK = REQUIREMENTS_DIR / "gpu-stack-tests.lock"


def main() -> None:
    """``python -m tts_service.image_packages resolved|tools|chatterbox``: one name a line."""
    import sys

    which = sys.argv[1] if len(sys.argv) > 1 else "resolved"
    names = {
        "resolved": RESOLVED_REQUIREMENTS,
        "tools": TIER_TOOLS,
        "chatterbox": (CHATTERBOX,),
        "uv": (f"uv=={UV_VERSION}",),
    }[which]
    print(*names, sep="\n")


if __name__ == "__main__":
    main()
