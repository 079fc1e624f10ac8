"""A whole simulated city: every registry sensor's readings, labels, MQTT payloads, publishing.

Pure part: :func:`simulate` (registry + scenario + seed + clock -> readings
and ground-truth labels) and :func:`encode_messages` (readings -> MQTT
``(send time, topic, payload)``; same inputs, byte-identical payloads).
I/O part: :func:`write_labels` and :func:`run_simulation`, which the
``cityeye simulate`` command and the embedded runner call in-process.

Payloads follow docs/contracts.md: water level and weather stamp ``ts``
as RFC 3339, traffic detectors as epoch milliseconds; with ``batch > 1``
weather stations send their readings as JSON arrays of up to ``batch``
(a data logger's upload, sent at its last reading's time).
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cityeye.config import Settings
from cityeye.contracts import format_ts
from cityeye.device_credentials import read_credentials
from cityeye.errors import ConfigError
from cityeye.sensor_registry import SensorRegistry
from simulators import generic, traffic, water_level, weather
from simulators.common import SCENARIOS, Clock, Label, SimReading, storm_for
from simulators.publisher import DevicePublishers, MqttPublisher, publish_paced

__all__ = [
    "GENERATORS",
    "SimulationResult",
    "simulate",
    "encode_messages",
    "write_labels",
    "resolve_start",
    "run_simulation",
]

log = logging.getLogger(__name__)

#: the hand-written generators; any other kind with a ``simulation`` profile in its
#: kinds file gets the generic one (simulators/generic.py)
GENERATORS = {"water_level": water_level.generate, "traffic": traffic.generate, "weather": weather.generate}
#: kinds whose devices upload arrays when batching is on
BATCHING_KINDS = ("weather",)


@dataclass
class SimulationResult:
    """What :func:`run_simulation` did: the window, messages sent, readings made, labels."""

    start: float
    end: float
    messages_published: int
    readings: int
    labels: list[Label] = field(default_factory=list)


def simulate(registry: SensorRegistry, scenario: str, seed: int, clock: Clock) -> tuple[list[SimReading], list[Label]]:
    """Every sensor's readings (ordered by time, then sensor) and the labels, for ``scenario``."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}")
    if clock.duration_h <= 0:
        raise ValueError("duration must be positive")
    storm = storm_for(clock, scenario, seed)
    cannot = sorted({s.kind for s in registry if s.kind not in GENERATORS and not generic.simulates(s.kind)})
    if cannot:
        raise ConfigError(f"{registry.source}: no simulator for kind(s) {', '.join(cannot)}: "
                          "declare a 'simulation' profile in the kinds file (docs/kinds.md)")
    readings: list[SimReading] = []
    labels: list[Label] = []
    for sensor in registry:
        got, lab = GENERATORS.get(sensor.kind, generic.generate)(sensor, clock, scenario, seed, storm)
        readings.extend(got)
        labels.extend(lab)
    readings.sort(key=lambda r: (r.ts, r.sensor_id))
    labels.sort(key=lambda lab: (lab.start, lab.sensor_id, lab.label))
    return readings, labels


def _item(reading: SimReading) -> dict:
    ts: str | int = round(reading.ts * 1000) if reading.kind == "traffic" else format_ts(reading.ts)
    return {"ts": ts, "values": reading.values}


def _dump(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def encode_messages(readings: list[SimReading], batch: int = 1) -> list[tuple[float, str, bytes]]:
    """MQTT messages ``(send time, topic, payload)`` in send order.

    With ``batch > 1`` the readings of :data:`BATCHING_KINDS` sensors are
    grouped, per sensor, into arrays of up to ``batch`` consecutive readings.
    """
    out: list[tuple[float, str, bytes]] = []
    pending: dict[str, list[SimReading]] = {}
    for reading in readings:
        if batch <= 1 or reading.kind not in BATCHING_KINDS:
            out.append((reading.ts, reading.topic, _dump(_item(reading))))
            continue
        group = pending.setdefault(reading.sensor_id, [])
        group.append(reading)
        if len(group) == batch:
            out.append((reading.ts, reading.topic, _dump([_item(r) for r in group])))
            group.clear()
    for group in pending.values():
        if group:
            out.append((group[-1].ts, group[-1].topic, _dump([_item(r) for r in group])))
    out.sort(key=lambda m: (m[0], m[1]))
    return out


def write_labels(labels: list[Label], path: str | Path) -> None:
    """Write labels as CSV (``.csv``) or JSON lines (anything else)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [lab.as_dict() for lab in labels]
    with path.open("w", encoding="utf-8", newline="") as f:
        if path.suffix.lower() == ".csv":
            writer = csv.DictWriter(f, fieldnames=["sensor_id", "label", "start", "end"])
            writer.writeheader()
            writer.writerows(rows)
        else:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


def resolve_start(start: float | None, speed: float, duration_h: float, now: float | None = None) -> float:
    """The simulated start time: ``start`` itself, else the current minute.

    On an accelerated clock (``speed`` != 1) the default is ``now`` minus the
    duration, so the simulated time never runs ahead of the real clock (the
    gateway refuses readings more than 5 minutes in the future).
    """
    if start is not None:
        return float(start)
    now = time.time() if now is None else now
    minute = math.floor(now / 60.0) * 60.0
    return minute if speed == 1 else minute - duration_h * 3600.0


async def run_simulation(settings: Settings, registry: SensorRegistry, *, speed: float = 600.0,
                         scenario: str = "all", seed: int = 7, duration_h: float = 24.0,
                         labels_path: str | Path | None = None, stop_event: asyncio.Event | None = None,
                         start: float | None = None, batch: int = 1) -> SimulationResult:
    """Simulate ``registry``'s sensors and publish them over MQTT (QoS 1), paced.

    ``speed``: simulated seconds per real second (600 = 10 min/s; <= 0: as
    fast as possible). ``start``: simulated start (epoch s; default see
    :func:`resolve_start`). Labels are written to ``labels_path`` before
    publishing starts. Returns when everything was published and
    acknowledged by the broker, or early once ``stop_event`` is set.
    """
    clock = Clock(resolve_start(start, speed, duration_h), duration_h)
    readings, labels = simulate(registry, scenario, seed, clock)
    if labels_path:
        write_labels(labels, labels_path)
    messages = encode_messages(readings, batch)
    log.info("simulating %d sensors, scenario %s, seed %d: %d readings in %d messages from %s to %s at %gx",
             len(registry), scenario, seed, len(readings), len(messages), format_ts(clock.start),
             format_ts(clock.end), speed)
    client_id = f"cityeye-sim-{seed}-{uuid.uuid4().hex[:6]}"
    if settings.mqtt.device_credentials:
        creds = read_credentials(settings.mqtt.device_credentials)
        publisher = DevicePublishers(settings.mqtt, creds, [sensor.id for sensor in registry], client_id)
    else:
        publisher = MqttPublisher(settings.mqtt, client_id=client_id)
    await asyncio.to_thread(publisher.connect)
    try:
        count = await publish_paced(publisher, messages, speed=speed, t0=clock.start, stop_event=stop_event)
    finally:
        await asyncio.to_thread(publisher.close)
    log.info("simulation done: %d messages published", count)
    return SimulationResult(clock.start, clock.end, count, len(readings), labels)
