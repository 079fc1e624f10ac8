"""Automatic weather station: temperature, humidity, wind, rain; a rainstorm in ``flood``/``all``.

``rain_mm`` is the rain since the previous reading at 0.1 mm resolution
(a tipping bucket: remainders carry, so totals are exact). Labels are
computed from the generated series with the CMA rainstorm criteria:
``rainstorm blue`` (>= 50 mm in 12 h), ``yellow`` (6 h), ``orange`` (3 h),
``red`` (>= 100 mm in 3 h), each from the first to the last reading whose
trailing sum meets it.
"""

from __future__ import annotations

import math

from cityeye.sensor_registry import Sensor
from simulators.common import (Clock, Label, SimReading, Storm, TippingBucket, episodes, local_hour, rng_for,
                               showers_for, trailing_sums)

__all__ = ["generate", "RAINSTORM_SIGNALS"]

#: (label, window hours, threshold mm), lowest first: the CMA rainstorm signals
RAINSTORM_SIGNALS: tuple[tuple[str, float, float], ...] = (
    ("rainstorm blue", 12.0, 50.0),
    ("rainstorm yellow", 6.0, 50.0),
    ("rainstorm orange", 3.0, 50.0),
    ("rainstorm red", 3.0, 100.0),
)


def generate(sensor: Sensor, clock: Clock, scenario: str, seed: int,
             storm: Storm | None) -> tuple[list[SimReading], list[Label]]:
    """The station's readings over ``clock`` and the rainstorm labels they earn."""
    rng = rng_for(seed, sensor.id, "weather")
    factor = rng.uniform(0.9, 1.15)  # this station's share of the city storm
    showers = showers_for(clock, seed, sensor.id)
    bucket = TippingBucket()
    times = clock.times(sensor.interval_s)
    readings, rain = [], []
    for t in times:
        prev = t - sensor.interval_s
        mm = sum(s.rain_between(prev, t) for s in showers)
        wet = 0.0
        if storm is not None:
            mm += factor * storm.rain_between(prev, t)
            wet = storm.intensity(t)
        hour = local_hour(t)
        temp = 27.0 + 4.0 * math.cos(2 * math.pi * (hour - 15.0) / 24.0) - 4.5 * wet + rng.gauss(0, 0.2)
        humidity = 72.0 - 14.0 * math.cos(2 * math.pi * (hour - 15.0) / 24.0) * (1 - wet) + 22.0 * wet
        wind = max(0.0, 2.5 + 0.8 * math.sin(2 * math.pi * hour / 24.0) + 8.0 * wet + rng.gauss(0, 0.5))
        gust = wind * rng.uniform(1.3, 1.7)
        tipped = bucket(mm)
        rain.append(tipped)
        readings.append(SimReading(sensor.id, "weather", sensor.district, t, {
            "rain_mm": tipped,
            "temp_c": round(temp, 1),
            "humidity_pct": round(min(100.0, max(5.0, humidity + rng.gauss(0, 1.0))), 1),
            "wind_ms": round(wind, 1),
            "gust_ms": round(gust, 1),
        }))
    labels = []
    for name, hours, threshold in RAINSTORM_SIGNALS:
        sums = trailing_sums(times, rain, hours * 3600.0)
        for start, end in episodes(times, [s >= threshold for s in sums]):
            labels.append(Label(sensor.id, name, start, end))
    return readings, labels
