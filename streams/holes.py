"""Telling a hole at the end of a partition from a backlog the stream has not delivered yet.

On the clock tick the worker looks at each readings partition whose next
offset (the one the stream must deliver next) stayed put for a whole tick
while the high watermark is beyond it. Two different things look like that:

* a **hole**: Faust's consumer handed the records to the stream and the
  stream dropped them (Faust clears its stream queues when flow resumes
  after a rebalance, and skips, without tracking them, the messages of an
  older generation). Nothing will ever deliver them: they must be read
  directly;
* a **backlog**: the records are still on their way: not yet handed to the
  stream by Faust's consumer (``consumer._read_offset``: the offset of the
  last message it gave the conductor, or the committed offset after a
  seek), waiting in the agent's channel queue, or taken by the stream
  (``app.monitor.tp_read_offsets``: set as the stream takes a message from
  its channel) and waiting in its batch or for the runtime's lock. They
  will come; a record beyond the next offset then reveals any hole before
  it (``DetectorRuntime._process_skipped``).

:func:`dropped_range` says which offsets, if any, are a hole. Reading a
figure Faust does not know yet (a partition not fetched yet) counts as
"still on its way".
"""

from __future__ import annotations

from typing import Any

from faust.types import TP

__all__ = ["dropped_range", "queued_last_offset", "forget_taken"]


def queued_last_offset(app: Any, tp: TP) -> int | None:
    """The highest offset of ``tp`` waiting in the stream channels' queues, None if none is."""
    last: int | None = None
    for channel in getattr(app.topics, "_tp_index", {}).get(tp, ()):
        queue = getattr(getattr(channel, "_queue", None), "_queue", None) or ()
        for event in list(queue):
            message = getattr(event, "message", None)
            if message is not None and message.tp == tp and (last is None or message.offset > last):
                last = message.offset
    return last


def forget_taken(app: Any, tp: TP) -> None:
    """Forget what the stream took of a revoked partition.

    The monitor keeps a partition's last taken offset across a revocation; if
    the partition comes back and the stream drops everything it is handed, that
    stale figure (possibly past the new next offset) would hide the hole.
    """
    app.monitor.tp_read_offsets.pop(tp, None)


def dropped_range(app: Any, tp: TP, expected: int, highwater: int | None) -> tuple[int, int] | None:
    """The offsets ``[start, end)`` of ``tp`` that Faust handed to the stream and the stream dropped.

    ``expected`` is the offset the stream must deliver next. None when no
    record at or past it is known lost: not handed to the stream yet (a
    backlog), still queued for it, or taken by it (it will come and reveal
    any hole before it).
    """
    if highwater is None or highwater <= expected:
        return None
    handed = getattr(app.consumer, "_read_offset", {}).get(tp)
    if handed is None or handed < expected:
        return None  # Faust's consumer has not given the stream anything at or past the next offset
    taken = app.monitor.tp_read_offsets.get(tp)
    if taken is not None and taken >= expected:
        return None  # the stream took a record at or past it: on its way to the runtime
    queued = queued_last_offset(app, tp)
    if queued is not None and queued >= expected:
        return None
    return expected, min(handed + 1, highwater)
