"""A Faust app whose Kafka consumer takes its fetch wait and its end offsets from configuration.

Faust 0.15's aiokafka driver hard-codes ``fetch_max_wait_ms=1500`` for the
worker's consumer. On a broker that holds a fetch for the full wait whenever
some partition is idle (Tansu, see docs/streams.md) that costs up to 1.5 s
per hop and caps throughput, so :class:`CityEyeFaustApp` takes
``fetch_max_wait_ms`` as a keyword (from
:attr:`cityeye.config.KafkaSettings.fetch_max_wait_ms`) and hands it to the
consumer before it starts.

Faust's table manager also sleeps a fixed second at start before it
finalizes the tables and starts their recovery ("tables may still be
declared"); every table of this app is declared when the app is built
(streams/app.py), so :class:`CityEyeTableManager` starts at once: a worker
is ready a second sooner (the broker rollover's hand-over waits for it).

Faust's table recovery reads each changelog partition up to its end offset,
which it asks with ListOffsets. A broker whose ListOffsets counts batches
instead of records (Tansu: the last batch's base offset + 1) makes recovery
stop early and restore stale values when a batch holds several records.
With ``fetch_end_offsets`` (the Kafka settings of such a broker) the end
offsets come from Fetch high watermarks instead
(:func:`cityeye.kafka.fetched_end_offsets`), which are exact, so the
producer may batch changelog records.

Faust's consumer hands each record to the streams through
``Service.wait_first``, four tasks a record; :class:`_Consumer` runs the
delivery's first step at once (streams/eager.py) and makes the tasks only
when it has to wait (the stream's queue full, the flow suspended).

Faust commits a partition's offset up to its last consecutive acknowledged
message. The worker writes snapshots in the background
(streams/snapshot_writer.py), and a reading's offset must not be committed
before the snapshots that batch made necessary are in the broker, so the
consumer lowers every commit to what each of
:attr:`CityEyeFaustApp.commit_barriers` allows (the acknowledged offsets
held back stay on Faust's books for the next commit). No other behaviour of
Faust changes.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Mapping

import faust
from aiokafka.structs import TopicPartition
from faust.tables import TableManager
from faust.transport import by_url
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.services import WaitResults

from streams.eager import Done, start_eagerly

from cityeye.config import KafkaSettings
from cityeye.kafka import fetched_end_offsets

__all__ = ["CityEyeFaustApp", "CityEyeTableManager"]


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # read by AIOKafkaConsumer.start() when it builds its fetcher
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        kafka = getattr(self.app, "fetch_end_offsets", None)
        if kafka is None:
            return await super()._highwaters(partitions)
        ends = await fetched_end_offsets(kafka, [TopicPartition(tp.topic, tp.partition) for tp in partitions])
        return {tp: ends[TopicPartition(tp.topic, tp.partition)] for tp in partitions}


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        """``Service.wait_first``, the first coroutine's first step run at once (streams/eager.py).

        Finished there (a record delivered to a stream's queue with room):
        its result, and the other coroutines closed unawaited, as Faust's
        would have been cancelled; else Faust's own wait, on the rest of it.
        Only while the consumer is neither stopped nor crashed.
        """
        first = coros[0] if coros else None
        if timeout is not None or not asyncio.iscoroutine(first) or self._stopped.is_set() or self._crashed.is_set():
            return await super().wait_first(*coros, timeout=timeout)
        try:
            started = start_eagerly(first)
        except BaseException:
            _close(coros[1:])
            raise
        if type(started) is Done:
            _close(coros[1:])
            return WaitResults([first], [started.value], False)
        return await super().wait_first(started, *coros[1:])

    async def _commit_offsets(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        allowed = self._within_barriers(offsets)
        if not allowed:
            return False
        return await super()._commit_offsets(allowed, start_new_transaction=start_new_transaction)

    def _within_barriers(self, offsets: Mapping[TP, int]) -> dict[TP, int]:
        """``offsets`` lowered to what every commit barrier of the app allows (partitions with nothing new dropped).

        Faust took the acknowledged offsets below each offset off its books
        when it chose them; those a barrier holds back are put back, so a
        later commit takes them once the barrier moved.
        """
        held_back = [barrier() for barrier in getattr(self.app, "commit_barriers", ())]  # each once per commit
        allowed: dict[TP, int] = {}
        for tp, offset in offsets.items():
            limits = [held[tp] for held in held_back if tp in held]
            committed = self._committed_offset[tp]
            if limits and min(limits) < offset:
                held = max(min(limits), committed or 0)
                self._acked[tp][:0] = range(held, offset)
                self._acked_index[tp].update(range(held, offset))
                offset = min(limits)
            if committed is None or offset > committed:
                allowed[tp] = offset
        return allowed


def _close(waits: tuple[Any, ...]) -> None:
    for wait in waits:
        if asyncio.iscoroutine(wait):
            wait.close()


class CityEyeTableManager(TableManager):
    """Faust's table manager without the fixed one-second sleep at start (the tables are declared already)."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()  # finalizes the tables: declaring one later raises
            await self.recovery.start()


class CityEyeFaustApp(faust.App):
    """``faust.App`` plus a configurable consumer ``fetch_max_wait_ms``, Fetch-based end offsets and commit barriers."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int | None = None,
                 fetch_end_offsets: KafkaSettings | None = None, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        #: read end offsets from Fetch high watermarks with these settings (None: ListOffsets, as Faust does)
        self.fetch_end_offsets = fetch_end_offsets
        #: each says how far the partitions it holds back may be committed now (a partition it does not
        #: name: no limit); the lowest wins
        self.commit_barriers: list[Callable[[], Mapping[TP, int]]] = []
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        base = by_url(self.conf.broker_consumer[0])
        if not issubclass(base, faust_aiokafka.Transport):
            return super()._new_transport()
        transport_cls = type("CityEyeTransport", (base,), {"Consumer": _Consumer})
        return transport_cls(self.conf.broker_consumer, self)
