"""The sink interface: buffer items, write them in batches, report the outcome.

Modelled on quix-streams' ``BatchingSink``: the consumer loop calls
:meth:`BaseSink.add` for each decoded item and :meth:`BaseSink.flush` when
:attr:`BaseSink.due` says a batch is full or old enough. ``flush`` either

* returns the items the destination refused for good (a
  :class:`Rejected` each: bad data that no retry will fix; the caller
  dead-letters them), having written or handed off everything else, or
* raises :class:`SinkWriteError` (destination down, timeout, 5xx): the
  buffer is kept as it was, so the caller must neither commit its offsets
  nor drop anything; it retries ``flush`` later or, on shutdown, leaves the
  offsets uncommitted so the items are read again after a restart.
"""

from __future__ import annotations

import abc
import asyncio
import time
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cityeye.errors import CityEyeError

__all__ = ["BaseSink", "Rejected", "SinkWriteError"]

T = TypeVar("T")


class SinkWriteError(CityEyeError):
    """A batch could not be written now; try again (the buffer is intact)."""


@dataclass
class Rejected(Generic[T]):
    """An item the destination refused for good, with the reason."""

    item: T
    reason: str
    status: int | None = None


class BaseSink(abc.ABC, Generic[T]):
    """Buffers items and writes them in batches of ``batch_size`` or every ``flush_interval_s``.

    Subclasses implement :meth:`write`; ``name`` identifies the sink in
    consumer group ids, logs and dead letters.
    """

    name: str = "sink"

    def __init__(self, batch_size: int = 500, flush_interval_s: float = 1.0) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be positive")
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._buffer: list[T] = []
        self._first_added: float | None = None
        #: set by the consumer on shutdown: a sink waiting to retry gives up
        #: (raising :class:`SinkWriteError`) instead of delaying the stop
        self.stop_event: asyncio.Event | None = None

    def add(self, item: T) -> None:
        """Buffer ``item`` for the next flush."""
        if not self._buffer:
            self._first_added = time.monotonic()
        self._buffer.append(item)

    def __len__(self) -> int:
        return len(self._buffer)

    @property
    def due(self) -> bool:
        """True when the buffer is full or its oldest item waited ``flush_interval_s``."""
        return bool(self._buffer) and (len(self._buffer) >= self.batch_size or self.seconds_until_due() <= 0)

    def seconds_until_due(self) -> float:
        """How long until the buffer is due by age (the interval when it is empty)."""
        if self._first_added is None or not self._buffer:
            return self.flush_interval_s
        return max(0.0, self._first_added + self.flush_interval_s - time.monotonic())

    async def flush(self) -> list[Rejected[T]]:
        """Write the buffer; return the refused items; raise :class:`SinkWriteError` to retry.

        On success the buffer is emptied; on :class:`SinkWriteError` it is
        left exactly as it was.
        """
        if not self._buffer:
            return []
        batch = list(self._buffer)
        rejected = await self.write(batch)
        self.discard()
        return rejected

    def discard(self) -> None:
        """Drop the buffer (the caller will read these items again, e.g. after a rebalance)."""
        self._buffer.clear()
        self._first_added = None

    @abc.abstractmethod
    async def write(self, batch: list[T]) -> list[Rejected[T]]:
        """Write ``batch``; return refused items; raise :class:`SinkWriteError` on a transient failure."""

    async def pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopping; True if the sink should give up now."""
        if self.stop_event is None:
            await asyncio.sleep(seconds)
            return False
        try:
            await asyncio.wait_for(self.stop_event.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    async def start(self) -> None:
        """Open connections (called once before the first :meth:`add`)."""

    async def close(self) -> None:
        """Release connections (the buffer is not flushed: the caller decides)."""

    def describe(self) -> dict[str, Any]:
        """What the sink writes to, for logs (never secrets)."""
        return {"sink": self.name}
