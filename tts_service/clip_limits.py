"""What a reference clip may be, checked before and while it is decoded.

A clip's size says little about what decoding it costs: 715 KB of FLAC hold 30
minutes of 8-channel silence (2.8 GB as float32), and one Ogg page can claim a
thousand hours in eight bytes. So a clip is judged in three bounded steps:

1. its metadata (``check_stream``): the channel count, the sample rate and the
   length the container declares are refused before a sample is decoded;
2. its decoding, under a ``FrameBudget``: a container may lie about its length or
   not know it (a live WebM, a FLAC with no sample count), so the frames are counted
   as they come out of the decoder and the clip is refused the moment it passes
   ``MAX_DECODED_S``; the decoder downmixes and resamples block by block, so what is
   held is at most that budget in mono at the engine's rate;
3. the number of decodes at once per process (``DECODE_SLOTS``).

Every refusal is a ``ReferenceAudioError`` with one sentence the user can act on.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tts_service.errors import ReferenceAudioError

MIN_REFERENCE_S = 1.0
MAX_REFERENCE_S = 60.0
# Silence is trimmed only after decoding, so a clip may run this long before trimming
# (the exact 1…60 s check of the speech follows the trim).
MAX_DECODED_S = 2 * MAX_REFERENCE_S
MAX_CHANNELS = 8  # 7.1; phones record mono or stereo, a video's soundtrack may have 6
MIN_SAMPLE_RATE = 8_000  # narrowband telephone audio, the lowest any recorder uses
MAX_SAMPLE_RATE = 192_000  # the studio ceiling; beyond it a "voice clip" is a crafted file
# Each decode holds a block and up to MAX_DECODED_S of mono audio (~12 MB at 24 kHz) and
# a core; a burst of clips waits its turn instead of multiplying both.
MAX_CONCURRENT_DECODES = 2


def length_message(duration_s: float) -> str:
    """The clip's speech, trimmed, is outside MIN_REFERENCE_S…MAX_REFERENCE_S."""
    return (
        f"the voice clip has {duration_s:.1f} s of speech; it needs between "
        f"{MIN_REFERENCE_S:g} and {MAX_REFERENCE_S:g} seconds"
    )


def _too_long_message(said: str) -> str:
    return (
        f"the voice clip {said}; it needs between {MIN_REFERENCE_S:g} and "
        f"{MAX_REFERENCE_S:g} seconds of speech"
    )


def check_stream(channels: int, sample_rate: int, declared_s: float | None) -> None:
    """Refuse a clip on what its container says, before decoding any of it.

    ``sample_rate`` 0 and ``declared_s`` None mean the container does not say; the
    rate is then checked on the first decoded block and the length by ``FrameBudget``.
    """
    if channels > MAX_CHANNELS:
        raise ReferenceAudioError(
            f"the voice clip has {channels} channels; send a mono or stereo clip"
        )
    if sample_rate:
        check_sample_rate(sample_rate)
    if declared_s is not None and declared_s > MAX_DECODED_S:
        raise ReferenceAudioError(_too_long_message(f"lasts {declared_s:.0f} s"))


def check_sample_rate(sample_rate: int) -> None:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ReferenceAudioError(
            f"the voice clip's sample rate ({sample_rate} Hz) is not one a voice clip has; "
            f"record at {MIN_SAMPLE_RATE // 1000} to {MAX_SAMPLE_RATE // 1000} kHz"
        )


class FrameBudget:
    """Counts decoded frames at ``sample_rate``; refuses past ``MAX_DECODED_S`` of them."""

    def __init__(self, sample_rate: int) -> None:
        self.max_frames = math.floor(MAX_DECODED_S * sample_rate)
        self.frames = 0

    def take(self, frames: int) -> None:
        """Count ``frames`` more; call it before keeping them, so nothing past the budget is."""
        self.frames += frames
        if self.frames > self.max_frames:
            raise ReferenceAudioError(_too_long_message(f"is longer than {MAX_DECODED_S:g} s"))


class DecodeSlots:
    """At most ``limit`` decodes at once; the rest wait for a slot.

    Waiting, not refusing: every decode is short (its ``FrameBudget`` bounds it to a
    couple of minutes of audio, about a second of CPU), so a wait is bounded by the
    decodes ahead of it, and the sender of a good clip did nothing to be refused for.
    The callers bound how many can queue: the service's in-flight limit, the bots'
    per-user rate limit. ``busy`` and ``waiting`` are there to be observed (tests, logs).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0
        self.waiting = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Blocking: wait for a slot, hold it for the ``with`` body."""
        with self._changed:
            self.waiting += 1
            self._changed.notify_all()
            self._changed.wait_for(lambda: self.busy < self.limit)
            self.waiting -= 1
            self.busy += 1
            self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self.busy -= 1
                self._changed.notify_all()

    def wait_for(self, predicate: Callable[[DecodeSlots], bool], timeout_s: float) -> bool:
        """Blocking: True once ``predicate(self)`` holds, False after ``timeout_s``."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout_s)


DECODE_SLOTS = DecodeSlots(MAX_CONCURRENT_DECODES)
