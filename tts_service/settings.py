"""Settings of the TTS service, read from the environment (prefix ``TTS_``) or ``.env``.

Built in ``main()`` or by the caller of ``create_app``; never at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tts_service.schema import MAX_REFERENCE_BYTES


class TTSSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTS_", env_file=".env", extra="ignore")

    api_token: SecretStr | None = Field(
        default=None, description="Bearer token required on every endpoint but /healthz."
    )
    engine: Literal["piper", "chatterbox"] = "piper"
    host: str = "127.0.0.1"
    port: int = 8088

    # Back-pressure: at most this many synthesis requests at once (running or waiting
    # for the engine); the next one gets 503 + Retry-After instead of an unbounded queue.
    max_in_flight: int = Field(default=4, ge=1)
    busy_retry_after_s: int = Field(default=2, ge=1)
    max_request_bytes: int = Field(
        default=MAX_REFERENCE_BYTES * 4 // 3 + 64 * 1024,  # a base64 clip at the cap, plus JSON
        ge=1024,
    )

    # Piper: onnxruntime takes every core by default, which starves the bots on a
    # small box; 0 means "let onnxruntime decide".
    onnx_threads: int = Field(default=max(1, min(4, os.cpu_count() or 1)), ge=0)
    # Piper syntheses running at once (the rest wait, within max_in_flight); 0 = as many
    # as the cores hold at onnx_threads each. See docs/performance.md for an N-core machine.
    parallel_syntheses: int = Field(default=0, ge=0)
    # Piper: seconds without a synthesis before the memory its long sentences took is given
    # back (tts_service/engines/piper_memory.py); 0 keeps it.
    idle_release_s: float = Field(default=30.0, ge=0)

    # Chatterbox (GPU). A local checkpoint wins over the hub; the hub cache can live
    # on a volume so containers never download the weights.
    chatterbox_model: Literal["original", "multilingual", "turbo"] = Field(
        default="original",
        description="original: English, the first Chatterbox; multilingual: 23 languages "
        "(the language parameter); turbo: English, faster, paralinguistic tags like [laugh]",
    )
    chatterbox_checkpoint_dir: Path | None = None
    chatterbox_hub_cache_dir: Path | None = None
    chatterbox_device: str | None = Field(
        default=None, description="cuda, mps or cpu; unset picks the best available."
    )
    chatterbox_conds_cache_size: int = Field(default=16, ge=1)
