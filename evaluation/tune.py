"""``cityeye tune``: sweep rule parameters on labelled data; the Pareto front of lead time vs false alerts.

Command line::

    cityeye tune --simulate flood --days 14 --interval 15m \\
        --param water_level.rate_of_rise.rate_per_hour=0.1,0.2,0.3 \\
        --param water_level.forecast.window_s=30m,1h,2h [--rules base.yaml] [--budget 1.0]

Each ``--param KIND.CHECK.PARAMETER=V1,V2,...`` is one axis; every
combination is run (the per-sensor engines of ``cityeye backtest`` on the
same data, the setting layered over ``--rules`` as a ``kinds`` entry) and
scored on the sensors of the kinds swept: events warned of, missed, median lead time, false alerts per
sensor-month. A setting is on the **Pareto front** when no other warns of
at least as many events with at least the same median lead and no more
false alerts, being better in one. The **recommended** setting is the front's
setting that misses fewest events, then stays within ``--budget`` false
alerts per sensor-month, then has the longest median lead (or, if none is
within budget, the fewest false alerts). Writes ``tune.html`` (table and
Pareto plot), ``pareto.png``, ``tune.json`` and ``recommended.yaml`` (the YAML to paste into
a rules file) to ``--out``.
"""

from __future__ import annotations

import argparse
import html
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from cityeye.errors import CityEyeError, ConfigError

__all__ = ["add_arguments", "run", "parse_axis", "sweep", "pareto", "recommend"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from evaluation.backtest.command import add_arguments as backtest_arguments

    backtest_arguments(parser)
    parser.set_defaults(out="tune-out")
    parser.add_argument("--param", action="append", required=True, metavar="KIND.CHECK.PARAM=V1,V2",
                        help="one sweep axis (repeatable)")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="false alerts per sensor-month the recommendation may cost (default 1)")


def parse_axis(text: str) -> tuple[tuple[str, str, str], list[Any]]:
    """``water_level.forecast.window_s=30m,1h`` -> ``(("water_level", "forecast", "window_s"), ["30m", "1h"])``."""
    name, sep, values = text.partition("=")
    parts = name.strip().split(".")
    if not sep or len(parts) != 3 or not all(parts) or not values.strip():
        raise ConfigError(f"--param {text!r}: expected KIND.CHECK.PARAMETER=V1,V2,...")
    return (parts[0], parts[1], parts[2]), [yaml.safe_load(v.strip()) for v in values.split(",")]


def _layer(base: dict[str, Any], setting: dict[tuple[str, str, str], Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    for (kind, check, param), value in setting.items():
        out.setdefault("kinds", {}).setdefault(kind, {}).setdefault(check, {})[param] = value
    return out


def sweep(ds: Any, axes: list[tuple[tuple[str, str, str], list[Any]]], base_rules: str | None,
          workers: int = 1) -> list[dict[str, Any]]:
    """Score every combination of the axes' values; one row per setting."""
    from detectors.rulebook import parse_rulebook
    from evaluation.backtest.replay import episodes_of, run_sensors
    from evaluation.backtest.score import score_sensor, summary

    base = yaml.safe_load(Path(base_rules).read_text(encoding="utf-8")) if base_rules else {}
    kinds = {kind for (kind, _, _), _ in axes}
    sensors = [s for s in ds.registry if s.id in ds.readings and s.kind in kinds]  # scored: the swept kinds
    rows = []
    for values in itertools.product(*(vals for _, vals in axes)):
        setting = {key: v for (key, _), v in zip(axes, values)}
        text = yaml.safe_dump(_layer(base or {}, setting), sort_keys=False)
        rulebook = parse_rulebook(text, "<sweep>")
        rulebook.check_registry(ds.registry)
        runs = run_sensors(sensors, ds.readings, text, "<sweep>", workers)
        episodes = episodes_of([e for r in runs for e in r.events])
        totals = summary([score_sensor(ds, s.id, episodes) for s in sensors])
        rows.append({"setting": {".".join(k): v for k, v in setting.items()}, "rules_version": rulebook.version,
                     **{k: totals[k] for k in ("events", "detected", "missed", "median_lead_min", "false_alerts",
                                               "false_per_sensor_month")}})
    return rows


def _dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    la, lb = a["median_lead_min"] or 0.0, b["median_lead_min"] or 0.0
    ge = a["detected"] >= b["detected"] and la >= lb and a["false_per_sensor_month"] <= b["false_per_sensor_month"]
    gt = a["detected"] > b["detected"] or la > lb or a["false_per_sensor_month"] < b["false_per_sensor_month"]
    return ge and gt


def pareto(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows no other row dominates (see the module docstring)."""
    return [r for r in rows if not any(_dominates(o, r) for o in rows if o is not r)]


def recommend(rows: list[dict[str, Any]], budget: float) -> dict[str, Any]:
    front = pareto(rows)
    fewest_missed = min(r["missed"] for r in front)
    candidates = [r for r in front if r["missed"] == fewest_missed]
    within = [r for r in candidates if r["false_per_sensor_month"] <= budget]
    if within:
        return max(within, key=lambda r: (r["median_lead_min"] or 0.0, -r["false_per_sensor_month"]))
    return min(candidates, key=lambda r: (r["false_per_sensor_month"], -(r["median_lead_min"] or 0.0)))


def _svg(rows: list[dict[str, Any]], front: list[dict[str, Any]], best: dict[str, Any]) -> str:
    w, h, pad = 640, 360, 50
    xs = [r["false_per_sensor_month"] for r in rows]
    ys = [r["median_lead_min"] or 0.0 for r in rows]
    x0, x1 = 0.0, max(xs + [0.1]) * 1.1
    y0, y1 = min(ys + [0.0]), max(ys + [1.0]) * 1.1

    def px(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (w - pad - 10)

    def py(y: float) -> float:
        return h - pad + (y0 - y) / (y1 - y0) * (h - pad - 10)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" '
             f'aria-label="Pareto plot: median lead time against false alerts per sensor-month" class="plot">',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - 10}" y2="{h - pad}" stroke="#333"/>',
             f'<line x1="{pad}" y1="10" x2="{pad}" y2="{h - pad}" stroke="#333"/>',
             f'<text x="{(w + pad) / 2}" y="{h - 12}" text-anchor="middle" font-size="12">false alerts per '
             f'sensor-month ({x1:.2f} at the right)</text>',
             f'<text x="14" y="{h / 2}" font-size="12" transform="rotate(-90 14 {h / 2})" text-anchor="middle">'
             f'median lead time, min ({y1:.0f} at the top)</text>']
    front_pts = sorted(front, key=lambda r: r["false_per_sensor_month"])
    if len(front_pts) > 1:
        pts = " ".join(f"{px(r['false_per_sensor_month']):.1f},{py(r['median_lead_min'] or 0):.1f}" for r in front_pts)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#ef7d00" stroke-width="1.5"/>')
    for r in rows:
        on = r in front
        colour = "#d62828" if r is best else ("#ef7d00" if on else "#777")
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in r["setting"].items())
        parts.append(f'<circle cx="{px(r["false_per_sensor_month"]):.1f}" cy="{py(r["median_lead_min"] or 0):.1f}" '
                     f'r="{6 if r is best else 4}" fill="{colour}"><title>{html.escape(label)}: '
                     f'{r["detected"]}/{r["events"]} warned, lead {r["median_lead_min"]} min, '
                     f'{r["false_per_sensor_month"]} false/sensor-month</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def run(args: argparse.Namespace) -> int:
    from evaluation.backtest.command import load_dataset
    from evaluation.backtest.png import write_pareto_png
    from evaluation.backtest.report import _table

    try:
        axes = [parse_axis(p) for p in args.param]
        ds = load_dataset(args)
        rows = sweep(ds, axes, args.rules, args.workers)
    except CityEyeError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    front = pareto(rows)
    best = recommend(rows, args.budget)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paste = {"kinds": {}}
    for key, value in best["setting"].items():
        kind, check, param = key.split(".")
        paste["kinds"].setdefault(kind, {}).setdefault(check, {})[param] = value
    (out / "recommended.yaml").write_text(yaml.safe_dump(paste, sort_keys=False), encoding="utf-8")
    write_pareto_png(out / "pareto.png", rows, front, best)
    (out / "tune.json").write_text(json.dumps({"rows": rows, "pareto": front, "recommended": best}, indent=2,
                                              default=str), encoding="utf-8")
    table = [{**{k.split(".", 1)[1]: v for k, v in r["setting"].items()},
              **{k: r[k] for k in ("detected", "missed", "median_lead_min", "false_per_sensor_month")},
              "pareto": "yes" if r in front else "", "recommended": "yes" if r is best else ""} for r in rows]
    columns = list(table[0])
    (out / "tune.html").write_text(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>CityEye tune</title></head><body>"
        f"<h1>Sweep on {html.escape(ds.source)}</h1>{_table(table, columns)}{_svg(rows, front, best)}"
        f"<h2>Recommended</h2><pre>{html.escape(yaml.safe_dump(paste, sort_keys=False))}</pre></body></html>",
        encoding="utf-8")
    widths = [max(len(str(c)), *(len(str(r[c])) for r in table)) for c in columns]
    print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths)))
    for r in table:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(columns, widths)))
    print(f"\nrecommended (paste into your rules file; {out / 'recommended.yaml'}):\n"
          + yaml.safe_dump(paste, sort_keys=False))
    return 0
