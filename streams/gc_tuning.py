"""The garbage collector's settings for a detector worker (issue #10).

A worker holds a large, long-lived heap (every sensor's checks, the rules,
Faust's and aiokafka's objects) and allocates many short-lived ones per
record. With CPython's default thresholds (700, 10, 10) the collector runs
hundreds of times while a worker reads a backlog, and its full collections
scan the whole heap each time: 0.27-0.46 s of CPU for 60 k readings of 300
sensors (5-8 µs a reading), measured with ``gc.callbacks`` in the
``bench/bench_streams.py`` set-up.

:func:`tune_gc` moves what exists once the worker is started (modules, the
app, the rules) out of the collector's sight (``gc.freeze``) and raises the
thresholds, so young collections are rarer and a full one is not triggered
by the worker's steady allocation of readings and findings. Reference
counting still frees every acyclic object at once; only reference cycles wait
longer for a collection.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["WORKER_GC_THRESHOLDS", "tune_gc"]

log = logging.getLogger(__name__)

#: (generation 0, 1, 2) thresholds of a worker process (CPython's defaults: 700, 10, 10)
WORKER_GC_THRESHOLDS = (50_000, 50, 100)


def tune_gc(thresholds: tuple[int, int, int] = WORKER_GC_THRESHOLDS) -> None:
    """Freeze the objects alive now and raise the collector's thresholds (process-wide).

    Never lowers a threshold the host process set higher, and leaves a
    collector switched off by a threshold of 0 off.
    """
    current = gc.get_threshold()
    wanted = current if current[0] == 0 else tuple(max(a, b) for a, b in zip(current, thresholds))
    gc.freeze()
    gc.set_threshold(*wanted)
    log.debug("garbage collector: %d objects frozen, thresholds %s", gc.get_freeze_count(), wanted)
