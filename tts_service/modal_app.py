"""The TTS service on Modal: the same FastAPI app as locally, around Chatterbox on a GPU.

    modal token new
    export TTS_API_TOKEN=$(python -c "import secrets; print(secrets.token_urlsafe(32))")
    modal secret create saybot-tts TTS_API_TOKEN=$TTS_API_TOKEN  # 32+ characters, or no start
    modal run -m tts_service.modal_app::download_weights     # once: weights onto the volume
    modal deploy -m tts_service.modal_app                    # prints the URL for TTS_SERVICE_URL
    modal run -m tts_service.modal_app                       # one request to the deployment

The whole guide, with costs, is in ``docs/modal.md``. Only this module imports
modal; nothing else in the project depends on it.

Deployment settings
    ``DEPLOYMENT`` (``ModalDeployment``, environment variables ``SAYBOT_MODAL_*``
    read when ``modal deploy`` imports this file) is the one place the GPU
    type, scale-down window, warm containers, timeout, concurrency, volume and
    secret names live; the decorators below read it and so do the tests. Modal
    imports this module again inside every container, so the same variables
    are passed to the containers (``env=``) and the settings agree there.

Concurrency
    The engine serialises generation (one model instance, one ``conds``), so a
    container really does one synthesis at a time. The autoscaler therefore
    targets one request per container (``target_inputs=1``): a second
    concurrent request makes Modal start another GPU. Each container still
    accepts up to ``max_inputs=4``: while the new container is cold (tens of
    seconds) the extra requests wait a few seconds behind the engine lock
    instead of waiting for the cold start, and health or ``/v1/engine``
    requests are never refused. The service's own in-flight limit
    (``TTS_MAX_IN_FLIGHT``) is set to the same number, so Modal never routes a
    request that the app would turn away with 503.

Cold starts
    The weights are read from a ``modal.Volume`` filled once by
    ``download_weights``; containers run with ``HF_HUB_OFFLINE=1`` and never
    download. With CPU memory snapshots on, the snapshot holds the imported
    torch and chatterbox (tens of thousands of files); the model itself is
    loaded onto the GPU after restore, because CPU snapshots cannot hold GPU
    state and moving a loaded Chatterbox between devices relies on its
    internals.

Long requests
    Modal answers a web request still running after 150 s with a 303 redirect
    to a result URL that blocks until the answer is ready; the bots' client
    follows redirects (``bots/tts_client.py``).
"""

from __future__ import annotations

from pathlib import Path

import modal
from fastapi import FastAPI
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tts_service.api import UnsafeBind, create_app
from tts_service.engines import build_engine
from tts_service.engines.chatterbox import ChatterboxEngine
from tts_service.engines.chatterbox_weights import download_checkpoint
from tts_service.exposure import MAKE_TOKEN, WeakToken, check_strong_token, secret_value
from tts_service.settings import TTSSettings

ENV_PREFIX = "SAYBOT_MODAL_"

# The `gpu` extra of pyproject.toml, exactly (a test keeps them equal).
# setuptools: Perth's watermarker imports pkg_resources, which setuptools 81 dropped; without
# it Chatterbox cannot watermark, and the engine refuses to load.
GPU_REQUIREMENTS = (
    "chatterbox-tts==0.1.7",
    "torch==2.6.0",
    "torchaudio==2.6.0",
    "setuptools==80.10.2",
)
# What tts_service imports, pinned to versions that resolve together with chatterbox-tts
# 0.1.7's own pins (numpy<2, gradio 6.8 → starlette<1) and lie inside pyproject's ranges.
SERVICE_REQUIREMENTS = (
    "fastapi==0.163.2",
    "python-multipart==0.0.34",  # forms on POST /v1/tts
    "pydantic==2.14.4",
    "pydantic-settings==2.16.3",
    "numpy==1.26.4",
    "soundfile==0.14.0",
    "soxr==1.1.0",
    "av==18.1.0",
    "huggingface_hub==1.33.0",
)
# The image installs requirements/tts-image.lock: these, with every transitive dependency
# pinned too (`make locks` makes it from them; a test keeps the two in step).
IMAGE_REQUIREMENTS = (*GPU_REQUIREMENTS, *SERVICE_REQUIREMENTS)
IMAGE_LOCK = Path(__file__).resolve().parents[1] / "requirements" / "tts-image.lock"


class ModalDeployment(BaseSettings):
    """How the service is deployed; ``SAYBOT_MODAL_<FIELD>`` overrides each field.

    Read when this module is imported (``modal deploy`` reads decorators at
    import time, so unlike ``TTSSettings`` these cannot wait for ``main()``).
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    app_name: str = "saybot-tts"
    gpu: str = Field(default="L4", description="Modal GPU type: T4, L4, A10G, L40S, A100, H100…")
    scaledown_window_s: int = Field(
        default=300,
        ge=2,
        le=3600,
        description="idle seconds before a container stops; a warm one answers a "
        "chat command without a cold start, an idle one bills GPU seconds",
    )
    min_containers: int = Field(
        default=0, ge=0, description="containers kept warm around the clock (billed all month)"
    )
    max_containers: int = Field(
        default=3, ge=0, description="cap on GPUs running at once, a cost ceiling; 0 = no cap"
    )
    timeout_s: int = Field(
        default=600, ge=10, le=86_400, description="per request, and for a container's start"
    )
    max_inputs: int = Field(default=4, ge=1, description="requests one container accepts")
    target_inputs: int = Field(default=1, ge=1, description="what the autoscaler aims for")
    memory_snapshot: bool = True
    volume_name: str = "saybot-chatterbox-weights"
    weights_mount: str = "/weights"
    weights_revision: str = Field(default="main", description="hub branch, tag or commit")
    secret_name: str = Field(default="saybot-tts", description="holds TTS_API_TOKEN")

    @model_validator(mode="after")
    def _target_within_max(self) -> ModalDeployment:
        if self.target_inputs > self.max_inputs:
            raise ValueError(
                f"{ENV_PREFIX}TARGET_INPUTS ({self.target_inputs}) cannot exceed "
                f"{ENV_PREFIX}MAX_INPUTS ({self.max_inputs})"
            )
        return self

    @property
    def checkpoint_dir(self) -> str:
        return f"{self.weights_mount.rstrip('/')}/chatterbox"

    def deployment_env(self) -> dict[str, str | None]:
        """These settings as environment variables, so a container rebuilds the same object."""
        return {
            f"{ENV_PREFIX}{name.upper()}": str(value) for name, value in self.model_dump().items()
        }

    def service_env(self) -> dict[str, str | None]:
        """The service container's environment: Chatterbox from the volume, nothing from the hub."""
        return {
            **self.deployment_env(),
            "TTS_ENGINE": "chatterbox",
            "TTS_CHATTERBOX_CHECKPOINT_DIR": self.checkpoint_dir,
            "TTS_MAX_IN_FLIGHT": str(self.max_inputs),
            "HF_HUB_OFFLINE": "1",
        }


DEPLOYMENT = ModalDeployment()


def check_container_token(settings: TTSSettings) -> None:
    """A container serves a public URL: never without a token, never with a weak one."""
    create = f"modal secret create {DEPLOYMENT.secret_name} TTS_API_TOKEN=$({MAKE_TOKEN})"
    if secret_value(settings.api_token) is None:
        raise UnsafeBind(f"TTS_API_TOKEN is not set; create it with `{create}`")
    try:
        check_strong_token("TTS_API_TOKEN", settings.api_token, host=None)
    except WeakToken as exc:
        raise UnsafeBind(f"{exc}; replace it with `{create} --force`") from exc


image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(requirements=[str(IMAGE_LOCK)])  # read when the image is built
    .add_local_python_source("tts_service")  # the service as local source, not a wheel
)
weights_volume = modal.Volume.from_name(DEPLOYMENT.volume_name, create_if_missing=True)
api_token_secret = modal.Secret.from_name(DEPLOYMENT.secret_name, required_keys=["TTS_API_TOKEN"])

app = modal.App(DEPLOYMENT.app_name, image=image, include_source=False)


@app.function(
    volumes={DEPLOYMENT.weights_mount: weights_volume},
    env=DEPLOYMENT.deployment_env(),
    timeout=30 * 60,
)
def download_weights() -> str:
    """Fill the volume with the Chatterbox weights once (no GPU); returns their hub commit."""
    commit = download_checkpoint(Path(DEPLOYMENT.checkpoint_dir), DEPLOYMENT.weights_revision)
    weights_volume.commit()
    print(f"Chatterbox weights {commit} are in {DEPLOYMENT.volume_name}:/chatterbox")
    return commit


@app.cls(
    gpu=DEPLOYMENT.gpu,
    volumes={DEPLOYMENT.weights_mount: weights_volume},
    secrets=[api_token_secret],
    env=DEPLOYMENT.service_env(),
    scaledown_window=DEPLOYMENT.scaledown_window_s,
    min_containers=DEPLOYMENT.min_containers,
    max_containers=DEPLOYMENT.max_containers or None,
    timeout=DEPLOYMENT.timeout_s,
    enable_memory_snapshot=DEPLOYMENT.memory_snapshot,
)
@modal.concurrent(max_inputs=DEPLOYMENT.max_inputs, target_inputs=DEPLOYMENT.target_inputs)
class TTSService:
    """One engine per container, loaded once, behind the same app as ``saybot serve-tts``."""

    @modal.enter(snap=True)
    def import_engine(self) -> None:
        """Before the memory snapshot: build the engine and import torch and chatterbox."""
        self.engine = build_engine(TTSSettings())
        if isinstance(self.engine, ChatterboxEngine):
            self.engine.import_runtime()

    @modal.enter()
    def load_engine(self) -> None:
        """After restore: load the weights onto the GPU and build the app."""
        settings = TTSSettings()
        check_container_token(settings)
        self.engine.load()
        self.web_app = create_app(self.engine, settings)

    @modal.asgi_app()
    def web(self) -> FastAPI:
        return self.web_app


@app.local_entrypoint()
def smoke(text: str = "Hello from saybot on Modal.", out: str = "modal-smoke.ogg") -> None:
    """One real request to the deployed service, as the bots make it.

    Uses ``TTS_SERVICE_URL`` if set, else asks Modal for the deployed class's
    URL; ``TTS_API_TOKEN`` must be set in the local shell.
    """
    import os

    import httpx

    url = os.environ.get("TTS_SERVICE_URL") or (
        modal.Cls.from_name(DEPLOYMENT.app_name, "TTSService")().web.get_web_url()
    )
    headers = {"Authorization": f"Bearer {os.environ['TTS_API_TOKEN']}"}
    # A cold GPU takes a while; past 150 s Modal redirects to a result URL (followed here).
    with httpx.Client(headers=headers, timeout=DEPLOYMENT.timeout_s, follow_redirects=True) as http:
        response = http.post(f"{str(url).rstrip('/')}/v1/tts", json={"text": text})
    response.raise_for_status()
    Path(out).write_bytes(response.content)
    print(
        f"{url}: {response.headers['X-Audio-Duration']} s of audio from "
        f"{response.headers['X-Engine-Version']} → {out}"
    )
