"""At most 16 KB of state per sensor for every kind with default checks, whatever its readings did (issue #10).

Each kind runs through days of hard readings for its windows (a flood wave, a
12-hour downpour, a heat wave falling slowly through the night, storms), at
1-minute and at 10-second sampling, through the real per-sensor engine; the
JSON snapshot the worker stores must stay within 16 KB all along. Values come
at a device's resolution (1 mm of water level, 0.1 mm of rain, 0.1 °C, 0.1 m/s):
the windows hold readings, and their JSON length follows their digits. Traffic's
anomaly model is its own (detectors/, helper work on its compact state): for
traffic the bound is asserted on the rule checks and the engine's own state,
the model's share is printed.
"""

from __future__ import annotations

import json
import math
import random

import pytest

from cityeye.contracts import Reading
from cityeye.sensor_registry import Sensor, SensorRegistry
from streams.sensor_engine import SensorEngine

LIMIT = 16 * 1024
START = 1_800_000_000.0


def hard_values(kind: str, t: float, rng: random.Random) -> dict[str, float]:
    h = (t - START) / 3600.0
    if kind == "water_level":  # tide, a flood wave every day, noise
        wave = 2.0 * math.exp(-(((h % 24.0) - 12.0) / 3.0) ** 2)
        return {"level_m": round(3.3 + 0.6 * math.sin(2 * math.pi * h / 12.42) + wave + rng.gauss(0, 0.02), 3)}
    if kind == "weather":  # rain for 13 h of each day; 36-42 °C falling all night; a gusty storm
        rain = rng.randint(1, 15) / 10 if h % 24.0 < 13.0 else 0.0
        temp = 42.0 - 5.0 * ((h + 10.0) % 24.0) / 24.0 + rng.gauss(0, 0.05)
        return {"rain_mm": rain, "temp_c": round(temp, 1), "wind_ms": round(abs(rng.gauss(15, 6)), 1),
                "gust_ms": round(abs(rng.gauss(25, 8)), 1)}
    jam = 40.0 if (h % 3.0) < 0.4 else 0.0
    return {"speed_kmh": round(max(2.0, rng.gauss(60 - jam, 8)), 1), "flow_vph": round(abs(rng.gauss(1800, 300))),
            "occupancy_pct": round(min(100.0, abs(rng.gauss(18 + jam, 5))), 1)}


def run(kind: str, interval_s: float, hours: float):
    levels = {"warning_m": 4.5, "guaranteed_m": 5.2, "historical_max_m": 5.86} if kind == "water_level" else {}
    sensor = Sensor(id="s-1", kind=kind, district="d", lat=31.2, lon=121.5, interval_s=interval_s, levels=levels)
    engine = SensorEngine(SensorRegistry({"s-1": sensor}))
    rng = random.Random(11)
    sizes = []
    for k in range(int(hours * 3600 / interval_s)):
        t = START + k * interval_s
        engine.process(Reading("s-1", kind, "d", t, hard_values(kind, t, rng), t, "x"), position=k)
        if k % 500 == 0:
            sizes.append(json.loads(json.dumps(engine.snapshot("s-1"))))
    sizes.append(engine.snapshot("s-1"))
    return sizes


@pytest.mark.parametrize("kind", ["water_level", "weather"])
@pytest.mark.parametrize("interval_s, hours", [(60.0, 72.0), (10.0, 26.0)])
def test_a_sensors_state_stays_within_16_kb(kind, interval_s, hours):
    snaps = run(kind, interval_s, hours)
    biggest = max(len(json.dumps(s)) for s in snaps)
    assert biggest <= LIMIT, f"{kind} at {interval_s:g} s: {biggest} bytes"
    # the windows did fill: the bound is not met by an empty state
    assert biggest > 2048


@pytest.mark.parametrize("interval_s, hours", [(60.0, 72.0), (10.0, 12.0)])
def test_traffic_rule_checks_and_engine_state_stay_within_16_kb(interval_s, hours):
    snaps = run("traffic", interval_s, hours)
    model = max(len(json.dumps(s["checks"]["traffic.speed_anomaly"])) for s in snaps)
    rest = max(len(json.dumps({**s, "checks": {k: v for k, v in s["checks"].items() if k != "traffic.speed_anomaly"}}))
               for s in snaps)
    print(f"traffic at {interval_s:g} s: anomaly model {model} bytes, rule checks and engine {rest} bytes")
    assert rest <= LIMIT
