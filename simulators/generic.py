"""The generic simulated sensor: any kind whose kinds file declares a ``simulation`` profile.

Per field of the profile, a reading is ``baseline + daily_amplitude *
cos(2 pi (local hour - peak_hour) / 24) + noise`` (Gaussian, per sensor),
kept inside the field's physical range; the profile's events (a step, a
ramp, a spike; see :class:`cityeye.kinds.InjectedEvent`) are added in every
scenario but ``normal``, each with a label over the readings it changes.
So a kind declared by configuration alone can be simulated by
``cityeye simulate`` and backtested by ``cityeye backtest --simulate``.
"""

from __future__ import annotations

import math

from cityeye.kinds import InjectedEvent, kind_spec
from cityeye.sensor_registry import Sensor
from simulators.common import Clock, Label, SimReading, Storm, local_hour, rng_for

__all__ = ["simulates", "generate", "event_offset"]


def simulates(kind: str) -> bool:
    """Whether ``kind`` declares a simulation profile."""
    try:
        return kind_spec(kind).simulation is not None
    except ValueError:
        return False


def event_offset(event: InjectedEvent, t: float, start: float, interval_s: float) -> float:
    """What ``event`` adds at time ``t`` of a simulation starting at ``start`` (0 outside it)."""
    since = t - (start + event.start_h * 3600.0)
    if event.shape == "spike":
        return event.size if 0 <= since < interval_s else 0.0
    length = event.duration_h * 3600.0
    if not 0 <= since < length:
        return 0.0
    return event.size if event.shape == "step" else event.size * since / length


def generate(sensor: Sensor, clock: Clock, scenario: str, seed: int,
             storm: Storm | None = None) -> tuple[list[SimReading], list[Label]]:
    """The sensor's readings over ``clock`` from its kind's profile, and the labels of the injected events."""
    spec = kind_spec(sensor.kind)
    profile = spec.simulation
    if profile is None:
        raise ValueError(f"kind {sensor.kind!r} has no simulator: declare a 'simulation' profile in its kinds file")
    rng = rng_for(seed, sensor.id, sensor.kind)
    events = () if scenario == "normal" else profile.events
    times = clock.times(sensor.interval_s)
    readings = []
    for t in times:
        hour = local_hour(t)
        values = {}
        for name, field in profile.fields.items():
            value = field.baseline + field.daily_amplitude * math.cos(2 * math.pi * (hour - field.peak_hour) / 24.0)
            value += rng.gauss(0.0, field.noise) if field.noise else 0.0
            value += sum(event_offset(e, t, clock.start, sensor.interval_s) for e in events if e.field == name)
            low, high = spec.fields[name].low, spec.fields[name].high
            values[name] = round(min(high, max(low, value)), field.decimals)
        readings.append(SimReading(sensor.id, sensor.kind, sensor.district, t, values))
    labels = []
    for event in events:
        hit = [t for t in times if event_offset(event, t, clock.start, sensor.interval_s)]
        if hit:
            labels.append(Label(sensor.id, event.label, hit[0], hit[-1]))
    return readings, labels
