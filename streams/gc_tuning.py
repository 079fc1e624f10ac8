"""The garbage collector's settings for a detector worker (issue #10).

A worker holds a large, long-lived heap (the rules, Faust's and aiokafka's
objects, every sensor's checks) and allocates many short-lived ones per
record. With CPython's defaults the collector ran ~490 times in a worker's
life in the ``bench/bench_streams.py`` set-up (300 sensors, 60 k readings),
0.43-0.56 s of CPU (``gc.callbacks``), its full collections scanning the
whole start-up heap each time.

:func:`tune_gc` moves what exists once the worker is started out of the
collector's sight (``gc.freeze``: later full collections skip it) and raises
the thresholds somewhat, so young collections are rarer and full ones are not
triggered by the worker's steady allocation of readings and findings. What it
paid, the Faust worker with the default detectors in that set-up, CPU µs a
reading, runs alternated (load average 6-10, so noisy): defaults 32.2 / 33.4
/ 31.8 / 32.8 / 32.0 / 33.9 / 33.6, frozen with (50 000, 50, 100) 28.5 / 31.3
/ 30.5 / 29.2 / 31.1 / 30.7 / 33.3, frozen with (5 000, 20, 100) 30.0 / 31.5,
frozen with the default thresholds 31.2 / 30.3: the freeze is most of it.
Reference counting still frees every acyclic object at once; only reference
cycles wait longer for a collection.

The settings are the whole process's, so only a worker with a process of its
own applies them (``StreamsWorker(dedicated_process=True)``: ``cityeye
worker``); a worker started inside another program leaves its collector alone.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["WORKER_GC_THRESHOLDS", "tune_gc"]

log = logging.getLogger(__name__)

#: (generation 0, 1, 2) thresholds of a worker process (CPython's defaults: 700, 10, 10)
WORKER_GC_THRESHOLDS = (5_000, 20, 100)


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
