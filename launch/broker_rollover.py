"""Broker rollover: the embedded stack moves to a fresh Kafka broker now and then (issue #10).

The embedded broker (Tansu, memory storage) keeps every record it is sent
and gets slower with each one; it applies neither retention nor compaction
and refuses DeleteRecords (docs/kafka-on-tansu.md). The embedded supervisor
(``cityeye run``, :class:`launch.embedded.EmbeddedStack`) therefore replaces
it, when its RSS passes ``max_rss_mib`` or every ``every_minutes``, speaking
nothing but the Kafka protocol:

1. start a fresh broker and create the topics, and a warm standby worker
   and a warm standby gateway for it (:class:`Standby`: imported, built, the
   gateway's producer connected to the new broker, neither consuming anything
   until it is told to start);
2. stop the gateway gracefully: the MQTT messages it has not acknowledged stay
   queued in the MQTT broker's persistent session (nothing is lost); tell the
   standby gateway to start: it subscribes with the same client id, takes
   the session over and forwards to the new broker at once (the intake
   pause ends here); the readings wait on the new broker until the worker
   there starts;
3. wait until the worker's consumer group has read the old broker's readings
   to the end (lag 0), stop the worker (it writes its snapshots on the way out);
4. copy the worker's snapshot changelog to the new broker, the latest value
   per key (a compaction by hand), and tell the standby to start: it
   recovers its table from the copy and reads the new broker's readings
   from their beginning;
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
import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pydantic import BaseModel, Field

from cityeye.command import GO_SIGNAL
from cityeye.config import KafkaSettings, Settings
from cityeye.contracts import TOPIC_ALERTS_DEADLETTER, TOPIC_DEADLETTER, TOPIC_NOTIFICATIONS_DEADLETTER, all_topics
from cityeye.device_health import TOPIC_DEVICES_HEALTH
from cityeye.kafka import CopyPlan, LagReader, copy_topic, ensure_topics
from launch.proc_usage import rss_mib
from launch.servers import TansuServer
from streams.app import faust_settings
from streams.command import COMMIT_SIGNAL
from streams.tables import SNAPSHOT_TABLE, clear_snapshot_position

if TYPE_CHECKING:
    from launch.embedded import EmbeddedStack

__all__ = ["BrokerRolloverSettings", "RolloverReport", "BrokerRollover", "Standby", "carried_topics",
           "wait_for_zero_lag"]

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
    #: longest wait for the standby worker and gateway to be built (imports, app) before the switch starts
    standby_timeout_s: float = Field(120.0, gt=0)
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
        """From the gateway's stop to the standby gateway's go (its MQTT connection comes on top): MQTT
        messages wait in the MQTT queue."""
        return self.steps.get("gateway started", 0.0) - self.steps.get("gateway stop", 0.0)

    @property
    def worker_pause_s(self) -> float:
        """From the gateway's stop to the standby's go (its group join and recovery come on top): no reading is
        processed (they wait in Kafka)."""
        return self.steps.get("standby started", 0.0) - self.steps.get("gateway stop", 0.0)

    def step(self, name: str) -> None:
        self.steps[name] = time.time() - self.started
        log.info("broker rollover: %s at +%.1f s", name, self.steps[name])

    def summary(self) -> str:
        steps = ", ".join(f"{name} +{at:.1f}s" for name, at in self.steps.items())
        return (f"broker rollover ({self.reason}): broker RSS {self.old_rss_mib:.0f} -> {self.new_rss_mib:.0f} MiB, "
                f"intake paused {self.intake_pause_s:.2f} s + the gateway's MQTT connection, worker paused "
                f"{self.worker_pause_s:.1f} s, copied {json.dumps(self.copied)}; {steps}")


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


async def wait_for_zero_lag(kafka: KafkaSettings, timeout: float, settle_s: float = 1.0,
                            group: str | None = None, topics: list[str] | None = None,
                            before_check: Callable[[], None] | None = None) -> dict[str, int]:
    """Wait until every consumer group has lag 0 on two checks ``settle_s`` apart.

    With ``group`` and ``topics``: until that group has read every partition
    of ``topics`` to its end (a partition it never committed on counts as
    unread), one check being enough when nothing writes to them any more.
    ``before_check`` is called before each check (e.g. to ask the group to commit now).
    Returns the groups still lagging (group -> records) when ``timeout`` passed first, else ``{}``.
    """
    deadline = time.monotonic() + timeout
    zero_since: float | None = None
    async with LagReader(kafka) as reader:  # one admin client and consumer for the whole wait
        while True:
            if before_check is not None:
                before_check()
            found = await reader.lags(topics, groups=None if group is None else [group],
                                      uncommitted_as_lag=group is not None)
            lags = {name: sum(by_tp.values()) for name, by_tp in found.items()}
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
        except BaseException:
            if stack.broker is not new:  # not handed over: no part uses it
                await asyncio.to_thread(new.stop)
            raise
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
        config = stack.write_config_for(new, stack.workdir / f"cityeye-{stack.generation + 1}.yaml")
        standby, gateway = Standby(stack, "worker", config), Standby(stack, "gateway", config)
        try:
            await asyncio.gather(standby.wait_ready(self.settings.standby_timeout_s),
                                 gateway.wait_ready(self.settings.standby_timeout_s))
            report.step("standby ready")
            report.step("gateway stop")
            await asyncio.to_thread(stack.stop_part, "gateway")
            gateway.start()  # its readings wait on the new broker
            stack.adopt("gateway", gateway.proc)
            report.step("gateway started")
            worker = stack.procs["worker"]
            report.lagging.update(await wait_for_zero_lag(
                kafka, self.settings.drain_timeout_s, settle_s=0.0, group=faust_settings(stack.settings)["id"],
                topics=[t for t in all_topics() if t.startswith("readings.") and t != TOPIC_DEADLETTER],
                before_check=lambda: _signal(worker, COMMIT_SIGNAL)))  # commit now, not in ~2.8 s
            report.step("drained readings")
            await asyncio.to_thread(stack.stop_part, "worker")
            report.step("worker stopped")
            await self._copy(kafka, target, plans[:1], report)  # the snapshot changelog, before the worker recovers
            standby.start()
        except BaseException:
            standby.kill()
            if stack.procs["gateway"] is not gateway.proc:
                gateway.kill()
            raise
        stack.adopt("worker", standby.proc)
        report.step("standby started")
        await asyncio.to_thread(stack.use_broker, new)
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


class Standby:
    """A part's process started warm for the new broker, waiting for its go signal (SIGUSR1) to take over.

    ``cityeye worker --standby READY_FILE`` (streams/command.py: imported, app
    built, connected to nothing) or ``cityeye gateway --standby READY_FILE``
    (ingest/command.py: built, its producer connected to the new broker, not
    subscribed to MQTT), with ``config`` pointed at the new broker; it writes
    ``READY_FILE`` once built. Its log is the part's.
    """

    def __init__(self, stack: EmbeddedStack, part: str, config: Path) -> None:
        self.part = part
        self.ready_file = stack.workdir / f"{part}-standby.ready"
        self.ready_file.unlink(missing_ok=True)
        self.proc = stack.start_part(part, config, ("--standby", str(self.ready_file)), spare=True)

    async def wait_ready(self, timeout: float) -> None:
        """Return once the standby is built; raise if it exits or takes longer than ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the standby {self.part} exited with {self.proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby {self.part} was not ready within {timeout:.0f} s")
            await asyncio.sleep(0.05)

    def start(self) -> None:
        """Let it take over: its metrics, then the worker's group join and table recovery, or the gateway's
        MQTT subscription (it owns the part's place from now)."""
        _signal(self.proc, GO_SIGNAL)

    def kill(self) -> None:
        """Stop it at once (the rollover failed before it became the part)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.ready_file.unlink(missing_ok=True)


def _signal(proc: subprocess.Popen, signum: int) -> None:
    """Send ``signum`` to ``proc`` if it still runs."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signum)
