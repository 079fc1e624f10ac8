"""River gauge: tide, rain-driven rise and recession; a flood in ``flood``/``all``.

The level is ``base + tide + rise + noise``. ``rise`` is a linear reservoir
fed by rain on the catchment (the city storm and light showers): each step
it recedes by ``exp(-dt / 4 h)`` and gains ``k`` metres per mm. In the flood
scenario ``k`` is solved so that the peak reaches the gauge's guaranteed
level (``guaranteed_m`` from the registry, 保证水位) plus 5 cm: above the
warning level and at least the orange flood signal, whatever the tide and
noise at that moment. In ``normal`` the river stays more than a metre
below its warning level.

Labels (from the series, episodes closer than 30 min merged):
``flood above warning level``, ``flood above guaranteed level``,
``flood above historical maximum``.
"""

from __future__ import annotations

import math

from cityeye.sensor_registry import Sensor
from simulators.common import Clock, Label, SimReading, Storm, episodes, rng_for, showers_for

__all__ = ["generate", "levels_of"]

_RECESSION_S = 4 * 3600.0
_TIDE_PERIOD_S = 12.42 * 3600.0  # semi-diurnal (M2) tide: the demo rivers are tidal
_TIDE_AMPLITUDE_M = 0.25
_NOISE_M = 0.01
_MERGE_S = 1800.0


def levels_of(sensor: Sensor) -> dict[str, float]:
    """The gauge's warning / guaranteed / historical maximum levels (defaults if unset)."""
    warning = sensor.levels.get("warning_m", 4.0)
    guaranteed = sensor.levels.get("guaranteed_m", warning + 0.7)
    historical = sensor.levels.get("historical_max_m", guaranteed + 0.6)
    return {"warning_m": warning, "guaranteed_m": guaranteed, "historical_max_m": historical}


def generate(sensor: Sensor, clock: Clock, scenario: str, seed: int,
             storm: Storm | None) -> tuple[list[SimReading], list[Label]]:
    """The gauge's readings over ``clock`` and its flood labels."""
    rng = rng_for(seed, sensor.id, "water_level")
    levels = levels_of(sensor)
    base = levels["warning_m"] - 1.6
    phase = rng.uniform(0, 2 * math.pi)
    showers = showers_for(clock, seed, sensor.id)
    times = clock.times(sensor.interval_s)
    decay = math.exp(-sensor.interval_s / _RECESSION_S)

    storm_rise, shower_rise, s_acc, w_acc = [], [], 0.0, 0.0
    for t in times:
        prev = t - sensor.interval_s
        s_acc = s_acc * decay + (storm.rain_between(prev, t) if storm else 0.0)
        w_acc = w_acc * decay + sum(s.rain_between(prev, t) for s in showers)
        storm_rise.append(s_acc)
        shower_rise.append(0.01 * w_acc)
    background = [base + _TIDE_AMPLITUDE_M * math.sin(2 * math.pi * (t - clock.start) / _TIDE_PERIOD_S + phase)
                  + shower_rise[i] + rng.gauss(0, _NOISE_M) for i, t in enumerate(times)]

    k = 0.0
    if storm is not None:  # metres per mm so that the peak reaches the target
        target = levels["guaranteed_m"] + 0.05
        k = min(((target - background[i]) / storm_rise[i] for i in range(len(times)) if storm_rise[i] > 1e-6),
                default=0.0)
    series = [round(background[i] + k * storm_rise[i] + (0.001 if k else 0.0), 3) for i in range(len(times))]

    readings = [SimReading(sensor.id, "water_level", sensor.district, t, {"level_m": level})
                for t, level in zip(times, series)]
    labels = []
    for name, key in (("flood above warning level", "warning_m"), ("flood above guaranteed level", "guaranteed_m"),
                      ("flood above historical maximum", "historical_max_m")):
        for start, end in episodes(times, [v >= levels[key] for v in series], _MERGE_S):
            labels.append(Label(sensor.id, name, start, end))
    return readings, labels
