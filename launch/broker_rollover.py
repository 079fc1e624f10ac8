"""Broker rollover: the embedded stack moves to a fresh Kafka broker now and then (issue #10).

The embedded broker (Tansu, memory storage) keeps every record it is sent
and gets slower with each one; it applies neither retention nor compaction
and refuses DeleteRecords (docs/kafka-on-tansu.md). The embedded supervisor
(``cityeye run``, :class:`launch.embedded.EmbeddedStack`) therefore replaces
it, when its RSS passes ``max_rss_mib`` or every ``every_minutes``, speaking
nothing but the Kafka protocol:

1. start a fresh broker and create the topics;
2. stop the gateway gracefully: the MQTT messages it has not acknowledged stay
   queued in the MQTT broker's persistent session (nothing is lost);
3. wait until every consumer group has read to the end (lag 0), stop the
   worker (it writes its snapshots on the way out);
4. copy the worker's snapshot changelog to the new broker, the latest value
   per key (a compaction by hand), and start the worker (it recovers its
   table from the copy) and the gateway there: the intake pause ends here;
5. wait until the groups on the old broker have read the worker's last
   events (lag 0), stop the other Kafka clients (dispatcher, sinks, cases)
   gracefully, copy the rest of the state (:func:`carried_topics`): the
   latest ``devices.health`` record per device, the last
   ``dead_letter_tail`` records of each dead-letter topic, and start those
   clients on the new broker; everything else (readings, alert events,
   grouped events and actions) has been consumed and is left behind;
6. stop the old broker.

Offsets start again at 0 on the new broker, so the one offset kept in
state, a snapshot's ``position`` (the offset of the last reading it
includes, streams/sensor_engine.py), is cleared on the way
(:func:`streams.tables.clear_snapshot_position`): every reading of the new broker is new to the
restored state. The dispatcher's state (alerts, outbox, redelivery,
silences) is in its SQLite files and is kept as it is; its consumer groups
start at the new topics' beginnings. Costs and figures: docs/kafka-on-tansu.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from cityeye.config import KafkaSettings, Settings
from cityeye.contracts import TOPIC_ALERTS_DEADLETTER, TOPIC_DEADLETTER, TOPIC_NOTIFICATIONS_DEADLETTER
from cityeye.device_health import TOPIC_DEVICES_HEALTH
from cityeye.kafka import CopyPlan, LagReader, copy_topic, ensure_topics
from launch.proc_usage import rss_mib
from launch.servers import TansuServer
from streams.app import faust_settings
from streams.tables import SNAPSHOT_TABLE, clear_snapshot_position

if TYPE_CHECKING:
    from launch.embedded import EmbeddedStack

__all__ = ["BrokerRolloverSettings", "RolloverReport", "BrokerRollover", "carried_topics", "wait_for_zero_lag"]

log = logging.getLogger(__name__)


class BrokerRolloverSettings(BaseModel):
    """``embedded.broker_rollover``: when and how the embedded supervisor replaces the broker.

    Both triggers off (0, the default) means no rollover.
    """

    #: roll over when the broker's RSS passes this many MiB (0: never for memory)
    max_rss_mib: float = Field(0.0, ge=0)
    #: roll over every this many minutes (0: never by time)
    every_minutes: float = Field(0.0, ge=0)
    #: seconds between two checks of the triggers
    check_s: float = Field(5.0, gt=0)
    #: dead-letter records kept per partition (the operators' recent view)
    dead_letter_tail: int = Field(1000, ge=0)
    #: longest wait for the consumer groups to reach lag 0 before going on regardless (with a warning)
    drain_timeout_s: float = Field(60.0, gt=0)
    #: producer ``max_batch_size`` of the copy; 1: one record per batch, so a broker whose
    #: ListOffsets counts batches (Tansu) reports exact end offsets and Faust recovers its table exactly
    copy_max_batch_bytes: int = Field(1, ge=1)

    @property
    def enabled(self) -> bool:
        return self.max_rss_mib > 0 or self.every_minutes > 0


@dataclass
class RolloverReport:
    """What one rollover did and how long each step took (seconds from its start)."""

    reason: str
    started: float
    old_rss_mib: float
    steps: dict[str, float] = field(default_factory=dict)
    copied: dict[str, int] = field(default_factory=dict)
    lagging: dict[str, int] = field(default_factory=dict)
    new_rss_mib: float = 0.0

    @property
    def intake_pause_s(self) -> float:
        """From the gateway's stop to its start on the new broker: MQTT messages wait in the MQTT queue."""
        return self.steps.get("gateway started", 0.0) - self.steps.get("gateway stop", 0.0)

    def step(self, name: str) -> None:
        self.steps[name] = time.time() - self.started
        log.info("broker rollover: %s at +%.1f s", name, self.steps[name])

    def summary(self) -> str:
        steps = ", ".join(f"{name} +{at:.1f}s" for name, at in self.steps.items())
        return (f"broker rollover ({self.reason}): broker RSS {self.old_rss_mib:.0f} -> {self.new_rss_mib:.0f} MiB, "
                f"intake paused {self.intake_pause_s:.1f} s, copied {json.dumps(self.copied)}; {steps}")


def carried_topics(settings: Settings, dead_letter_tail: int) -> list[CopyPlan]:
    """The topics that hold state, and how each is carried to a new broker, the worker's changelog first.

    Every other topic (``readings.<kind>``, ``alerts.events``,
    ``alerts.grouped``) is consumed to its end before a rollover and is not copied.
    """
    changelog = f"{faust_settings(settings)['id']}-{SNAPSHOT_TABLE}-changelog"
    plans = [CopyPlan(changelog, "latest", transform=clear_snapshot_position), CopyPlan(TOPIC_DEVICES_HEALTH, "latest")]
    if dead_letter_tail > 0:
        plans += [CopyPlan(t, "tail", tail=dead_letter_tail)
                  for t in (TOPIC_DEADLETTER, TOPIC_ALERTS_DEADLETTER, TOPIC_NOTIFICATIONS_DEADLETTER)]
    return plans


async def wait_for_zero_lag(kafka: KafkaSettings, timeout: float, settle_s: float = 1.0) -> dict[str, int]:
    """Wait until every consumer group has lag 0 on two checks ``settle_s`` apart.

    Returns the groups still lagging (group -> records) when ``timeout`` passed first, else ``{}``.
    """
    deadline = time.monotonic() + timeout
    zero_since: float | None = None
    async with LagReader(kafka) as reader:  # one admin client and consumer for the whole wait
        while True:
            lags = {group: sum(by_tp.values()) for group, by_tp in (await reader.lags()).items()}
            lagging = {group: lag for group, lag in lags.items() if lag > 0}
            if lagging:
                zero_since = None
            elif zero_since is None:
                zero_since = time.monotonic()
            elif time.monotonic() - zero_since >= settle_s:
                return {}
            if time.monotonic() > deadline:
                return lagging
            await asyncio.sleep(0.25)


class BrokerRollover:
    """Decides when the embedded broker is replaced and replaces it (see the module docstring)."""

    def __init__(self, settings: BrokerRolloverSettings) -> None:
        self.settings = settings
        self.last = time.monotonic()
        self.reports: list[RolloverReport] = []

    def due(self, broker_rss_mib: float) -> str | None:
        """Why a rollover is due now (``None``: it is not)."""
        s = self.settings
        if s.max_rss_mib and broker_rss_mib > s.max_rss_mib:
            return f"broker RSS {broker_rss_mib:.0f} MiB > {s.max_rss_mib:g} MiB"
        if s.every_minutes and time.monotonic() - self.last >= 60.0 * s.every_minutes:
            return f"every {s.every_minutes:g} min"
        return None

    async def supervise(self, stack: EmbeddedStack, stop: asyncio.Event) -> None:
        """Check the triggers every ``check_s`` and roll the broker over when one fires, until ``stop``.

        A rollover that fails sets ``stop`` and raises: the caller stops the stack.
        """
        while self.settings.enabled and not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.settings.check_s)
                return
            except asyncio.TimeoutError:
                pass
            reason = self.due(rss_mib(stack.broker.proc.pid))
            if not reason:
                continue
            try:
                report = await self.roll(stack, reason)
            except BaseException:  # parts may be stopped half-way: the stack stops rather than limp on
                log.exception("broker rollover failed: stopping the stack")
                stop.set()
                raise
            print(report.summary(), flush=True)

    async def roll(self, stack: EmbeddedStack, reason: str) -> RolloverReport:
        """Move ``stack`` to a fresh broker now; returns what it did."""
        old = stack.broker
        report = RolloverReport(reason, time.time(), rss_mib(old.proc.pid))
        new = await asyncio.to_thread(TansuServer(workdir=stack.workdir / f"tansu-{stack.generation + 1}").start)
        await ensure_topics(stack.settings.kafka.model_copy(update={"bootstrap": new.bootstrap}))
        report.step("new broker")
        stack.rolling = True
        try:
            await self._move(stack, new, report)
        finally:
            stack.rolling = False
        await asyncio.to_thread(old.stop)
        report.step("old broker stopped")
        report.new_rss_mib = rss_mib(new.proc.pid)
        self.last = time.monotonic()
        self.reports.append(report)
        return report

    async def _move(self, stack: EmbeddedStack, new: TansuServer, report: RolloverReport) -> None:
        """Steps 2-5, the intake moved first: readings wait only for the worker's hand-over, not the dispatcher's."""
        kafka = stack.settings.kafka
        target = kafka.model_copy(update={"bootstrap": new.bootstrap})
        plans = carried_topics(stack.settings, self.settings.dead_letter_tail)
        report.step("gateway stop")
        await asyncio.to_thread(stack.stop_part, "gateway")
        report.lagging.update(await wait_for_zero_lag(kafka, self.settings.drain_timeout_s))
        report.step("drained readings")
        await asyncio.to_thread(stack.stop_part, "worker")
        report.step("worker stopped")
        await self._copy(kafka, target, plans[:1], report)  # the snapshot changelog, before the worker recovers
        await asyncio.to_thread(stack.use_broker, new)
        stack.start_part("worker")
        stack.start_part("gateway")
        report.step("gateway started")
        # the rest read the worker's last events on the old broker, then follow
        report.lagging.update(await wait_for_zero_lag(kafka, self.settings.drain_timeout_s))
        others = [name for name in stack.kafka_parts() if name not in ("gateway", "worker")]
        await asyncio.gather(*(asyncio.to_thread(stack.stop_part, name) for name in others))
        report.step("clients stopped")
        if report.lagging:
            log.warning("broker rollover: consumer groups still lagging, their records stay behind: %s",
                        report.lagging)
        await self._copy(kafka, target, plans[1:], report)
        for name in others:
            stack.start_part(name)
        report.step("clients started")

    async def _copy(self, source: KafkaSettings, target: KafkaSettings, plans: list[CopyPlan],
                    report: RolloverReport) -> None:
        for plan in plans:
            report.copied[plan.topic] = await copy_topic(source, target, plan,
                                                         max_batch_size=self.settings.copy_max_batch_bytes)
        report.step("copied " + ", ".join(p.topic for p in plans))
