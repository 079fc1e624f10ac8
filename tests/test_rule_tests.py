"""``cityeye rules test / show / check``: promtool-style rule tests and the rules a sensor gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.rule_tests import RuleTestError, run_rule_test_file
from evaluation.series_notation import SeriesError, expand_series
from launch.cli import main as cli_main

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "detectors" / "default_rules.test.yaml"

HEADER = """\
sensors:
  - {id: wl-t, kind: water_level, district: test, lat: 31.2, lon: 121.5, interval_s: 60,
     levels: {warning_m: 4.5, guaranteed_m: 5.2}}
"""


def test_the_shipped_rules_pass_their_shipped_tests():
    results = run_rule_test_file(SHIPPED)
    assert len(results) >= 6
    assert [r.failures for r in results if not r.passed] == []
    assert all(r.events for r in results)  # every test saw the alerts it expects come and go


def test_a_wrong_expectation_fails_with_what_was_firing(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    path.write_text(HEADER + """\
tests:
  - name: warning level reached
    sensor: wl-t
    series: {level_m: "4.0x4 4.6x5"}
    expect:
      - {at: 4m, firing: [{rule: water_level.warning, severity: yellow}]}
      - {at: 7m, firing: [{rule: water_level.warning, severity: orange}]}
""")
    [result] = run_rule_test_file(path)
    assert result.failures == [
        "at 4m: expected [water_level.warning yellow], got []",
        "at 7m: expected [water_level.warning orange], got [water_level.warning yellow]",
    ]
    assert (7 * 60.0, "water_level.warning", "firing", "yellow") in result.events
    assert cli_main(["rules", "test", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "0 passed, 1 failed" in out
    assert cli_main(["rules", "test", str(SHIPPED)]) == 0


@pytest.mark.parametrize("body, message", [
    ("tests:\n  - {name: x, sensor: wl-t, series: {level_m: 1}, expect: [], colour: red}\n",
     r"t.yaml:5: tests.0.colour: unknown key"),
    ("tests:\n  - {name: x, sensor: wl-9, series: {level_m: 1}, expect: []}\n",
     r"t.yaml:5: tests\[0\].sensor: 'wl-9' is not in the test file's sensors"),
    ("tests:\n  - {name: x, sensor: wl-t, series: {level_m: '1+x3'}, expect: []}\n",
     r"t.yaml:5: tests\[0\]: '1\+x3' is not a series segment"),
    ("tests:\n  - {name: x, sensor: wl-t, series: {level_m: 1}, expect: [{at: soon}]}\n",
     r"t.yaml:5: tests\[0\]: 'soon' is not a duration"),
])
def test_a_bad_test_file_is_refused_naming_file_line_and_field(tmp_path, body, message):
    path = tmp_path / "t.yaml"
    path.write_text(HEADER + body)
    with pytest.raises(RuleTestError, match=message):
        run_rule_test_file(path)


def test_series_notation_follows_promtool():
    assert expand_series("1x3") == [1.0, 1.0, 1.0, 1.0]
    assert expand_series("1+0.5x2 3-1x2") == [1.0, 1.5, 2.0, 3.0, 2.0, 1.0]
    assert expand_series("-2 _x1 1e1") == [-2.0, None, None, 10.0]
    assert expand_series(4.5) == [4.5]
    for bad in ("", "x3", "1x", "1+-2x3", "1x2000000", "nan"):
        with pytest.raises(SeriesError):
            expand_series(bad)


def test_rules_show_prints_each_value_with_its_layer(tmp_path, capsys):
    rules = tmp_path / "rules.yaml"
    rules.write_text("districts:\n  huangpu:\n    water_level:\n      rate_of_rise: {rate_per_hour: 0.1}\n")
    assert cli_main(["rules", "show", "wl-huangpu-01", "--rules", str(rules)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip().startswith("rate_per_hour"))
    assert "0.1" in line and f"districts.huangpu.water_level ({rules}:4)" in line
    assert "window_s" in out and '["1h", "3 readings"] = 3600.0' in out


def test_rules_check_refuses_a_registry_level_typo(tmp_path, capsys):
    registry = tmp_path / "registry.yaml"
    registry.write_text("sensors:\n  - {id: wl-x, kind: water_level, district: d, lat: 31, lon: 121,\n"
                        "     levels: {warnng_m: 4.5}}\n")
    assert cli_main(["rules", "check", "--registry", str(registry), "--rules", ""]) == 2
    assert "sensor wl-x: levels.warnng_m: no rule of water_level reads this level" in capsys.readouterr().err
    registry.write_text("sensors:\n  - {id: wl-x, kind: water_level, district: d, lat: 31, lon: 121, interval_s: 900,\n"
                        "     levels: {warning_m: 4.5}}\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text("kinds:\n  water_level:\n    forecast: {window_s: 30m}\n")
    assert cli_main(["rules", "check", "--registry", str(registry), "--rules", str(rules)]) == 0
    out = capsys.readouterr().out
    assert "wl-x water_level.forecast: window_s 1800 s holds at most 3 readings" in out
