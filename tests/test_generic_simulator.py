"""The generic simulated sensor: kinds declared by configuration simulate from their profile and events."""

from __future__ import annotations

import pytest

from cityeye.errors import ConfigError
from cityeye.kinds import InjectedEvent, KindsError, kinds_declared, parse_kinds
from cityeye.sensor_registry import parse_registry
from evaluation.backtest.data import from_simulation
from alerts.config import load_alerting_config
from evaluation.backtest.command import run_backtest
from simulators.common import Clock
from simulators.generic import event_offset
from simulators.simulation import simulate
from tests.test_kinds import RIVER_TEMPERATURE

T0 = 1_782_864_000.0  # 2026-07-01T00:00:00Z
EXAMPLES = parse_registry("""\
sensors:
  - {id: aq-1, kind: air_quality, district: d, lat: 31.2, lon: 121.5, interval_s: 300}
  - {id: mh-1, kind: manhole, district: d, lat: 31.2, lon: 121.5, interval_s: 60,
     levels: {warning_depth_m: 1.5, shaft_depth_m: 3.0}}
""")


def test_the_three_shapes():
    step, ramp, spike = (InjectedEvent(field="x", shape=shape, start_h=1, duration_h=2, size=10, label=shape)
                         for shape in ("step", "ramp", "spike"))
    at = [T0 + h * 3600 for h in (0.5, 1, 2, 2.99, 3)]
    assert [event_offset(step, t, T0, 60) for t in at] == [0, 10, 10, 10, 0]
    assert [round(event_offset(ramp, t, T0, 60), 2) for t in at] == [0, 0, 5, 9.95, 0]
    assert [event_offset(spike, t, T0, 60) for t in (T0 + 3540, T0 + 3600, T0 + 3659, T0 + 3660)] == [0, 10, 10, 0]


def test_example_kinds_simulate_with_labels_deterministically_inside_their_ranges():
    clock = Clock(T0, 24.0)
    readings, labels = simulate(EXAMPLES, "all", 7, clock)
    assert (readings, labels) == simulate(EXAMPLES, "all", 7, clock)
    assert {r.kind for r in readings} == {"air_quality", "manhole"}
    assert len([r for r in readings if r.sensor_id == "mh-1"]) == 24 * 60
    assert {(lab.sensor_id, lab.label) for lab in labels} == {
        ("aq-1", "haze episode"), ("aq-1", "ozone episode"),
        ("mh-1", "surcharge"), ("mh-1", "cover lifted"), ("mh-1", "methane build-up")}
    lifted = next(lab for lab in labels if lab.label == "cover lifted")
    assert (lifted.start, lifted.end) == (T0 + 9.5 * 3600, T0 + 10 * 3600 - 60)
    tilt = {r.ts: r.values["tilt_deg"] for r in readings if r.sensor_id == "mh-1"}
    assert tilt[lifted.start] > 15 > 5 > max(v for t, v in tilt.items() if not lifted.start <= t <= lifted.end)
    assert all(r.values["h2s_ppm"] >= 0 for r in readings if r.kind == "manhole")  # clamped to the physical range
    quiet, none = simulate(EXAMPLES, "normal", 7, clock)
    assert none == [] and max(r.values["tilt_deg"] for r in quiet if r.sensor_id == "mh-1") < 2


def test_the_shipped_rules_warn_of_every_simulated_event_and_stay_quiet_on_normal_days():
    flood, _, _ = run_backtest(from_simulation(EXAMPLES, "all", 7, T0, 48.0), None, load_alerting_config(None))
    assert (flood["summary"]["events"], flood["summary"]["detected"], flood["summary"]["false_alerts"]) == (6, 6, 0)
    normal, _, _ = run_backtest(from_simulation(EXAMPLES, "normal", 7, T0, 7 * 24.0), None, load_alerting_config(None))
    assert normal["summary"]["episodes"] == 0


def test_a_configured_kind_without_a_profile_cannot_be_simulated(tmp_path):
    (tmp_path / "kinds.yaml").write_text(RIVER_TEMPERATURE)
    with kinds_declared(tmp_path / "kinds.yaml"):
        registry = parse_registry("sensors:\n  - {id: rt-1, kind: river_temperature, district: d, lat: 1, lon: 1}\n")
        with pytest.raises(ConfigError, match="no simulator for kind\\(s\\) river_temperature: declare a 'simulation'"):
            simulate(registry, "all", 7, Clock(T0, 1.0))
        (tmp_path / "kinds.yaml").write_text(RIVER_TEMPERATURE + "    simulation:\n      fields:\n"
                                             "        water_temp_c: {baseline: 18, noise: 0.1}\n")
    with kinds_declared(tmp_path / "kinds.yaml"):
        readings, labels = simulate(registry, "all", 7, Clock(T0, 1.0))
        assert len(readings) == 60 and labels == [] and 17 < readings[0].values["water_temp_c"] < 19


@pytest.mark.parametrize("simulation, where", [
    ("      fields: {water_temp_c: {baseline: 18, noize: 1}}\n",
     "<t>:8: kinds.river_temperature.simulation.fields.water_temp_c.noize: Extra inputs are not permitted"),
    ("      fields: {air_temp_c: {baseline: 18}}\n",
     "<t>:8: kinds.river_temperature.simulation.fields.air_temp_c: 'air_temp_c' is not one of the kind's fields"),
    ("      fields: {water_temp_c: {baseline: 18}}\n      events:\n"
     "        - {field: water_temp_c, shape: wave, start_h: 1, size: 2, label: x}\n",
     "<t>:10: kinds.river_temperature.simulation.events.0.shape: Input should be 'step', 'ramp' or 'spike'"),
])
def test_a_bad_simulation_profile_names_file_line_and_field(simulation, where):
    with pytest.raises(KindsError) as err:
        parse_kinds(RIVER_TEMPERATURE + "    simulation:\n" + simulation, "<t>")
    assert str(err.value).startswith(where)
