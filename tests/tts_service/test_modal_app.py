"""The Modal deployment, tested offline: settings, image pins, and the real app it serves.

``TTSService().web.local()`` runs the class's ``@modal.enter()`` hooks and
returns the ASGI app exactly as a container would build it; here the
environment selects Piper so it runs without a GPU, and the app is served on
loopback and driven through the same contract tests as the local service.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.requirements import Requirement
from pydantic import ValidationError

from tests.servers import serve_in_thread
from tests.tts_service.conftest import API_TOKEN, wait_ready

# The local service's contract tests, collected again here against the app that
# TTSService builds (they use the `service_url` and `client` fixtures, which this
# module points at that app).
from tests.tts_service.test_api import (  # noqa: F401
    test_bad_values_name_the_field_and_range,
    test_each_format_decodes_as_what_was_asked,
    test_everything_else_needs_the_bearer_token,
    test_healthz_needs_no_token,
    test_missing_text_and_broken_json,
    test_oversized_body_is_refused_before_parsing,
    test_piper_refuses_to_clone_a_voice,
    test_ready_and_engine_info,
    test_tts_needs_the_bearer_token,
    test_unknown_path_gets_the_error_body,
)
from tts_service import image_packages
from tts_service.api import UnsafeBind
from tts_service.modal_app import (
    DEPLOYMENT,
    ENTERED_HEADER,
    LOADED_HEADER,
    ModalDeployment,
    TTSService,
)
from tts_service.settings import TTSSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
# modal warns that .local() cannot see the class's volume; that, and only that, is expected.
LOCAL_VOLUME_WARNING = r"The TTSService\.web function is executing locally"


def build_local_app(monkeypatch: pytest.MonkeyPatch, tmp: Path, **env: str) -> Any:
    """What a container does on start, here: enter hooks, then the ASGI app."""
    monkeypatch.chdir(tmp)  # no stray .env
    for name in ("TTS_API_TOKEN", "TTS_ENGINE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=LOCAL_VOLUME_WARNING, category=UserWarning)
        return TTSService().web.local()


@pytest.fixture(autouse=True)
def no_deployment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own SAYBOT_MODAL_* variables must not change what these tests see."""
    for name in list(os.environ):
        if name.startswith("SAYBOT_MODAL_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def modal_web_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with pytest.MonkeyPatch.context() as monkeypatch:
        # The environment matters only while the hooks run; the app keeps what it read.
        return build_local_app(
            monkeypatch,
            tmp_path_factory.mktemp("modal"),
            TTS_ENGINE="piper",
            TTS_API_TOKEN=API_TOKEN,
            TTS_ONNX_THREADS="1",
        )


@pytest.fixture(scope="module")
def service_url(modal_web_app: Any) -> Iterator[str]:
    """Overrides conftest's: the contract tests above run against the Modal-built app."""
    with serve_in_thread(modal_web_app) as url:
        wait_ready(url)
        yield url


# --- the class's lifecycle ---------------------------------------------------------------------


def test_every_answer_says_when_its_container_began_and_loaded(service_url: str) -> None:
    """What ``cold_start`` reads to tell a cold container's answer from a warm one's."""
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    answer = httpx.post(f"{service_url}/v1/tts", json={"text": "Hi."}, headers=headers)
    assert answer.status_code == 200
    entered = float(answer.headers[ENTERED_HEADER])
    loaded = float(answer.headers[LOADED_HEADER])
    assert entered <= loaded <= time.time()
    refused = httpx.get(f"{service_url}/v1/engine")  # no token: the error has them too
    assert refused.status_code == 401 and ENTERED_HEADER in refused.headers


def test_the_enter_hook_loads_the_engine_before_any_request(modal_web_app: Any) -> None:
    engine = modal_web_app.state.engine_state.engine
    assert engine.info.name == "piper"
    assert engine.is_loaded  # loaded by @modal.enter(), not lazily by the app's lifespan


def test_no_token_no_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(UnsafeBind, match=f"modal secret create {DEPLOYMENT.secret_name}"):
        build_local_app(monkeypatch, tmp_path, TTS_ENGINE="piper")


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_token_is_no_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, blank: str
) -> None:
    with pytest.raises(UnsafeBind, match=f"modal secret create {DEPLOYMENT.secret_name}"):
        build_local_app(monkeypatch, tmp_path, TTS_ENGINE="piper", TTS_API_TOKEN=blank)


@pytest.mark.parametrize("weak", ["Q", "a-token-of-31-characters-012345"])
def test_a_weak_token_no_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, weak: str
) -> None:
    with pytest.raises(UnsafeBind, match=r"TTS_API_TOKEN is shorter than 32") as refused:
        build_local_app(monkeypatch, tmp_path, TTS_ENGINE="piper", TTS_API_TOKEN=weak)
    message = str(refused.value)
    assert "secrets.token_urlsafe(32)" in message and weak not in message
    assert f"modal secret create {DEPLOYMENT.secret_name}" in message


def test_the_snapshot_hook_imports_torch_and_not_chatterbox(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # chatterbox (through transformers) asks torch about CUDA while no GPU is attached;
    # the snapshot phase must not import it. Here torch is absent (no gpu extra): the hook
    # fails on torch, and never reached for chatterbox, which would fail on the marker.
    for module in ("chatterbox", "chatterbox.tts", "torch"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match="torch") as failed:
        build_local_app(monkeypatch, tmp_path, TTS_ENGINE="chatterbox", TTS_API_TOKEN="x")
    assert "chatterbox" not in str(failed.value)


# --- deployment settings -----------------------------------------------------------------------


def test_importing_the_module_warns_nothing_and_reads_the_environment(tmp_path: Path) -> None:
    code = (
        "import tts_service.modal_app as m\n"
        "d = m.DEPLOYMENT\n"
        "print(d.gpu, d.scaledown_window_s, d.min_containers, d.timeout_s, d.max_inputs)\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),  # no ~/.modal.toml: no token, as in CI
        "SAYBOT_MODAL_GPU": "A10G",
        "SAYBOT_MODAL_SCALEDOWN_WINDOW_S": "60",
        "SAYBOT_MODAL_MIN_CONTAINERS": "1",
        "SAYBOT_MODAL_TIMEOUT_S": "900",
        "SAYBOT_MODAL_MAX_INPUTS": "2",
    }
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.split() == ["A10G", "60", "1", "900", "2"]


def test_defaults_are_the_documented_ones() -> None:
    defaults = ModalDeployment(_env_file=None)  # type: ignore[call-arg]
    assert (defaults.gpu, defaults.scaledown_window_s, defaults.min_containers) == ("L4", 300, 0)
    assert (defaults.max_inputs, defaults.target_inputs) == (4, 1)
    assert defaults.memory_snapshot is True
    assert defaults.gpu_snapshot is False  # alpha: an opt-in
    assert defaults.service_env()["TTS_CHATTERBOX_DEVICE"] == "cuda"
    assert defaults.checkpoint_dir == "/weights/chatterbox"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SAYBOT_MODAL_TARGET_INPUTS": "8"}, "TARGET_INPUTS (8) cannot exceed"),
        ({"SAYBOT_MODAL_SCALEDOWN_WINDOW_S": "1"}, "scaledown_window_s"),
        ({"SAYBOT_MODAL_MAX_INPUTS": "0"}, "max_inputs"),
        ({"SAYBOT_MODAL_MIN_CONTAINERS": "some"}, "min_containers"),
    ],
)
def test_bad_settings_fail_at_deploy_time(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=re.escape(message)):
        ModalDeployment()


def test_containers_rebuild_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    deployed = ModalDeployment(  # type: ignore[call-arg]
        _env_file=None,
        gpu="H100",
        scaledown_window_s=60,
        min_containers=1,
        max_containers=0,
        max_inputs=2,
        target_inputs=2,
        memory_snapshot=False,
        weights_mount="/mnt/w/",
        secret_name="other",
        chatterbox_model="turbo",
    )
    for name, value in deployed.deployment_env().items():
        assert value is not None
        monkeypatch.setenv(name, value)
    assert ModalDeployment() == deployed


def test_the_service_container_runs_chatterbox_from_the_volume(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployed = ModalDeployment(max_inputs=3, weights_mount="/w")  # type: ignore[call-arg]
    for name, value in deployed.service_env().items():
        assert value is not None
        monkeypatch.setenv(name, value)
    settings = TTSSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.engine == "chatterbox"
    assert settings.chatterbox_checkpoint_dir == Path("/w/chatterbox")
    assert settings.max_in_flight == 3  # never below what Modal routes to one container
    assert settings.chatterbox_model == "original"
    assert deployed.service_env()["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize("model", ["multilingual", "turbo"])
def test_another_model_is_served_from_its_own_directory(
    monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    deployed = ModalDeployment(chatterbox_model=model, weights_mount="/w")  # type: ignore[call-arg]
    for name, value in deployed.service_env().items():
        assert value is not None
        monkeypatch.setenv(name, value)
    settings = TTSSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.chatterbox_model == model
    assert settings.chatterbox_checkpoint_dir == Path(f"/w/chatterbox-{model}")


# --- the image ---------------------------------------------------------------------------------


def pyproject() -> dict[str, Any]:
    with open(REPO_ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)


def test_the_image_pins_the_gpu_extra_exactly() -> None:
    gpu_extra = pyproject()["project"]["optional-dependencies"]["gpu"]
    assert sorted(image_packages.GPU_REQUIREMENTS) == sorted(gpu_extra)


def test_the_image_pins_lie_inside_the_project_ranges() -> None:
    ranges = {
        Requirement(dep).name.lower().replace("_", "-"): Requirement(dep).specifier
        for dep in pyproject()["project"]["dependencies"]
    }
    checked = 0
    for pin in image_packages.SERVICE_REQUIREMENTS:
        requirement = Requirement(pin)
        (exact,) = requirement.specifier
        assert exact.operator == "==", pin
        name = requirement.name.lower().replace("_", "-")
        if name == "huggingface-hub":  # comes with chatterbox-tts, not a direct dependency
            continue
        assert name in ranges, f"{pin} is not a dependency of the project"
        assert ranges[name].contains(exact.version), f"{pin} is outside {ranges[name]}"
        checked += 1
    assert checked == len(image_packages.SERVICE_REQUIREMENTS) - 1
