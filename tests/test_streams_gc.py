"""streams.gc_tuning: the worker's collector settings (raised, never lowered, off stays off)."""

from __future__ import annotations

import gc

import pytest

from streams.gc_tuning import WORKER_GC_THRESHOLDS, tune_gc


@pytest.fixture
def thresholds():
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_tune_gc_freezes_the_heap_and_raises_the_thresholds(thresholds):
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_threshold() == WORKER_GC_THRESHOLDS and gc.get_freeze_count() > 0


def test_tune_gc_never_lowers_a_higher_threshold_nor_switches_an_off_collector_on(thresholds):
    gc.set_threshold(100_000, 10, 1_000)
    tune_gc()
    assert gc.get_threshold() == (100_000, WORKER_GC_THRESHOLDS[1], 1_000)
    gc.set_threshold(0, 10, 10)
    tune_gc()
    assert gc.get_threshold() == (0, 10, 10)
