"""The shipped gauge rules on simulated gauges at 1-minute and 15-minute sampling (issue #9's targets).

* a warning at least 30 minutes before each crossing of the warning level (the simulator's
  "flood above warning level" labels), whatever the sampling;
* no alert at all on simulated normal weeks.

Three seeds each, the two demo gauges, the real per-sensor engine (evaluation/backtest).
"""

from __future__ import annotations

import pytest

from cityeye.contracts import parse_ts
from cityeye.sensor_registry import SensorRegistry, load_registry
from evaluation.backtest.data import from_simulation
from evaluation.backtest.replay import episodes_of, run_sensors
from simulators import DEMO_REGISTRY

START = parse_ts("2026-07-01T00:00:00Z")


def gauges(interval_s: float) -> SensorRegistry:
    demo = load_registry(DEMO_REGISTRY)
    return SensorRegistry({s.id: s.model_copy(update={"interval_s": interval_s})
                           for s in demo if s.kind == "water_level"})


def episodes(interval_s: float, scenario: str, seed: int, days: float):
    registry = gauges(interval_s)
    ds = from_simulation(registry, scenario, seed, START, days * 24.0)
    runs = run_sensors(list(registry), ds.readings, None)
    return ds, episodes_of([e for r in runs for e in r.events])


@pytest.mark.parametrize("interval_s", [60.0, 900.0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_warning_level_crossing_is_warned_of_30_minutes_ahead(interval_s, seed):
    ds, eps = episodes(interval_s, "flood", seed, 2.0)
    crossings = [e for e in ds.events if e.label == "flood above warning level"]
    assert len(crossings) == 2
    for crossing in crossings:
        first = min(e.start for e in eps if e.sensor_id == crossing.sensor_id)
        assert crossing.start - first >= 30 * 60, (crossing, [(e.rule, e.start) for e in eps])


@pytest.mark.parametrize("interval_s", [60.0, 900.0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_normal_week_raises_no_gauge_alert(interval_s, seed):
    _, eps = episodes(interval_s, "normal", seed, 7.0)
    assert eps == []
