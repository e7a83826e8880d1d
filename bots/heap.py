"""The heap after start-up: what exists then lives as long as the process.

Modules, settings, the clients, the local voice model: tens of thousands of objects that a
full (generation 2) collection walks again every time, for nothing, while a request waits
— the longest pauses of the cache-hit path (bench/bench_telegram.py under ``gcprobe``:
three full collections of 80–140 ms in a run). ``gc.freeze()`` moves them into a permanent
generation the collector never visits, so a collection walks only what requests made.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Once everything has started: collect what start-up left behind, then freeze the rest."""
    gc.collect()
    gc.freeze()
