"""The ingest gateway: MQTT -> validation -> Kafka, acknowledged only once safe.

Flow (one asyncio loop plus paho's network thread)::

    paho thread --inbox, one wake-up per burst--> bridge.take()
        intake task: take up to ``produce_batch`` messages (after a wait of
                     ``intake_linger_ms`` when a light stream's first
                     one arrives: fewer batches), validate each,
                     aggregate the readings per Kafka partition
                     (ingest/aggregation.py: one record per partition of
                     readings.<kind>; dead letters single records on
                     readings.deadletter), producer.send() every record,
                     hand the batch on
        acker task:  await the batch's Kafka acks (retrying failures with
                     backoff, forever: a Kafka outage stalls, never drops),
                     then PUBACK its MQTT messages in arrival order
                     (one write for the batch, ingest/bridge.py)

At most ``produce_window`` batches wait for Kafka at once and at most
``max_unacked`` MQTT messages are held, so an outage pushes back on the
broker (which keeps queueing for the persistent session) instead of
growing memory. Acks go to the broker only after Kafka (acks=all) has the
reading or its dead letter: a stop or crash before that means redelivery,
so delivery is at-least-once and nothing accepted is lost.

No message can stop the gateway: whatever fails while one message is
handled (rate limiting, validation) becomes that message's dead letter
(``internal_error: <exception class>: ...``) and the message is acknowledged
like any other. Before validation a per-device token bucket
(``ingest.rate_limit``, :mod:`ingest.rate_limit`) dead-letters a flooding
device's excess messages (``rate_limited``); per-device counters
(:mod:`ingest.device_health`) go to Kafka ``devices.health`` every
``ingest.health_interval_s``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from cityeye.config import Settings
from cityeye.contracts import DeadLetter, Reading, readings_topic
from cityeye.device_health import TOPIC_DEVICES_HEALTH
from cityeye.kafka import make_producer
from cityeye.kinds import use_kinds_file
from cityeye.sensor_registry import SensorRegistry
from ingest import metrics
from ingest.aggregation import OutRecord, build_records
from ingest.bounded_memo import BoundedMemo
from ingest.bridge import Inbound, MqttBridge
from ingest.device_health import DeviceHealthTracker
from ingest.formats import DeviceFormats, filter_covers
from ingest.intake_probe import IntakeProbe
from ingest.kafka_delivery import TRUNCATED_PAYLOAD, PartitionCounts, deliver
from ingest.rate_limit import DeviceRateLimiter
from ingest.validation import Limits, reason_code

__all__ = ["Gateway", "GatewayStats"]

log = logging.getLogger(__name__)

@dataclass
class GatewayStats:
    """Counters since the gateway started (see :meth:`Gateway.stats`)."""

    messages: int = 0
    batches: int = 0
    accepted: int = 0
    accepted_by_kind: collections.Counter = field(default_factory=collections.Counter)
    dead_lettered: collections.Counter = field(default_factory=collections.Counter)
    kafka_retries: int = 0
    #: messages on ``mqtt.service_topics`` (the services' own output), acknowledged unread
    service_output: int = 0

    def as_dict(self) -> dict:
        return {
            "messages": self.messages,
            "batches": self.batches,
            "accepted": self.accepted,
            "accepted_by_kind": dict(self.accepted_by_kind),
            "dead_lettered": dict(self.dead_lettered),
            "dead_lettered_total": sum(self.dead_lettered.values()),
            "kafka_retries": self.kafka_retries,
            "service_output": self.service_output,
        }


@dataclass
class _Batch:
    messages: list[Inbound]
    records: list[OutRecord]
    #: the latest intake probe the batch read back (ingest/intake_probe.py), None if none
    intake_until: float | None = None
    #: how many of ``messages`` are this gateway's probes (acknowledged, not counted as device messages)
    probes: int = 0


class Gateway:
    """MQTT -> Kafka ingest gateway; ``start()``, ``stop()``, ``run_forever()``, ``stats()``."""

    def __init__(self, settings: Settings, registry: SensorRegistry, *, clock=time.time) -> None:
        self.settings = settings
        use_kinds_file(settings.kinds)  # their fields are validated against their declared ranges
        self.registry = registry
        self.limits = Limits.from_settings(settings)
        #: SenML and the vendor mappings: a decoder chosen by topic before the one validation path
        self.formats = DeviceFormats.from_files(registry, settings.ingest.mappings, senml=settings.ingest.senml)
        self._clock = clock
        self._stats = GatewayStats()
        self._producer: AIOKafkaProducer | None = None
        self._bridge: MqttBridge | None = None
        self._batches: asyncio.Queue[_Batch] | None = None
        self._window: asyncio.Semaphore | None = None
        self._tasks: list[asyncio.Task] = []
        #: partition count per readings topic, from the producer's metadata
        self._partitions = PartitionCounts()
        self._limiter = DeviceRateLimiter(settings.ingest.rate_limit, {s.id for s in registry})
        self._health = DeviceHealthTracker(registry, settings.mqtt.client_id, clock())
        self._internal_errors_logged: set[str] = set()
        #: whether a topic is the services' own output (``mqtt.service_topics``)
        self._service_output = BoundedMemo(lambda topic: any(filter_covers(f, topic)
                                                             for f in settings.mqtt.service_topics))
        #: tells the workers how far this gateway's intake is complete (None: it does not)
        self._probe = (IntakeProbe(settings.mqtt.client_id, clock)
                       if settings.ingest.intake_progress_interval_s > 0 else None)

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Connect to Kafka (retrying until it answers), then subscribe to MQTT."""
        await self.subscribe()

    async def connect_kafka(self) -> None:
        """Start the Kafka producer, retrying until Kafka answers (its start fetches the cluster's metadata):
        what a gateway does before it takes messages; a warm standby (``cityeye gateway --standby``) stops
        here until it is told to go on. Does nothing the second time."""
        if self._producer is None:
            self._producer = await self._start_producer()

    async def subscribe(self) -> None:
        """Subscribe to MQTT and start taking messages (after :meth:`connect_kafka`)."""
        await self.connect_kafka()
        ing = self.settings.ingest
        if self._probe is not None:  # intake progress goes to these topics' partitions from the first probe on
            await self._partitions.learn(self._producer, {readings_topic(s.kind) for s in self.registry},
                                         timeout=2.0)
        self._batches = asyncio.Queue()
        self._window = asyncio.Semaphore(ing.produce_window)
        self._bridge = MqttBridge(self.settings.mqtt, asyncio.get_running_loop(),
                                  max_unacked=ing.max_unacked, clock=self._clock,
                                  extra_filters=self.formats.mqtt_filters_beyond(self.settings.mqtt.topic_filters),
                                  own_filters=[self._probe.topic] if self._probe else ())
        await self._bridge.start()
        self._tasks = [asyncio.create_task(self._intake(), name="gateway-intake"),
                       asyncio.create_task(self._acker(), name="gateway-acker")]
        if ing.stats_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._log_stats(ing.stats_interval_s), name="gateway-stats"))
        if ing.health_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._publish_health(ing.health_interval_s),
                                                   name="gateway-health"))
        if self._probe is not None:
            self._tasks.append(asyncio.create_task(
                self._probe.run(self._bridge.publish, ing.intake_progress_interval_s), name="gateway-intake-probe"))
        log.info("gateway started: %d sensors in %s, MQTT %s:%d -> Kafka %s", len(self.registry),
                 self.registry.source, self.settings.mqtt.host, self.settings.mqtt.port, self.settings.kafka.bootstrap)

    async def _start_producer(self) -> AIOKafkaProducer:
        delay = 0.5
        while True:
            ing = self.settings.ingest
            producer = make_producer(self.settings.kafka, "gateway", linger_ms=ing.producer_linger_ms,
                                     max_batch_size=ing.producer_max_batch_bytes)
            try:
                await producer.start()
                return producer
            except KafkaError as exc:
                await producer.stop()
                log.warning("Kafka %s not reachable (%s); retrying in %.1f s",
                            self.settings.kafka.bootstrap, type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Finish what Kafka can take within ``drain_timeout``, ack it, disconnect.

        Messages not yet in Kafka are left unacknowledged: the broker
        redelivers them to the next session.
        """
        if not self._tasks:
            return
        intake, acker, *others = self._tasks
        for task in (intake, *others):
            task.cancel()
        await asyncio.gather(intake, *others, return_exceptions=True)
        await self._batches.put(None)  # the acker stops after the batches already sent
        try:
            await asyncio.wait_for(asyncio.shield(acker), drain_timeout)
        except asyncio.TimeoutError:
            log.warning("Kafka did not confirm in-flight readings within %.0f s: leaving them "
                        "unacknowledged for redelivery", drain_timeout)
            acker.cancel()
            await asyncio.gather(acker, return_exceptions=True)
        except Exception:  # the acker had died; run_forever reports why
            pass
        self._tasks = []
        await self._bridge.stop()
        try:  # a producer with records for an unreachable Kafka would wait for them
            await asyncio.wait_for(self._producer.stop(), drain_timeout)
        except asyncio.TimeoutError:
            log.warning("Kafka producer did not close within %.0f s", drain_timeout)
        log.info("gateway stopped: %s", self._stats.as_dict())

    async def run_forever(self, stop_event: asyncio.Event | None = None, *,
                          before_subscribe: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Start, run until ``stop_event`` is set (or the task is cancelled), stop.

        ``before_subscribe``, if given, is awaited once Kafka is connected and
        before MQTT is: it returns whether to go on (a warm standby waits there
        for its signal); if not, the gateway disconnects from Kafka and returns.
        Raises the error of a pipeline task that died (a bug, never bad input).
        """
        if before_subscribe is not None:
            await self.connect_kafka()
            if not await before_subscribe():
                await self._producer.stop()
                return
        await self.start()
        waiter = asyncio.create_task((stop_event or asyncio.Event()).wait())
        try:
            done, _ = await asyncio.wait([waiter, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not waiter and not task.cancelled() and task.exception():
                    log.critical("gateway task %s died: %r", task.get_name(), task.exception())
                    raise task.exception()
        finally:
            waiter.cancel()
            await asyncio.shield(self.stop())

    def stats(self) -> dict:
        """Counters: messages acked, accepted (per kind), dead-lettered per reason code, Kafka
        retries; gauges: batches awaiting Kafka, MQTT messages held unacknowledged."""
        out = self._stats.as_dict()
        out["in_flight_batches"] = self._batches.qsize() if self._batches else 0
        out["unacked"] = self._bridge.unacked if self._bridge else 0
        return out

    # -- pipeline ----------------------------------------------------------------
    async def _intake(self) -> None:
        ing = self.settings.ingest
        while True:
            # take a window slot first: while every slot waits for Kafka, messages pile
            # up in the inbox and the next batch grows (few large produce requests under
            # load, no added latency when idle)
            await self._window.acquire()
            messages = await self._bridge.take(ing.produce_batch, ing.intake_linger_ms / 1000)
            outcomes, until, probes, probe = [], None, 0, self._probe
            for msg in messages:
                if probe is not None and msg.topic == probe.topic:
                    until, probes = probe.until_of(msg.payload) or until, probes + 1
                    continue
                outcomes += self._outcomes_of(msg)
            kinds = {o.kind for o in outcomes if isinstance(o, Reading)}  # a topic name per kind, not per reading
            await self._partitions.learn(self._producer, map(readings_topic, kinds))
            records = build_records(outcomes, self._partitions.__getitem__,
                                    max_readings=ing.aggregate_max_readings, max_bytes=ing.aggregate_max_bytes)
            for record in records:
                try:
                    record.future = await self._send(record)
                except Exception as exc:  # KafkaError and anything else: the acker resends it
                    log.debug("send failed (%s); will retry", type(exc).__name__)
            await self._batches.put(_Batch(messages, records, until, probes))

    def _send(self, record: OutRecord):
        return self._producer.send(record.topic, record.value, key=record.key, partition=record.partition,
                                   headers=record.headers)

    def _outcomes_of(self, msg: Inbound) -> list[Reading | DeadLetter]:
        """The validation outcomes of one message; never raises.

        Whatever fails here (a bug meeting an input nobody thought of) gives the
        message one ``internal_error`` dead letter instead: the message is then
        acknowledged like any other and the gateway goes on.
        """
        if self._service_output[msg.topic]:
            self._stats.service_output += 1  # a notifier's message: not a device's, acknowledged unread
            return []
        sensor_id = self.formats.topic_sensor(msg.topic)
        try:
            self._health.message(sensor_id, msg.received_at)
            if not self._limiter.allow(sensor_id, msg.received_at):
                return [self._rate_limited(msg, sensor_id)]
            return self.formats.validate(msg.payload, msg.topic, msg.received_at, self.limits)
        except Exception as exc:
            return [self._internal_error(msg, sensor_id, exc)]

    def _rate_limited(self, msg: Inbound, sensor_id: str | None) -> DeadLetter:
        """The dead letter of a message over its device's rate (the payload kept whole unless oversized)."""
        self._health.rate_limited(sensor_id)
        limit = self.settings.ingest.rate_limit
        kept = msg.payload if len(msg.payload) <= self.limits.max_payload_bytes else msg.payload[:TRUNCATED_PAYLOAD]
        return DeadLetter.of(kept, msg.topic, f"rate_limited: more than {limit.messages_per_s:g} messages/s "
                             f"(burst {limit.burst}) from this device", msg.received_at, sensor_id)

    def _internal_error(self, msg: Inbound, sensor_id: str | None, exc: Exception) -> DeadLetter:
        name = type(exc).__name__
        if name not in self._internal_errors_logged:  # once per exception class: counted, not logged each
            self._internal_errors_logged.add(name)
            log.error("handling a message on %r failed; dead-lettered as internal_error (further %s "
                      "failures are counted, not logged)", msg.topic[:200], name, exc_info=exc)
        try:
            detail = ascii(str(exc))[1:-1][:200]  # ASCII: encodable whatever the exception quotes
        except Exception:  # an exception whose str() fails too
            detail = "(no message)"
        return DeadLetter.of(msg.payload[: self.limits.max_payload_bytes], msg.topic,
                             f"internal_error: {name}: {detail}", msg.received_at, sensor_id)

    async def _acker(self) -> None:
        while True:
            batch = await self._batches.get()
            if batch is None:
                return
            for record in batch.records:
                await deliver(record, self._send, self._retrying)
            for record in batch.records:
                for outcome in record.outcomes:
                    self._count(outcome)
            self._bridge.ack_all(batch.messages)
            devices = (batch.messages if not batch.probes
                       else [m for m in batch.messages if m.topic != self._probe.topic])
            metrics.observe_batch(devices, [o for r in batch.records for o in r.outcomes], self._clock(),
                                  self._bridge.unacked)
            self._stats.messages += len(devices)
            self._stats.batches += 1
            if batch.intake_until is not None:
                await self._probe.send_progress(self._producer, self._partitions, batch.intake_until)
            self._window.release()

    def _retrying(self, record: OutRecord, exc: Exception, delay: float) -> None:
        """Count and log a record Kafka did not take (resent after ``delay`` s)."""
        self._stats.kafka_retries += 1
        metrics.KAFKA_RETRIES.inc()
        log.warning("Kafka did not take a record for %s (%s); retrying in %.1f s",
                    record.topic, type(exc).__name__, delay)

    def _count(self, outcome: Reading | DeadLetter) -> None:
        self._health.outcome(outcome)
        if isinstance(outcome, Reading):
            self._stats.accepted += 1
            self._stats.accepted_by_kind[outcome.kind] += 1
        else:
            self._stats.dead_lettered[reason_code(outcome.reason)] += 1

    async def _log_stats(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            log.info("gateway counters: %s", self.stats())

    async def _publish_health(self, interval: float) -> None:
        """Every ``interval`` s each registered device's health record, keyed by sensor id (best effort:
        a record Kafka does not take is superseded by the next interval's)."""
        while True:
            await asyncio.sleep(interval)
            try:
                sends = [await self._producer.send(TOPIC_DEVICES_HEALTH, rec.to_json(), key=rec.sensor_id.encode())
                         for rec in self._health.snapshot(self._clock())]
                await asyncio.gather(*sends)
            except KafkaError as exc:
                log.warning("device health not published (%s); next try in %.0f s", type(exc).__name__, interval)

