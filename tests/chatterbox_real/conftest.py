"""The real-library tier's fixtures: one random-weight checkpoint, one engine, one service.

Runs in the virtualenv of ``make test-gpu-stack`` (the Modal image's packages); elsewhere
every test here is skipped, saying why.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import serve_in_thread
from tests.tts_helpers import API_TOKEN, make_settings, wait_ready

# As on Modal: nothing from the hub. Multilingual's tokenizer asks it for Cangjie5_TC.json
# at load; offline, the copy the engine's loader placed beside the weights must answer.
os.environ["HF_HUB_OFFLINE"] = "1"

HAVE_CHATTERBOX = importlib.util.find_spec("chatterbox") is not None
NEEDS_CHATTERBOX = pytest.mark.skipif(
    not HAVE_CHATTERBOX,
    reason="chatterbox-tts is not installed here: `make test-gpu-stack` runs this tier",
)

# The library's own noise, and only in this tier: its imports and first calls warn about
# APIs it uses (pkg_resources in Perth, diffusers' LoRA layers, torch's sdp_kernel).
LIBRARY_WARNINGS = (
    "ignore:pkg_resources is deprecated as an API:UserWarning",
    "ignore:.*LoRACompatible.*:FutureWarning",
    "ignore:.*sdp_kernel.*:FutureWarning",
    "ignore::FutureWarning:diffusers",
    "ignore::DeprecationWarning:librosa",
    "ignore:'aifc' is deprecated:DeprecationWarning",
    "ignore:'sunau' is deprecated:DeprecationWarning",
    "ignore:'audioop' is deprecated:DeprecationWarning",
    "ignore:.*weight_norm.*:FutureWarning",
    "ignore:.*torch.nn.utils.weight_norm.*:UserWarning",
    # transformers 5 builds Turbo's GPT-2 tokenizer from vocab.json and merges.txt this way
    "ignore:Deprecated in 0.9.0. BPE.__init__ will not create from files:DeprecationWarning",
)


def pytest_configure(config: pytest.Config) -> None:
    for line in LIBRARY_WARNINGS:
        config.addinivalue_line("filterwarnings", line)


@pytest.fixture(scope="session")
def original_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.chatterbox_real.checkpoint import build_original

    return build_original(tmp_path_factory.mktemp("chatterbox") / "original")


@pytest.fixture(scope="session")
def real_engine(original_checkpoint: Path):  # type: ignore[no-untyped-def]
    from tests.chatterbox_real.checkpoint import shrink_chatterbox
    from tts_service.engines.chatterbox import ChatterboxEngine

    shrink_chatterbox()
    engine = ChatterboxEngine(checkpoint_dir=original_checkpoint, device="cpu")
    engine.load()
    return engine


@pytest.fixture(scope="session")
def service_url(real_engine) -> Iterator[str]:  # type: ignore[no-untyped-def]
    from tts_service.api import create_app

    with serve_in_thread(create_app(real_engine, make_settings())) as url:
        wait_ready(url)
        yield url


@pytest.fixture
def client(service_url: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with httpx.Client(base_url=service_url, headers=headers, timeout=120) as http:
        yield http


def _engine(checkpoint: Path, model: str):  # type: ignore[no-untyped-def]
    from tests.chatterbox_real.checkpoint import shrink_chatterbox
    from tts_service.engines.chatterbox import ChatterboxEngine

    shrink_chatterbox()
    engine = ChatterboxEngine(checkpoint_dir=checkpoint, device="cpu", model=model)
    engine.load()
    return engine


def _client(engine) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    from tts_service.api import create_app

    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with serve_in_thread(create_app(engine, make_settings())) as url:
        wait_ready(url)
        with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
            yield http


@pytest.fixture(scope="session")
def multilingual_checkpoint(
    tmp_path_factory: pytest.TempPathFactory, original_checkpoint: Path
) -> Path:
    from tests.chatterbox_real.checkpoint import build_multilingual

    directory = tmp_path_factory.mktemp("chatterbox") / "multilingual"
    return build_multilingual(directory, original_checkpoint)


@pytest.fixture(scope="session")
def multilingual_engine(multilingual_checkpoint: Path):  # type: ignore[no-untyped-def]
    return _engine(multilingual_checkpoint, "multilingual")


@pytest.fixture(scope="session")
def multilingual_client(multilingual_engine) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    yield from _client(multilingual_engine)


@pytest.fixture(scope="session")
def turbo_checkpoint(tmp_path_factory: pytest.TempPathFactory, original_checkpoint: Path) -> Path:
    from tests.chatterbox_real.checkpoint import build_turbo

    return build_turbo(tmp_path_factory.mktemp("chatterbox") / "turbo", original_checkpoint)


@pytest.fixture(scope="session")
def turbo_engine(turbo_checkpoint: Path):  # type: ignore[no-untyped-def]
    return _engine(turbo_checkpoint, "turbo")


@pytest.fixture(scope="session")
def turbo_client(turbo_engine) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    yield from _client(turbo_engine)
