"""``cityeye backtest``: the real engine and alert lifecycle on recorded or simulated data, as a dry run."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from alerts.config import load_alerting_config, parse_alerting_config
from cityeye.contracts import parse_ts
from cityeye.sensor_registry import load_registry, parse_registry
from detectors.rulebook import parse_rulebook
from evaluation.backtest.command import run_backtest
from evaluation.backtest.data import DataError, Event, from_csv, from_parquet, from_simulation
from evaluation.backtest.replay import Episode
from evaluation.backtest.score import compare_episodes
from launch.cli import main as cli_main
from simulators import DEMO_REGISTRY


GAUGE = """\
sensors:
  - {id: river-1, kind: water_level, district: east, lat: 51.5, lon: -0.1, interval_s: 900,
     levels: {warning_m: 1.2, guaranteed_m: 1.6}}
"""
START = parse_ts("2019-02-01T00:00:00Z")


def gauge_csv(path: Path, levels: list[float], naive: bool = False) -> Path:
    """An Environment-Agency-style export: dateTime,value,quality, 15-minute readings, years old."""
    lines = ["dateTime,value,quality"]
    for i, v in enumerate(levels):
        t = START + i * 900
        stamp = __import__("datetime").datetime.utcfromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S")
        lines.append(f"{stamp}{'' if naive else 'Z'},{v},Good")
    lines.insert(5, "2019-02-01T01:00:00Z,,Missing")  # a gap as exports mark it
    path.write_text("\n".join(lines) + "\n")
    return path


def flood_levels() -> list[float]:
    # a week at 0.5 m, a rise of 0.1 m per reading to 1.9 m, a slow fall
    return [0.5] * 672 + [round(0.5 + 0.1 * k, 2) for k in range(15)] + [round(1.9 - 0.02 * k, 2) for k in range(70)] \
        + [0.5] * 200


def test_a_years_old_15_minute_gauge_export_is_backtested_on_its_own_clock(tmp_path):
    registry = parse_registry(GAUGE, "gauges.yaml")
    ds = from_csv([gauge_csv(tmp_path / "river-1.csv", flood_levels())], registry)
    assert ds.count == len(flood_levels())
    result, episodes, _ = run_backtest(ds, None, load_alerting_config(None))
    warning = [e for e in episodes if e.rule == "water_level.warning"]
    assert len(warning) == 1 and warning[0].max_severity == "orange"
    # yellow on the first reading at or above 1.2 m (a 2-minute hold is less than one 15-minute interval)
    crossing = START + (672 + 7) * 900
    assert (crossing, "yellow") in warning[0].severities
    # the crossing was warned of before it happened (rate of rise / forecast), on the data's own clock
    [score] = [s for s in result["sensors"] if s["sensor_id"] == "river-1"]
    assert score["events"] == 1 and score["detected"] == 1 and score["lead_min"][0] >= 30
    assert score["false_alerts"] == 0
    # the dispatcher's lifecycle ran on data time: the escalation to orange was notified, nothing flapped
    reasons = [(n["reason"], n["summary"]) for n in result["notifications"]]
    assert any("orange" in s for _, s in reasons) and not any(r == "flapping" for r, _ in reasons)
    assert all(abs(n["at"] - START) < 20 * 86400 for n in result["notifications"])


def test_naive_timestamps_need_an_explicit_time_zone(tmp_path):
    registry = parse_registry(GAUGE, "gauges.yaml")
    path = gauge_csv(tmp_path / "river-1.csv", [0.5] * 10, naive=True)
    with pytest.raises(DataError, match=r"river-1.csv:2: '2019-02-01T00:00:00' has no UTC offset; say which time "
                                        r"zone"):
        from_csv([path], registry)
    in_london = from_csv([path], registry, tz="Europe/London").readings["river-1"][0].ts
    in_shanghai = from_csv([path], registry, tz="Asia/Shanghai").readings["river-1"][0].ts
    assert in_london == START and in_london - in_shanghai == 8 * 3600
    with pytest.raises(DataError, match="unknown time zone"):
        from_csv([path], registry, tz="Mars/Olympus")


def test_long_format_csv_and_unknown_sensors(tmp_path):
    registry = load_registry(DEMO_REGISTRY)
    path = tmp_path / "long.csv"
    path.write_text("sensor_id,ts,level_m,rain_mm\nwl-huangpu-01,1790000000,4.1,\nwx-huangpu-01,1790000000,,0.5\n"
                    "wl-huangpu-01,1790000060,4.2,\n")
    ds = from_csv([path], registry)
    assert [r.values for r in ds.readings["wl-huangpu-01"]] == [{"level_m": 4.1}, {"level_m": 4.2}]
    assert ds.readings["wx-huangpu-01"][0].values == {"rain_mm": 0.5}
    path.write_text("sensor_id,ts,level_m\nwl-nowhere,1790000000,4.1\n")
    with pytest.raises(DataError, match=r"long.csv:2: sensor 'wl-nowhere' is not in the registry"):
        from_csv([path], registry)


def test_a_backtest_is_a_dry_run_nothing_is_notified(tmp_path):
    hits = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        alerting = parse_alerting_config({
            "receivers": [{"name": "hook", "type": "webhook", "url": f"http://127.0.0.1:{server.server_port}/x"}],
            "route": {"receiver": "hook", "group_wait": "0s"}})
        ds = from_simulation(load_registry(DEMO_REGISTRY), "flood", 1, parse_ts("2026-07-01T00:00:00Z"), 24.0)
        result, _, _ = run_backtest(ds, None, alerting)
    finally:
        server.shutdown()
    assert len(result["notifications"]) > 5 and {n["receiver"] for n in result["notifications"]} == {"hook"}
    assert hits == []


def test_workers_split_by_sensor_and_give_the_same_result():
    ds = from_simulation(load_registry(DEMO_REGISTRY), "all", 3, parse_ts("2026-07-01T00:00:00Z"), 12.0)
    one, _, _ = run_backtest(ds, None, load_alerting_config(None), workers=1)
    two, _, _ = run_backtest(ds, None, load_alerting_config(None), workers=2)
    assert one["episodes"] == two["episodes"] and one["notifications"] == two["notifications"]
    assert one["episodes"]


def test_compare_lists_alerts_added_removed_and_shifted():
    def ep(sid, rule, start, end, sev="yellow"):
        return Episode(sid, rule, f"{sid}{rule}{start}", start, end, [(start, sev)])

    before = [ep("a", "r", 100, 200), ep("a", "r", 1000, 1100), ep("b", "q", 50, 60)]
    after = [ep("a", "r", 40, 210, "orange"), ep("b", "q", 50, 60), ep("c", "r", 5, 6)]
    diff = compare_episodes(before, after)
    assert [d["sensor_id"] for d in diff["added"]] == ["c"]
    assert [(d["sensor_id"], d["start"]) for d in diff["removed"]] == [("a", 1000)]
    assert diff["shifted"] == [{"sensor_id": "a", "rule": "r", "start_before": 100, "start_after": 40,
                                "shift_min": -1.0, "severity_before": "yellow", "severity_after": "orange"}]


def test_the_command_writes_json_and_an_html_report_that_chromium_renders(tmp_path, capsys):
    rules = tmp_path / "earlier.yaml"
    rules.write_text("kinds:\n  water_level:\n    rate_of_rise: {rate_per_hour: 0.6}\n")
    out = tmp_path / "out"
    code = cli_main(["backtest", "--simulate", "flood", "--days", "2", "--interval", "15m", "--compare", str(rules),
                     "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "events warned of" in printed and f"vs {rules}:" in printed
    result = json.loads((out / "result.json").read_text())
    assert result["summary"]["events"] == result["summary"]["detected"] + result["summary"]["missed"] > 0
    assert result["compare"]["diff"]["shifted"] or result["compare"]["diff"]["added"]
    # the earlier rules (rate of rise at 0.6 m/h) warn later: the lead time change is positive somewhere
    assert result["compare"]["lead_change_min"] and max(result["compare"]["lead_change_min"].values()) > 0
    chromium = shutil.which("chromium")
    assert chromium, "chromium is installed by scripts/bootstrap test"
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'chr'}",
                          "--dump-dom", (out / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert "<h1>Backtest: simulation flood seed 1</h1>" in dom
    assert dom.count("<svg") == 6 and 'aria-label="wl-huangpu-01 level_m"' in dom
    assert "water_level.warning orange" in dom and "flood above warning level" in dom
    assert "http://" not in dom.split("</head>")[1].replace('xmlns="http://www.w3.org/2000/svg"', "")
    pngs = sorted((out / "plots").glob("*.png"))
    assert [p.stem for p in pngs] == sorted(result_sensors := [s["sensor_id"] for s in result["sensors"]])
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in pngs)
    assert len(result_sensors) == 6


def test_bad_input_exits_2_with_the_reason(tmp_path, capsys):
    assert cli_main(["backtest", "--out", str(tmp_path)]) == 2
    assert "give one data source" in capsys.readouterr().err
    assert cli_main(["backtest", "--csv", str(tmp_path / "none.csv"), "--out", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_labelled_event_scoring_counts_misses_and_false_alerts():
    from evaluation.backtest.score import score_sensor

    ds = from_simulation(load_registry(DEMO_REGISTRY), "normal", 1, parse_ts("2026-07-01T00:00:00Z"), 24.0)
    ds.events = [Event("wl-huangpu-01", "made up", ds.span()[0] + 3600, ds.span()[0] + 7200)]
    far = Episode("wl-huangpu-01", "water_level.warning", "x", ds.span()[0] + 20 * 3600,
                  ds.span()[0] + 21 * 3600, [(ds.span()[0] + 20 * 3600, "yellow")])
    stale = Episode("wl-huangpu-01", "water_level.stale", "y", ds.span()[0] + 5 * 3600, None,
                    [(ds.span()[0] + 5 * 3600, "yellow")])
    score = score_sensor(ds, "wl-huangpu-01", [far, stale])
    assert score.detected == 0 and len(score.missed) == 1 and score.false_alerts == [far]
    assert score.false_per_month == pytest.approx(1 / ((ds.span()[1] - ds.span()[0]) / (30.44 * 86400)))


async def test_a_kafka_time_range_is_read_without_a_group_and_cut_by_reading_time(kafka, tmp_path):
    from cityeye.contracts import readings_topic
    from cityeye.kafka import make_producer
    from evaluation.backtest.remote import from_kafka

    registry = load_registry(DEMO_REGISTRY)
    producer = make_producer(kafka.settings, "test")
    await producer.start()
    t0 = parse_ts("2026-07-01T00:00:00Z")
    try:
        for i in range(120):
            r = {"sensor_id": "wl-huangpu-01", "kind": "water_level", "district": "huangpu", "ts": t0 + 60 * i,
                 "values": {"level_m": 4.0 + i * 0.01}, "received_at": t0 + 60 * i, "mqtt_topic": "x"}
            await producer.send_and_wait(readings_topic("water_level"), json.dumps(r).encode(), key=b"wl-huangpu-01")
        await producer.send_and_wait(readings_topic("water_level"), b"{not a reading", key=b"junk")
    finally:
        await producer.stop()
    ds = await from_kafka(kafka.settings, registry, ["water_level"], t0 + 600, t0 + 1800)
    rows = ds.readings["wl-huangpu-01"]
    assert [r.ts for r in rows] == [t0 + 60 * i for i in range(10, 30)]
    assert rows[0].values == {"level_m": 4.1} and "1 records that are not readings skipped" in ds.source
    settings = tmp_path / "cityeye.yaml"
    settings.write_text(f"kafka: {{bootstrap: '{kafka.settings.bootstrap}', profile: tansu}}\n")
    import asyncio

    assert await asyncio.to_thread(cli_main, [  # the command runs its own event loop
        "backtest", "--config", str(settings), "--kafka", "water_level", "--from", "2026-07-01T00:00:00Z",
        "--to", "2026-07-01T02:00:00Z", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert json.loads((tmp_path / "o" / "result.json").read_text())["summary"]["readings"] == 120


def test_an_influxdb_query_gives_one_sensor_per_series(influx_server, influx_db, tmp_path):
    import urllib.request

    from cityeye.config import InfluxSettings
    from evaluation.backtest.remote import from_influx

    t0 = int(parse_ts("2025-08-16T00:00:00Z"))
    lines = "\n".join(f"gauges,sensor_id=wl-huangpu-01 level_m={4.0 + i / 100} {t0 + 900 * i}" for i in range(50))
    lines += "\n" + "\n".join(f"gauges,sensor_id=wl-minhang-01 level_m={3.0} {t0 + 900 * i}" for i in range(20))
    req = urllib.request.Request(f"{influx_server.url}/write?db={influx_db}&precision=s", data=lines.encode())
    urllib.request.urlopen(req, timeout=10).read()
    settings = InfluxSettings(api="v1", url=influx_server.url, database=influx_db)
    ds = from_influx(settings, load_registry(DEMO_REGISTRY),
                     "SELECT level_m FROM gauges WHERE time >= '2025-08-16T02:00:00Z' GROUP BY sensor_id")
    assert len(ds.readings["wl-huangpu-01"]) == 42 and len(ds.readings["wl-minhang-01"]) == 12
    assert ds.readings["wl-huangpu-01"][0].ts == t0 + 2 * 3600 and ds.readings["wl-huangpu-01"][0].values == {
        "level_m": 4.08}
    with pytest.raises(DataError, match="no sensor in the registry for tag 'sensor_id'"):
        from_influx(settings, load_registry(DEMO_REGISTRY), "SELECT level_m FROM gauges")
    with pytest.raises(DataError, match="InfluxDB: error parsing query"):
        from_influx(settings, load_registry(DEMO_REGISTRY), "SELEKT nonsense")


def test_the_settings_rules_are_the_default(tmp_path, capsys):
    rules = tmp_path / "rules.yaml"
    rules.write_text("kinds:\n  water_level:\n    rate_of_rise: {rate_per_hour: 0.7}\n")
    config = tmp_path / "cityeye.yaml"
    config.write_text(f"rules: {rules}\n")
    assert cli_main(["backtest", "--config", str(config), "--simulate", "normal", "--days", "0.5",
                     "--out", str(tmp_path / "o"), "--quiet"]) == 0
    result = json.loads((tmp_path / "o" / "result.json").read_text())
    assert result["rules"] == str(rules)
    assert result["rules_version"] == parse_rulebook(rules.read_text()).version


def test_parquet_files_in_both_layouts_with_typed_and_naive_timestamps(tmp_path):
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    registry = parse_registry(GAUGE, "gauges.yaml")
    naive = [dt.datetime(2019, 2, 1) + dt.timedelta(minutes=15 * i) for i in range(4)]
    pq.write_table(pa.table({"dateTime": naive, "value": [0.5, None, 0.7, 0.8]}), tmp_path / "river-1.parquet")
    with pytest.raises(DataError, match=r"river-1.parquet:2: '2019-02-01T00:00:00' has no UTC offset"):
        from_parquet([tmp_path / "river-1.parquet"], registry)
    ds = from_parquet([tmp_path / "river-1.parquet"], registry, tz="UTC")
    assert [(r.ts - START, r.values) for r in ds.readings["river-1"]] == [
        (0.0, {"level_m": 0.5}), (1800.0, {"level_m": 0.7}), (2700.0, {"level_m": 0.8})]
    aware = [t.replace(tzinfo=dt.timezone.utc) for t in naive]
    pq.write_table(pa.table({"sensor_id": ["river-1"] * 4, "ts": aware, "level_m": [1.0, 1.1, 1.2, 1.3]}),
                   tmp_path / "long.parquet")
    ds = from_parquet([tmp_path / "long.parquet"], registry)
    assert [r.values["level_m"] for r in ds.readings["river-1"]] == [1.0, 1.1, 1.2, 1.3]
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="bad.parquet: cannot read as Parquet"):
        from_parquet([tmp_path / "bad.parquet"], registry)
