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
    download. With CPU memory snapshots on (the default), the snapshot holds an
    imported torch and nothing that asks it about CUDA: no GPU is attached while
    Modal takes the snapshot, and torch remembers the device count it first sees,
    so importing chatterbox (transformers asks) there would leave a restored
    container believing it has no GPU. chatterbox is imported and the model loaded
    onto the GPU after restore; the container runs with
    ``TTS_CHATTERBOX_DEVICE=cuda``, and the engine refuses to start on anything else.
    ``SAYBOT_MODAL_GPU_SNAPSHOT=true`` opts in to Modal's GPU snapshots (alpha; restore
    crashes have been reported on H100): the model is then loaded before the snapshot.

Long requests
    Modal answers a web request still running after 150 s with a 303 redirect
    to a result URL that blocks until the answer is ready; the bots' client
    follows redirects (``bots/tts_client.py``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import modal
from fastapi import FastAPI
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tts_service.api import UnsafeBind, create_app
from tts_service.engines import build_engine
from tts_service.engines.chatterbox import ChatterboxEngine
from tts_service.engines.chatterbox_variants import variant
from tts_service.engines.chatterbox_weights import download_checkpoint
from tts_service.exposure import MAKE_TOKEN, WeakToken, check_strong_token, secret_value
from tts_service.image_packages import (
    IMAGE_LOCK,
    UV_VERSION,
)
from tts_service.settings import TTSSettings

ENV_PREFIX = "SAYBOT_MODAL_"


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
    gpu_snapshot: bool = Field(
        default=False,
        description="Modal's GPU memory snapshots (alpha): the model loaded before the "
        "snapshot; off by default, as restores have crashed on some GPUs",
    )
    chatterbox_model: Literal["original", "multilingual", "turbo"] = Field(
        default="original",
        description="which Chatterbox the containers serve (TTS_CHATTERBOX_MODEL there); "
        "download_weights fills the volume with that model's weights",
    )
    volume_name: str = "saybot-chatterbox-weights"
    weights_mount: str = "/weights"
    weights_revision: str = Field(
        default="main",
        description="hub branch, tag or commit that download_weights fetches (it prints "
        "the commit; set that here to pin it)",
    )
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
        """One directory per model on the volume (the original's is where it always was)."""
        suffix = "" if self.chatterbox_model == "original" else f"-{self.chatterbox_model}"
        return f"{self.weights_mount.rstrip('/')}/chatterbox{suffix}"

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
            "TTS_CHATTERBOX_MODEL": self.chatterbox_model,
            "TTS_CHATTERBOX_CHECKPOINT_DIR": self.checkpoint_dir,
            "TTS_CHATTERBOX_DEVICE": "cuda",  # never a silent fallback to the CPU
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
    # Exactly the lock, resolved by nobody: chatterbox-tts goes in without its own pins
    # (tts_service/image_packages.py says why), with the uv release the tier uses.
    .uv_pip_install(
        requirements=[str(IMAGE_LOCK)], extra_options="--no-deps", uv_version=UV_VERSION
    )
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
    """Fill the volume with the chosen Chatterbox model's weights once (no GPU), with
    Multilingual's Chinese mapping where its tokenizer finds it offline; returns their hub
    commit."""
    model = variant(DEPLOYMENT.chatterbox_model)
    target = Path(DEPLOYMENT.checkpoint_dir)
    commit = download_checkpoint(target, DEPLOYMENT.weights_revision, model)
    weights_volume.commit()
    where = target.relative_to(DEPLOYMENT.weights_mount)
    print(f"Chatterbox {model.name} weights {commit} are in {DEPLOYMENT.volume_name}:/{where}")
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
    enable_memory_snapshot=DEPLOYMENT.memory_snapshot or DEPLOYMENT.gpu_snapshot,
    experimental_options={"enable_gpu_snapshot": True} if DEPLOYMENT.gpu_snapshot else None,
)
@modal.concurrent(max_inputs=DEPLOYMENT.max_inputs, target_inputs=DEPLOYMENT.target_inputs)
class TTSService:
    """One engine per container, loaded once, behind the same app as ``saybot serve-tts``."""

    @modal.enter(snap=True)
    def import_engine(self) -> None:
        """Before the memory snapshot: build the engine and import torch (not chatterbox);
        with GPU snapshots, load the model too (the GPU is there while they are taken)."""
        self.engine = build_engine(TTSSettings())
        if isinstance(self.engine, ChatterboxEngine):
            self.engine.import_runtime()
            if DEPLOYMENT.gpu_snapshot:
                self.engine.load()

    @modal.enter()
    def load_engine(self) -> None:
        """After restore: load the weights onto the GPU (unless a GPU snapshot holds them)
        and build the app, which says on every answer when this happened (``cold_start``)."""
        entered = time.time()
        settings = TTSSettings()
        check_container_token(settings)
        self.engine.load()
        self.web_app = create_app(self.engine, settings)
        add_container_timings(self.web_app, entered, time.time())

    @modal.asgi_app()
    def web(self) -> FastAPI:
        return self.web_app


ENTERED_HEADER = "X-Container-Entered-At"  # when the container (or its restore) began
LOADED_HEADER = "X-Model-Loaded-At"  # when its model was ready; both seconds since the epoch


def add_container_timings(web_app: FastAPI, entered: float, loaded: float) -> None:
    """Every answer says when its container started and loaded, so ``cold_start`` can tell
    a cold container's answer from a warm one's. Modal only: the app itself knows nothing
    of containers."""
    timings = {ENTERED_HEADER: f"{entered:.3f}", LOADED_HEADER: f"{loaded:.3f}"}

    @web_app.middleware("http")
    async def container_timings(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers.update(timings)
        return response


def deployed_client() -> tuple[str, Any]:
    """The deployed service's URL and an HTTP client with its bearer token (the shell's
    ``TTS_API_TOKEN``); ``TTS_SERVICE_URL`` wins over asking Modal for the URL."""
    import os

    import httpx

    url = os.environ.get("TTS_SERVICE_URL") or (
        modal.Cls.from_name(DEPLOYMENT.app_name, "TTSService")().web.get_web_url()
    )
    if not url:  # get_web_url() is None when the app is not deployed (or not a web endpoint)
        raise SystemExit(
            f"no URL for {DEPLOYMENT.app_name}: deploy it first (`modal deploy -m "
            "tts_service.modal_app`) or set TTS_SERVICE_URL"
        )
    token = os.environ.get("TTS_API_TOKEN", "").strip()
    if not token:
        raise SystemExit("set TTS_API_TOKEN in this shell: the deployment's bearer token")
    headers = {"Authorization": f"Bearer {token}"}
    # A cold GPU takes a while; past 150 s Modal redirects to a result URL (followed here).
    http = httpx.Client(headers=headers, timeout=DEPLOYMENT.timeout_s, follow_redirects=True)
    return str(url).rstrip("/"), http


@app.local_entrypoint()
def cold_start(text: str = "Cold start.") -> None:
    """A cold start as Modal serves it: from a request sent while no container runs to its
    answer (container start or snapshot restore, model load, synthesis), then a warm
    request for comparison. One JSON line; ``"cold": false`` when a warm container
    answered (send nothing for ``SAYBOT_MODAL_SCALEDOWN_WINDOW_S`` seconds and run again).

        modal run -m tts_service.modal_app::cold_start
    """
    import json

    url, http = deployed_client()
    with http:
        sent = time.time()
        first = http.post(f"{url}/v1/tts", json={"text": text})
        answered = time.time()
        second = http.post(f"{url}/v1/tts", json={"text": text, "seed": 1})
        warm_s = time.time() - answered
    entered = float(first.headers.get(ENTERED_HEADER, "0"))
    loaded = float(first.headers.get(LOADED_HEADER, "0"))
    cold = entered >= sent - 1.0  # the container began after the request (1 s clock skew)
    line = {
        "ok": first.status_code == second.status_code == 200 and cold,
        "cold": cold,
        "cold_start_s": round(answered - sent, 3),
        "container_began_after_s": round(entered - sent, 3) if cold else None,
        "model_load_s": round(loaded - entered, 3) if cold else None,
        "warm_request_s": round(warm_s, 3),
        "status": [first.status_code, second.status_code],
        "gpu": DEPLOYMENT.gpu,
        "model": DEPLOYMENT.chatterbox_model,
        "memory_snapshot": DEPLOYMENT.memory_snapshot,
        "gpu_snapshot": DEPLOYMENT.gpu_snapshot,
        "engine": first.headers.get("X-Engine-Version"),
    }
    print(json.dumps(line))


@app.local_entrypoint()
def smoke(text: str = "Hello from saybot on Modal.", out: str = "modal-smoke.ogg") -> None:
    """One real request to the deployed service, as the bots make it.

    Uses ``TTS_SERVICE_URL`` if set, else asks Modal for the deployed class's
    URL; ``TTS_API_TOKEN`` must be set in the local shell.
    """
    url, http = deployed_client()
    with http:
        response = http.post(f"{url}/v1/tts", json={"text": text})
    response.raise_for_status()
    Path(out).write_bytes(response.content)
    print(
        f"{url}: {response.headers['X-Audio-Duration']} s of audio from "
        f"{response.headers['X-Engine-Version']} → {out}"
    )
