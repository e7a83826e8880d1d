"""Memory a Piper voice gives back once it has been idle a while.

onnxruntime's CPU arena keeps every block it ever needed: after long sentences spoken side
by side, the service holds a gigabyte it no longer uses (measured: 326 MiB → 1,250–1,350 MiB
over 40 long texts from two threads, and it stays there). Shrinking the arena after every
run gives it back at once, but every next synthesis then pays for its allocations again
(6–19 % slower in the same test). So the voice waits until nothing has been spoken for
``idle_s``, then runs one tiny inference with arena shrinkage on and asks glibc to return
the freed pages (``malloc_trim``): busy periods keep their memory, idle ones give it back
(measured: 1,300 MiB → ~230 MiB).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from piper import PiperVoice

log = logging.getLogger(__name__)

SHRINK_ARENA = "memory.enable_memory_arena_shrinkage"  # onnxruntime's run option


def give_memory_back(voice: PiperVoice) -> None:
    """One tiny inference that shrinks the CPU arena, then freed heap pages to the OS.

    Blocks still used by a synthesis running meanwhile are kept: only unused ones go.
    """
    import onnxruntime

    options = onnxruntime.RunOptions()
    options.add_run_config_entry(SHRINK_ARENA, "cpu:0")
    ids = voice.phonemes_to_ids(["a"])
    feeds = {
        "input": np.array([ids], dtype=np.int64),
        "input_lengths": np.array([len(ids)], dtype=np.int64),
        "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32),  # noise-free, normal speed
    }
    if voice.config.num_speakers > 1:
        feeds["sid"] = np.array([voice.config.default_speaker_id or 0], dtype=np.int64)
    voice.session.run(None, feeds, options)
    with contextlib.suppress(OSError, AttributeError):  # not glibc: its allocator decides
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class Speaking:
    """How many syntheses are speaking now, requests' own and helpers; a helper starts only
    while fewer than ``parallel`` are. ``idle_s`` after the last one stops (0: never),
    ``when_idle`` runs in a timer thread, unless speaking began again meanwhile."""

    def __init__(
        self, parallel: int, idle_s: float = 0.0, when_idle: Callable[[], None] | None = None
    ) -> None:
        self.parallel = parallel
        self.now = 0
        self._lock = threading.Lock()
        self._idle_s, self._when_idle = idle_s, when_idle
        self._timer: threading.Timer | None = None
        self._quiet_since = 0  # bumped whenever speaking begins: a stale timer does nothing

    @contextlib.contextmanager
    def speaking(self) -> Iterator[None]:
        with self._lock:
            self._begin()
        try:
            yield
        finally:
            self.give_back()

    def borrow(self) -> bool:
        """One more speaker, if a core is free: never waits."""
        with self._lock:
            if self.now >= self.parallel:
                return False
            self._begin()
            return True

    def give_back(self) -> None:
        with self._lock:
            self.now -= 1
            if self.now == 0 and self._idle_s and self._when_idle is not None:
                timer = threading.Timer(self._idle_s, self._if_still_idle, [self._quiet_since])
                timer.daemon = True
                timer.start()
                self._timer = timer

    def _begin(self) -> None:
        self.now += 1
        self._quiet_since += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _if_still_idle(self, quiet_since: int) -> None:
        with self._lock:
            if self.now or quiet_since != self._quiet_since:
                return
        assert self._when_idle is not None
        try:
            self._when_idle()
        except Exception:  # a failed release only keeps the memory
            log.exception("could not give idle memory back")
