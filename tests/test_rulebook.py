"""Rules as configuration: layers, provenance, sampling-aware values, and errors naming file, line and field."""

from __future__ import annotations

import pytest

from cityeye.sensor_registry import Sensor, SensorRegistry
from detectors.rule_library import CHECK_TYPES, build_check, check_params, parse_duration
from detectors.rulebook import RulesError, load_rulebook, parse_rulebook


def sensor(kind="water_level", district="huangpu", sid="wl-1", interval_s=60.0, tags=(), **levels) -> Sensor:
    s = Sensor(id=sid, kind=kind, district=district, lat=31.2, lon=121.5, interval_s=interval_s,
               levels=levels or {"warning_m": 4.5, "guaranteed_m": 5.2, "historical_max_m": 5.86})
    if tags:
        object.__setattr__(s, "tags", tuple(tags))
    return s


def by_name(rulebook, s):
    return {eff.name: (eff, built) for eff, built in rulebook.build(s)}


RULES = """\
kinds:
  water_level:
    rate_of_rise: {rate_per_hour: 0.1}
    surge:
      type: rate_of_change
      field: level_m
      rate_per_hour: 1.0
      window_s: 15m
      severity: orange
districts:
  pudong:
    water_level:
      rate_of_rise: {rate_per_hour: 0.2}
groups:
  slow-river:
    water_level:
      forecast: {window_s: [2h, 5 readings], horizon_s: 3h}
      warning:
        levels: {blue: "registry:warning_m - 0.1"}
sensors:
  wl-2:
    flatline: {enabled: false}
"""


def test_builtin_rules_give_the_documented_default_checks():
    rb = parse_rulebook(None)
    checks = rb.checks_for(sensor())
    assert [c.name for c in checks] == ["water_level.warning", "water_level.rate_of_rise", "water_level.forecast",
                                        "water_level.flatline", "water_level.stale"]
    warning, rate, forecast, flatline, stale = checks
    assert warning.levels == {"blue": 4.2, "yellow": 4.5, "orange": 5.2, "red": 5.86}
    assert (warning.hysteresis, warning.min_duration_s) == (0.05, 120.0)
    assert (rate.rate_per_hour, rate.window_s, rate.severity) == (0.3, 3600.0, "yellow")
    assert (forecast.level, forecast.horizon_s, forecast.window_s, forecast.min_points) == (4.5, 3600.0, 1800.0, 5)
    assert (flatline.repeats, flatline.severity) == (60, "blue")
    assert (stale.expected_interval_s, stale.missed_intervals) == (60.0, 5)
    assert [c.name for c in rb.checks_for(sensor("weather", sid="wx"))] == [
        "weather.rainstorm", "weather.high_temperature", "weather.wind", "weather.stale"]
    assert [c.name for c in rb.checks_for(sensor("traffic", sid="tr"))] == ["traffic.speed_anomaly", "traffic.stale"]


def test_a_gauge_without_levels_gets_no_level_rules_and_a_registry_near_warning_band_wins():
    rb = parse_rulebook(None)
    assert [c.name for c in rb.checks_for(sensor(guaranteed_m=5.0))][:2] == ["water_level.warning",
                                                                             "water_level.rate_of_rise"]
    names = [c.name for c in rb.checks_for(sensor(interval_s=60.0, flood_year=1.0))]
    assert "water_level.warning" not in names and "water_level.forecast" not in names
    warning = rb.checks_for(sensor(warning_m=4.5, near_warning_m=0.1))[0]
    assert warning.levels == {"blue": 4.4, "yellow": 4.5}


def test_layers_apply_in_order_and_show_where_each_value_came_from():
    rb = parse_rulebook(RULES, "rules.yaml")
    plain = by_name(rb, sensor())
    assert plain["water_level.rate_of_rise"][1].check.rate_per_hour == 0.1
    assert plain["water_level.surge"][1].check.severity == "orange"
    eff = plain["water_level.rate_of_rise"][0]
    assert eff.source["rate_per_hour"] == "kinds.water_level (rules.yaml:3)"
    assert eff.source["window_s"] == "built-in"

    pudong_slow = by_name(rb, sensor(district="pudong", tags=["slow-river"]))
    assert pudong_slow["water_level.rate_of_rise"][1].check.rate_per_hour == 0.2
    assert pudong_slow["water_level.rate_of_rise"][0].source["rate_per_hour"] == "districts.pudong.water_level (rules.yaml:13)"
    forecast = pudong_slow["water_level.forecast"]
    assert (forecast[1].check.window_s, forecast[1].check.horizon_s) == (7200.0, 10800.0)
    assert forecast[0].source["horizon_s"] == "groups.slow-river.water_level (rules.yaml:17)"
    # a ladder merges severity by severity
    assert pudong_slow["water_level.warning"][1].check.levels == {"blue": 4.4, "yellow": 4.5, "orange": 5.2,
                                                                  "red": 5.86}

    assert "water_level.flatline" not in by_name(rb, sensor(sid="wl-2"))
    assert "water_level.flatline" in by_name(rb, sensor(sid="wl-3"))


def feed(checks, values, n=40):
    """``n`` readings a minute apart through ``checks``; their snapshots after."""
    for i in range(n):
        x = {field: v + 0.05 * i * (-1) ** i for field, v in values.items()}
        for check in checks:
            check.process(x, 1.8e9 + 60.0 * i)
    return [check.snapshot() for check in checks]


@pytest.mark.parametrize("kind, values", [("water_level", {"level_m": 4.0}),
                                          ("traffic", {"speed_kmh": 50.0, "flow_vph": 1800.0})])
def test_sensors_alike_share_the_resolved_rules_but_never_a_check_its_parameters_or_its_state(kind, values):
    rb = parse_rulebook(None)
    a, b = sensor(kind, sid="s-1"), sensor(kind, sid="s-2")
    assert rb._plan(a) is rb._plan(b)  # resolved once for both
    one, two = rb.checks_for(a), rb.checks_for(b)
    assert all(x is not y and x.rule_spec == y.rule_spec for x, y in zip(one, two))
    fresh = [c.snapshot() for c in two]
    fed = feed(one, values)
    assert fed != fresh and [c.snapshot() for c in two] == fresh  # readings of one sensor leave the other's state
    assert feed(two, values) == fed  # and the other, fed the same, gets to the same state
    if kind == "traffic":
        assert one[0].detector is not two[0].detector
    else:
        one[0].levels["yellow"] = 99.0  # a check's parameters are its own
        assert rb.checks_for(b)[0].levels["yellow"] == 4.5 and rb._plan(a)[0].resolved["levels"]["yellow"] == 4.5
    # the same checks, parameters and notes as built from the declarations one sensor at a time
    for eff, built in rb.build(a):
        params = {k: v for k, v in eff.params.items() if k not in ("type", "enabled")}
        alone = build_check(eff.name, eff.type, params, dict(a.levels), a.interval_s)
        assert (alone.params, alone.notes, type(alone.check)) == (built.params, built.notes, type(built.check))
        assert feed([alone.check], values) == feed([built.check], values)


def test_sensors_alike_but_for_their_levels_interval_or_own_rules_get_their_own_checks():
    rb = parse_rulebook("sensors:\n  wl-2:\n    flatline: {repeats: 5}\n")
    checks = {s.id: {c.name: c for c in rb.checks_for(s)} for s in (
        sensor(sid="wl-1"), sensor(sid="wl-2"), sensor(sid="wl-3", warning_m=4.0), sensor(sid="wl-4", interval_s=900.0))}
    assert [c["water_level.flatline"].repeats for c in checks.values()] == [60, 5, 60, 60]
    assert [c["water_level.warning"].levels["yellow"] for c in checks.values()] == [4.5, 4.5, 4.0, 4.5]
    assert [c["water_level.stale"].expected_interval_s for c in checks.values()] == [60.0, 60.0, 60.0, 900.0]


def test_durations_count_readings_so_one_default_works_at_15_minute_sampling():
    rb = parse_rulebook(None)
    at_15 = by_name(rb, sensor(interval_s=900.0))
    forecast = at_15["water_level.forecast"][1]
    assert forecast.check.window_s == 4500.0 and forecast.notes == []
    warning = at_15["water_level.warning"][1]
    assert warning.check.min_duration_s == 0.0
    assert warning.notes == ["min_duration_s 120 s is shorter than one reporting interval (900 s): one reading"]
    assert at_15["water_level.stale"][1].check.expected_interval_s == 900.0
    assert parse_duration("1.5h", 60) == 5400.0


def test_a_check_that_cannot_work_at_the_sensors_sampling_says_so():
    rb = parse_rulebook("kinds:\n  water_level:\n    forecast: {window_s: 30m}\n", "r.yaml")
    notes = by_name(rb, sensor(interval_s=900.0))["water_level.forecast"][1].notes
    assert notes == ["window_s 1800 s holds at most 3 readings at 900 s sampling but min_points is 5: "
                     "it can never fire"]
    assert by_name(rb, sensor(interval_s=60.0))["water_level.forecast"][1].notes == []


@pytest.mark.parametrize("text, message", [
    ("kindz: {}\n", "r.yaml:1: kindz: unknown key; expected one of kinds, districts, groups, sensors"),
    ("kinds:\n  sewer: {}\n", "r.yaml:2: kinds.sewer: unknown kind"),
    ("kinds:\n  water_level:\n    rate_of_rise:\n      rate_per_huor: 0.1\n",
     "r.yaml:4: kinds.water_level.rate_of_rise.rate_per_huor: unknown parameter"),
    ("kinds:\n  water_level:\n    rate_of_rise:\n      rate_per_hour: fast\n",
     "r.yaml:4: kinds.water_level.rate_of_rise.rate_per_hour: 'fast' is not a number or 'registry:<level>'"),
    ("kinds:\n  water_level:\n    rate_of_rise: {window_s: 1 fortnight}\n",
     "r.yaml:3: kinds.water_level.rate_of_rise.window_s: '1 fortnight' is not a duration"),
    ("kinds:\n  water_level:\n    rate_of_rise: {type: flatline}\n",
     "r.yaml:3: kinds.water_level.rate_of_rise.type: cannot change the type of water_level.rate_of_rise"),
    ("kinds:\n  water_level:\n    surge: {rate_per_hour: 1}\n",
     "r.yaml:3: kinds.water_level.surge: water_level.surge is not a built-in check: it needs a 'type'"),
    ("kinds:\n  water_level:\n    surge: {type: tsunami}\n", "r.yaml:3: kinds.water_level.surge: unknown check type"),
    ("districts:\n  pudong:\n    water_level:\n      surge: {rate_per_hour: 1}\n",
     "r.yaml:4: districts.pudong.water_level.surge: water_level.surge is not a check of water_level"),
    ("kinds:\n  water_level:\n    warning:\n      levels: {blue: 'registry:warnng_m'}\n",
     None),  # a typo in a level name is caught against the registry (see below), not here
    ("kinds:\n  water_level:\n    warning:\n      levels: {blue: 'warning_m - 0.3'}\n",
     "r.yaml:4: kinds.water_level.warning.levels.blue: 'warning_m - 0.3' is not a number or 'registry:<level>'"),
    ("kinds:\n  water_level:\n    flatline: {enabled: maybe}\n", "r.yaml:3: kinds.water_level.flatline.enabled"),
    ("- just a list\n", "r.yaml:1: the top level must be a mapping"),
])
def test_bad_rules_files_are_refused_naming_file_line_and_field(text, message):
    if message is None:
        parse_rulebook(text, "r.yaml")
        return
    with pytest.raises(RulesError) as err:
        parse_rulebook(text, "r.yaml")
    assert str(err.value).startswith(message), str(err.value)


def test_sensor_entries_are_checked_against_the_registry():
    rb = parse_rulebook("sensors:\n  wl-9:\n    flatline: {enabled: false}\n", "r.yaml")
    with pytest.raises(RulesError, match=r"r.yaml:2: sensors.wl-9: no such sensor in the registry"):
        rb.check_registry(SensorRegistry({"wl-1": sensor()}))
    rb = parse_rulebook("sensors:\n  wl-1:\n    rainstorm: {enabled: false}\n", "r.yaml")
    with pytest.raises(RulesError, match=r"r.yaml:3: sensors.wl-1.rainstorm: rainstorm is not a check of sensor"):
        rb.check_registry(SensorRegistry({"wl-1": sensor()}))
    rb = parse_rulebook("sensors:\n  wl-1:\n    flatline: {repeats: many}\n", "r.yaml")
    with pytest.raises(RulesError, match=r"r.yaml:3: sensors.wl-1.flatline.repeats: "):
        rb.check_registry(SensorRegistry({"wl-1": sensor()}))


def test_every_parameter_of_every_check_type_is_settable():
    for type_name in CHECK_TYPES:
        params = check_params(type_name)
        assert "name" not in params and "detector" not in params
        assert params, type_name
    assert {"levels", "hysteresis", "min_duration_s", "reset", "direction"} <= set(check_params("warning_levels"))
    assert {"model", "model_params", "threshold", "min_count"} <= set(check_params("anomaly"))


def test_the_version_is_a_content_hash(tmp_path):
    assert parse_rulebook(None).version == parse_rulebook(None).version
    a = parse_rulebook("kinds:\n  water_level:\n    flatline: {repeats: 30}\n")
    b = parse_rulebook("kinds:\n  water_level:\n    flatline: {repeats: 31}\n")
    assert len({a.version, b.version, parse_rulebook(None).version}) == 3
    path = tmp_path / "rules.yaml"
    path.write_text("kinds:\n  water_level:\n    flatline: {repeats: 30}\n")
    assert load_rulebook(path).version == a.version
    with pytest.raises(RulesError, match="cannot read the rules file"):
        load_rulebook(tmp_path / "missing.yaml")


def test_an_anomaly_check_takes_its_model_and_parameters_from_the_rules():
    rb = parse_rulebook("kinds:\n  traffic:\n    speed_anomaly: {model: context_novelty, threshold: 0.8}\n")
    check = rb.checks_for(sensor("traffic", sid="tr"))[0]
    assert type(check.detector).__name__ == "ContextNoveltyDetector" and check.threshold == 0.8


def test_a_registry_level_no_rule_reads_is_an_error_not_a_silently_dropped_flood_rule():
    rb = parse_rulebook(None)
    assert rb.level_keys("water_level") == {"warning_m", "near_warning_m", "guaranteed_m", "historical_max_m"}
    typo = SensorRegistry({"wl-1": sensor(warnng_m=4.5, guaranteed_m=5.2)}, source="registry.yaml")
    with pytest.raises(RulesError, match=r"registry.yaml: sensor wl-1: levels.warnng_m: no rule of water_level "
                                         r"reads this level; expected one of guaranteed_m, historical_max_m"):
        rb.check_registry(typo)
    rb.check_registry(SensorRegistry({"wl-1": sensor()}))
    # a level a rules file reads becomes a known one
    custom = parse_rulebook("kinds:\n  water_level:\n    flatline: {enabled: true}\n"
                            "    alarm: {type: warning_levels, field: level_m, levels: {red: 'registry:dike_top_m'}}\n")
    custom.check_registry(SensorRegistry({"wl-1": sensor(warning_m=4.5, dike_top_m=7.0)}))
