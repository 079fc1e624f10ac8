"""streams.metrics.ReadingsTally: a batch's metrics from plain values, no reading kept alive to the batch's end."""

from __future__ import annotations

import gc
import weakref

import pytest

from cityeye.contracts import Reading
from streams import metrics
from streams.batch import Batch


def _reading(sid: str, kind: str, ts: float, received_at: float) -> Reading:
    return Reading(sid, kind, "d1", ts, {"level_m": 1.0}, received_at, f"cityeye/d1/{kind}/{sid}")


def test_a_batch_keeps_none_of_its_readings_alive():
    batch = Batch()
    record = [_reading(f"wl-{i}", "water_level", 100.0 + i, 101.0 + i) for i in range(3)]
    refs = [weakref.ref(r) for r in record]
    batch.done.add(record)
    del record
    gc.collect()
    assert all(ref() is None for ref in refs)  # the batch holds their kinds and times only
    assert batch.done.kinds == ["water_level"] * 3 and batch.done.ts == [100.0, 101.0, 102.0]


def test_the_tally_counts_what_observe_readings_counted():
    now = 10_000.0
    batch = Batch()
    batch.done.add([_reading("wl-1", "water_level", now - 60, now - 0.25),
                    _reading("wl-2", "water_level", now - 5, now - 0.5)])
    batch.done.add([_reading("tr-1", "traffic", now - 1, now + 3)])  # a receipt ahead of now counts as 0
    readings = metrics.READINGS.labels("water_level")._value.get(), metrics.READINGS.labels("traffic")._value.get()
    latency, age = metrics.WORKER_LATENCY._sum, metrics.READING_AGE._sum
    batch.done.observe(now - 1.0, now)
    assert metrics.READINGS.labels("water_level")._value.get() == readings[0] + 2
    assert metrics.READINGS.labels("traffic")._value.get() == readings[1] + 1
    assert metrics.WORKER_LATENCY._sum - latency == pytest.approx(0.75)
    assert metrics.READING_AGE._sum - age == pytest.approx(66.0)
