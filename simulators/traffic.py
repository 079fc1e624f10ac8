"""Road detector: flow, speed and occupancy over the day; an incident in ``all``.

Flow follows a two-peak commuter profile (08:00 and 18:00 local time); speed
falls with flow along a BPR-style curve and a further 15 % in heavy rain;
occupancy follows from density (flow / speed) over three lanes. An incident
(in the ``all`` scenario) blocks lanes for 40-60 minutes: speed collapses
to ~10 km/h, occupancy jumps to 60-80 %, flow drops; it is labelled
``incident`` from its first to its last reading.
"""

from __future__ import annotations

import math

from cityeye.sensor_registry import Sensor
from simulators.common import Clock, Label, SimReading, Storm, local_hour, rng_for

__all__ = ["generate", "incident_window"]

_FREE_SPEED_KMH = 78.0
_CAPACITY_VPH = 5400.0  # three lanes
_LANES = 3
_VEHICLE_LENGTH_M = 6.5  # effective length seen by the loop detector


def _demand_vph(hour: float) -> float:
    peak = lambda h, width, height: height * math.exp(-(((hour - h + 12) % 24 - 12) ** 2) / (2 * width ** 2))
    return 500.0 + peak(8.0, 1.2, 3300.0) + peak(18.0, 1.5, 3000.0) + peak(13.0, 3.5, 1400.0)


def incident_window(sensor: Sensor, clock: Clock, scenario: str, seed: int) -> tuple[float, float] | None:
    """``(start, end)`` of the sensor's incident, or ``None`` outside the ``all`` scenario."""
    if scenario != "all":
        return None
    rng = rng_for(seed, sensor.id, "incident")
    span = clock.duration_h * 3600.0
    start = clock.start + rng.uniform(0.45, 0.7) * span
    return start, start + min(rng.uniform(40, 60) * 60.0, 0.25 * span)


def generate(sensor: Sensor, clock: Clock, scenario: str, seed: int,
             storm: Storm | None) -> tuple[list[SimReading], list[Label]]:
    """The detector's readings over ``clock`` and its incident label."""
    rng = rng_for(seed, sensor.id, "traffic")
    scale = rng.uniform(0.85, 1.1)
    incident = incident_window(sensor, clock, scenario, seed)
    readings, during = [], []
    for t in clock.times(sensor.interval_s):
        flow = _demand_vph(local_hour(t)) * scale * rng.uniform(0.93, 1.07)
        ratio = min(flow / _CAPACITY_VPH, 1.2)
        speed = _FREE_SPEED_KMH / (1 + 0.6 * ratio ** 4)
        if storm is not None:
            speed *= 1 - 0.15 * storm.intensity(t)
        if incident and incident[0] <= t <= incident[1]:
            speed = rng.uniform(6.0, 14.0)
            flow = rng.uniform(250.0, 500.0)
            occupancy = rng.uniform(60.0, 80.0)
            during.append(t)
        else:
            speed = max(5.0, speed + rng.gauss(0, 2.0))
            occupancy = min(95.0, flow / speed / _LANES * _VEHICLE_LENGTH_M / 10.0)
        readings.append(SimReading(sensor.id, "traffic", sensor.district, t, {
            "speed_kmh": round(speed, 1),
            "flow_vph": round(flow),
            "occupancy_pct": round(occupancy, 1),
        }))
    labels = [Label(sensor.id, "incident", during[0], during[-1])] if during else []
    return readings, labels
