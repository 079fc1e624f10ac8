"""``cityeye backtest``: what the rules would have done on recorded or simulated data.

Command line::

    cityeye backtest --csv data/*.csv --registry gauges.yaml [--tz Europe/London] [--labels labels.csv]
    cityeye backtest --parquet readings.parquet --registry gauges.yaml
    cityeye backtest --kafka water_level --from 2026-07-01T00:00:00Z --to 2026-08-01T00:00:00Z --config cityeye.yaml
    cityeye backtest --influx-query "SELECT level_m FROM gauges WHERE time >= '2025-01-01' GROUP BY sensor_id"
    cityeye backtest --simulate flood --days 7 [--seed 1] [--interval 15m]
                     [--rules new.yaml] [--compare old.yaml] [--workers 2] [--out backtest-out]

A dry run of the real pipeline (evaluation/backtest/replay.py): nothing is
notified and nothing is written to any topic. Writes ``report.html`` (plots),
``result.json`` (for CI) and prints the summary. ``--compare`` runs the same
data under a second rules file and reports the alerts added, removed and
shifted, and the change in lead time. Exit code 2 on bad input (the message
names file, line and field).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from cityeye.errors import CityEyeError

__all__ = ["add_arguments", "run", "run_backtest", "load_dataset", "lead_change"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("data (one source)")
    src.add_argument("--csv", nargs="+", metavar="FILE", help="CSV files (one per sensor, or long format)")
    src.add_argument("--parquet", nargs="+", metavar="FILE", help="Parquet files (the same layouts as CSV)")
    src.add_argument("--sensor", help="sensor id of a single-sensor file (default: the file name)")
    src.add_argument("--simulate", metavar="SCENARIO", help="a simulator scenario (normal, flood, all)")
    src.add_argument("--days", type=float, default=7.0, help="simulated days (default 7)")
    src.add_argument("--seed", type=int, default=1)
    src.add_argument("--start", default="2026-07-01T00:00:00Z", help="simulation start (RFC 3339)")
    src.add_argument("--interval", help="override every sensor's interval_s in a simulation (e.g. 15m)")
    src.add_argument("--kafka", metavar="KIND[,KIND]", help="read readings.<kind> topics (settings' kafka)")
    src.add_argument("--from", dest="time_from", metavar="TIME", help="--kafka: first reading time (RFC 3339)")
    src.add_argument("--to", dest="time_to", metavar="TIME", help="--kafka: end of the range (RFC 3339)")
    src.add_argument("--influx-query", metavar="INFLUXQL",
                     help="an InfluxQL query grouped by the sensor tag (settings' influx url/database)")
    src.add_argument("--influx-sensor-tag", default="sensor_id", help="the tag naming the sensor (default sensor_id)")
    parser.add_argument("--labels", metavar="CSV", help="labelled events: sensor_id,label,start,end")
    parser.add_argument("--tz", help="time zone of timestamps without a UTC offset (IANA name)")
    parser.add_argument("--registry", metavar="FILE", help="sensor registry (default: settings, then the demo's)")
    parser.add_argument("--config", metavar="FILE", help="settings YAML (default: $CITYEYE_CONFIG)")
    parser.add_argument("--rules", metavar="FILE", help="rules file (default: the settings' rules, else the built-in rules)")
    parser.add_argument("--compare", metavar="RULES",
                        help="a second rules file to diff against ('built-in': the built-in rules alone)")
    parser.add_argument("--alerting", metavar="FILE", help="alerting file for the lifecycle (default: bundled)")
    parser.add_argument("--workers", type=int, default=1, help="processes for the per-sensor engines")
    parser.add_argument("--ack-after", default="30m", metavar="DURATION",
                        help="model a duty officer acknowledging each alert this long after it is raised "
                             "(default 30m; 'never': unacknowledged alerts escalate and remind throughout)")
    parser.add_argument("--out", default="backtest-out", metavar="DIR", help="output directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def load_dataset(args: argparse.Namespace) -> Any:
    from cityeye.config import load_settings
    from cityeye.contracts import parse_ts
    from cityeye.sensor_registry import SensorRegistry, load_registry, registry_for
    from detectors.rule_library import parse_duration
    from evaluation.backtest.data import DataError, from_csv, from_parquet, from_simulation, labels_from_csv

    settings = load_settings(args.config)
    registry = load_registry(args.registry) if args.registry else registry_for(settings)
    if args.rules is None:  # the rules in force unless --rules names others
        args.rules = settings.rules or None
    if sum(map(bool, (args.csv, args.parquet, args.simulate, args.kafka, args.influx_query))) != 1:
        raise DataError("give one data source: --csv FILE..., --parquet FILE..., --simulate SCENARIO, --kafka KIND "
                        "or --influx-query Q")
    if args.kafka:
        import asyncio

        from evaluation.backtest.remote import from_kafka

        if not (args.time_from and args.time_to):
            raise DataError("--kafka needs --from and --to (RFC 3339 times)")
        ds = asyncio.run(from_kafka(settings.kafka, registry, args.kafka.split(","), parse_ts(args.time_from),
                                    parse_ts(args.time_to)))
    elif args.influx_query:
        from evaluation.backtest.remote import from_influx

        ds = from_influx(settings.influx, registry, args.influx_query, args.influx_sensor_tag)
    elif args.simulate:
        if args.interval:
            seconds = parse_duration(args.interval, 60.0)
            registry = SensorRegistry({s.id: s.model_copy(update={"interval_s": seconds}) for s in registry},
                                      source=f"{registry.source} (interval {seconds:g} s)")
        ds = from_simulation(registry, args.simulate, args.seed, parse_ts(args.start), args.days * 24.0)
    elif args.parquet:
        ds = from_parquet(args.parquet, registry, tz=args.tz, sensor=args.sensor)
    else:
        ds = from_csv(args.csv, registry, tz=args.tz, sensor=args.sensor)
    if args.labels:
        ds.events = labels_from_csv(args.labels, args.tz)
    return ds.sort()


class _Progress:
    """A progress bar on stderr (a line every 10 % when stderr is not a terminal)."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.done, self.quiet = max(1, total), 0, quiet
        self.tty, self.started, self._shown = sys.stderr.isatty(), time.monotonic(), -1

    def __call__(self, n: int) -> None:
        self.done += n
        pct = int(100 * self.done / self.total)
        if self.quiet or (not self.tty and pct // 10 == self._shown // 10):
            return
        self._shown = pct
        rate = self.done / max(1e-9, time.monotonic() - self.started)
        bar = "#" * (pct // 4)
        end = "\r" if self.tty and pct < 100 else "\n"
        sys.stderr.write(f"[{bar:<25}] {pct:3d}% {self.done}/{self.total} readings, {rate:,.0f}/s{end}")
        sys.stderr.flush()


def run_backtest(ds: Any, rules_path: str | None, alerting: Any, workers: int = 1,
                 progress: Any = None, ack_after_s: float | None = 1800.0) -> tuple[dict[str, Any], list, dict[str, list]]:
    """Both stages and the scores: ``(result, episodes, events by sensor)``."""
    from detectors.rulebook import load_rulebook
    from evaluation.backtest.replay import episodes_of, run_lifecycle, run_sensors
    from evaluation.backtest.score import level_crossings, score_sensor, summary

    rulebook = load_rulebook(rules_path)
    rulebook.check_registry(ds.registry)
    text = Path(rules_path).read_text(encoding="utf-8") if rules_path else None
    sensors = [s for s in ds.registry if s.id in ds.readings]
    started = time.perf_counter()
    runs = run_sensors(sensors, ds.readings, text, str(rules_path or "<built-in>"), workers, progress)
    engine_s = time.perf_counter() - started
    events = [e for r in runs for e in r.events]
    episodes = episodes_of(events)
    notices = run_lifecycle(events, alerting, ds.registry, ds.span()[1], ack_after_s=ack_after_s)
    scores = [score_sensor(ds, s.id, episodes) for s in sensors]
    by_sensor = {s.id: [e for e in ds.events if e.sensor_id == s.id] or level_crossings(ds, s.id) for s in sensors}
    result = {
        "source": ds.source, "rules": str(rules_path or "built-in"), "rules_version": rulebook.version,
        "span": list(ds.span()), "summary": summary(scores), "sensors": [s.to_dict() for s in scores],
        "episodes": [e.to_dict() for e in episodes],
        "notifications": [{"at": n.at, "receiver": n.receiver, "reason": n.reason, "status": n.status,
                           "summary": n.summary, "alert_ids": n.alert_ids} for n in notices],
        "notes": {r.sensor_id: r.notes for r in runs if r.notes},
        "timing": {"engine_s": round(engine_s, 3), "total_s": round(time.perf_counter() - started, 3)},
    }
    return result, episodes, by_sensor


def lead_change(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, float]:
    """Per sensor with events warned of in both runs: the change of its median lead time, in minutes."""
    old = {s["sensor_id"]: s["median_lead_min"] for s in before}
    return {s["sensor_id"]: round(s["median_lead_min"] - old[s["sensor_id"]], 1) for s in after
            if s["median_lead_min"] is not None and old.get(s["sensor_id"]) is not None
            and s["median_lead_min"] != old[s["sensor_id"]]}


def run(args: argparse.Namespace) -> int:
    from alerts.config import load_alerting_config
    from detectors.rule_library import parse_duration
    from evaluation.backtest.png import write_sensor_pngs
    from evaluation.backtest.report import write_html, write_json
    from evaluation.backtest.score import compare_episodes

    try:
        ds = load_dataset(args)
        alerting = load_alerting_config(args.alerting)
        progress = _Progress(ds.count * (2 if args.compare else 1), args.quiet)
        ack = None if args.ack_after == "never" else parse_duration(args.ack_after, 60.0)
        result, episodes, by_sensor = run_backtest(ds, args.rules, alerting, args.workers, progress, ack)
        if args.compare:
            baseline = None if args.compare == "built-in" else args.compare
            other, other_eps, _ = run_backtest(ds, baseline, alerting, args.workers, progress, ack)
            result["compare"] = {"rules": args.compare, "rules_version": other["rules_version"],
                                 "summary": other["summary"], "diff": compare_episodes(other_eps, episodes),
                                 "lead_change_min": lead_change(other["sensors"], result["sensors"])}
    except CityEyeError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "result.json", result)
    write_html(out / "report.html", ds, result, episodes, by_sensor)
    write_sensor_pngs(out / "plots", ds, episodes, by_sensor)
    s = result["summary"]
    print(f"{s['readings']} readings of {s['sensors']} sensors in {result['timing']['total_s']:.1f} s: "
          f"{s['episodes']} alert episodes, {s['detected']}/{s['events']} events warned of "
          f"(median lead {s['median_lead_min']} min), {s['missed']} missed, "
          f"{s['false_alerts']} false alerts ({s['false_per_sensor_month']} per sensor-month)")
    if "compare" in result:
        d = result["compare"]["diff"]
        c = result["compare"]["summary"]
        print(f"vs {args.compare}: {len(d['added'])} added, {len(d['removed'])} removed, {len(d['shifted'])} "
              f"shifted; there: {c['detected']}/{c['events']} warned of, median lead {c['median_lead_min']} min, "
              f"{c['false_per_sensor_month']} false per sensor-month; lead time change per sensor (min): "
              f"{result['compare']['lead_change_min'] or 'none'}")
    for sid, notes in result["notes"].items():
        for name, lines in notes.items():
            for note in lines:
                print(f"  note {sid} {name}: {note}")
    print(f"report: {out / 'report.html'}  json: {out / 'result.json'}  plots: {out / 'plots'}/<sensor>.png")
    return 0
