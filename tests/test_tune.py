"""``cityeye tune``: sweeps, the Pareto front, the recommendation and the YAML to paste."""

from __future__ import annotations

import json

import pytest
import yaml

from cityeye.errors import ConfigError
from detectors.rulebook import parse_rulebook
from evaluation.tune import parse_axis, pareto, recommend
from launch.cli import main as cli_main


def row(detected, lead, false, missed=0, name="x"):
    return {"setting": {"k.c.p": name}, "events": 4, "detected": detected, "missed": missed,
            "median_lead_min": lead, "false_per_sensor_month": false}


def test_axes_parse_values_as_yaml_and_refuse_bad_names():
    assert parse_axis("water_level.forecast.window_s=30m, 1h") == (("water_level", "forecast", "window_s"),
                                                                   ["30m", "1h"])
    assert parse_axis("water_level.rate_of_rise.rate_per_hour=0.1,0.2")[1] == [0.1, 0.2]
    for bad in ("forecast.window_s=1h", "water_level.forecast.window_s", "a.b.c="):
        with pytest.raises(ConfigError, match="expected KIND.CHECK.PARAMETER"):
            parse_axis(bad)


def test_pareto_front_and_recommendation_within_the_false_alert_budget():
    rows = [row(4, 200, 50.0, name="eager"), row(4, 75, 2.0, name="mid"), row(4, 75, 0.0, name="calm"),
            row(4, 60, 0.0, name="late"), row(3, 300, 0.0, missed=1, name="misses")]
    front = [r["setting"]["k.c.p"] for r in pareto(rows)]
    assert front == ["eager", "calm", "misses"]
    assert recommend(rows, budget=1.0)["setting"]["k.c.p"] == "calm"
    assert recommend(rows, budget=100.0)["setting"]["k.c.p"] == "eager"
    assert recommend([row(4, 10, 5.0, name="a"), row(4, 20, 9.0, name="b")], budget=1.0)["setting"]["k.c.p"] == "a"


def test_the_command_sweeps_a_simulation_and_writes_a_pasteable_recommendation(tmp_path, capsys):
    out = tmp_path / "tune"
    code = cli_main(["tune", "--simulate", "flood", "--days", "3", "--interval", "15m", "--out", str(out), "--quiet",
                     "--param", "water_level.rate_of_rise.rate_per_hour=0.1,0.3",
                     "--param", "water_level.forecast.horizon_s=1h,2h"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "recommended (paste into your rules file" in printed
    result = json.loads((out / "tune.json").read_text())
    assert len(result["rows"]) == 4 and result["pareto"] and result["recommended"] in result["rows"]
    assert all(r["events"] == 4 for r in result["rows"])  # two gauges, two labelled floods each
    eager = next(r for r in result["rows"] if r["setting"]["water_level.rate_of_rise.rate_per_hour"] == 0.1)
    calm = next(r for r in result["rows"] if r["setting"]["water_level.rate_of_rise.rate_per_hour"] == 0.3)
    assert eager["false_per_sensor_month"] > calm["false_per_sensor_month"]
    pasted = (out / "recommended.yaml").read_text()
    assert parse_rulebook(pasted, "recommended.yaml").version  # a valid rules file as it is
    assert set(yaml.safe_load(pasted)["kinds"]["water_level"]) == {"rate_of_rise", "forecast"}
    assert "<svg" in (out / "tune.html").read_text()
    png = (out / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
