"""streams.holes: which offsets the clock tick reads directly, on Faust's figures.

The worker tests (tests/test_streams_gaps.py) run a real worker; here each
case of the decision has its own figures: handed by Faust's consumer, queued
in the stream's channel, taken by the stream.
"""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

from faust.types import TP

from streams.holes import dropped_range, forget_taken, queued_last_offset

TP0, TP1 = TP("readings.water_level", 0), TP("readings.water_level", 1)


def _event(tp: TP, offset: int) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(tp=tp, offset=offset))


def _app(handed: dict, taken: dict, queued: list | None = None) -> SimpleNamespace:
    channel = SimpleNamespace(_queue=SimpleNamespace(_queue=deque(queued or [])))
    return SimpleNamespace(consumer=SimpleNamespace(_read_offset=handed),
                           monitor=SimpleNamespace(tp_read_offsets=taken),
                           topics=SimpleNamespace(_tp_index={TP0: [channel], TP1: [channel]}))


def test_records_handed_to_the_stream_and_not_taken_nor_queued_are_a_hole():
    app = _app(handed={TP0: 19}, taken={TP0: 9})
    assert dropped_range(app, TP0, 10, highwater=30) == (10, 20)


def test_the_hole_ends_at_the_high_watermark():
    app = _app(handed={TP0: 40}, taken={})
    assert dropped_range(app, TP0, 10, highwater=30) == (10, 30)


def test_records_not_handed_to_the_stream_yet_are_a_backlog():
    assert dropped_range(_app(handed={TP0: 9}, taken={TP0: 9}), TP0, 10, highwater=30) is None
    assert dropped_range(_app(handed={}, taken={}), TP0, 10, highwater=30) is None


def test_records_the_stream_took_are_on_their_way():
    assert dropped_range(_app(handed={TP0: 19}, taken={TP0: 12}), TP0, 10, highwater=30) is None


def test_records_queued_for_the_stream_are_on_their_way():
    queued = [_event(TP1, 50), _event(TP0, 11), _event(TP0, 12)]
    app = _app(handed={TP0: 19}, taken={TP0: 9}, queued=queued)
    assert queued_last_offset(app, TP0) == 12
    assert dropped_range(app, TP0, 10, highwater=30) is None
    # another partition's queued records do not hide this one's hole
    assert dropped_range(_app(handed={TP0: 19}, taken={TP0: 9}, queued=[_event(TP1, 50)]), TP0, 10, 30) == (10, 20)


def test_nothing_past_the_high_watermark_or_unknown_is_read():
    assert dropped_range(_app(handed={TP0: 19}, taken={}), TP0, 10, highwater=None) is None
    assert dropped_range(_app(handed={TP0: 19}, taken={}), TP0, 30, highwater=30) is None


def test_a_revoked_partitions_taken_offset_is_forgotten():
    """A stale taken offset from an earlier assignment would hide a hole once the partition is back."""
    app = _app(handed={TP0: 19}, taken={TP0: 25, TP1: 3})
    assert dropped_range(app, TP0, 10, highwater=30) is None
    forget_taken(app, TP0)
    assert dropped_range(app, TP0, 10, highwater=30) == (10, 20) and app.monitor.tp_read_offsets == {TP1: 3}
