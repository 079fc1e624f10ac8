"""Backtest output: JSON for CI, and one self-contained HTML report with a plot per sensor.

The HTML has no external resource (no script, font or image from anywhere):
plots are inline SVG -- the series, the sensor's registry levels as dashed
lines, alert episodes as bands coloured *and* named by severity, labelled
events as grey spans -- so the file can be mailed or archived as it is.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from evaluation.backtest.data import Dataset, Event, main_field
from evaluation.backtest.replay import Episode

__all__ = ["write_json", "write_html", "svg_plot", "SEVERITY_COLOURS"]

SEVERITY_COLOURS = {"blue": "#1f6fd1", "yellow": "#d4a800", "orange": "#ef7d00", "red": "#d62828"}
_W, _H, _PAD_L, _PAD_B, _BAND = 960, 240, 56, 22, 14
_MAX_POINTS = 1500


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str), encoding="utf-8")


def _decimate(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """At most ~_MAX_POINTS points, keeping each bucket's minimum and maximum (peaks stay visible)."""
    if len(points) <= _MAX_POINTS:
        return points
    size = len(points) / (_MAX_POINTS / 2)
    out = []
    for i in range(int(_MAX_POINTS / 2)):
        bucket = points[int(i * size): int((i + 1) * size)]
        if bucket:
            lo, hi = min(bucket, key=lambda p: p[1]), max(bucket, key=lambda p: p[1])
            out += sorted({lo, hi})
    return out


def svg_plot(ds: Dataset, sensor_id: str, episodes: Sequence[Episode], events: Sequence[Event],
             field: str | None = None) -> str:
    """An inline SVG of one sensor's series, levels, alert episodes and labelled events."""
    sensor = ds.registry.get(sensor_id)
    rows = ds.readings.get(sensor_id, [])
    field = field or main_field(sensor.kind if sensor else "")
    pts = [(r.ts, r.values[field]) for r in rows if field in r.values]
    if len(pts) < 2:
        return f"<p>No {html.escape(field)} readings to plot.</p>"
    t0, t1 = pts[0][0], pts[-1][0]
    levels = {k: v for k, v in (sensor.levels or {}).items() if k.endswith("_m")} if sensor else {}
    ys = [p[1] for p in pts] + list(levels.values())
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.08 or 1.0
    y0, y1 = y0 - pad, y1 + pad
    plot_top, plot_h = _BAND * 2 + 4, _H - _PAD_B - _BAND * 2 - 4

    def x(t: float) -> float:
        return _PAD_L + (t - t0) / (t1 - t0) * (_W - _PAD_L - 8)

    def y(v: float) -> float:
        return plot_top + (y1 - v) / (y1 - y0) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" '
             f'aria-label="{html.escape(sensor_id)} {html.escape(field)}" class="plot">']
    for ev in events:
        parts.append(f'<rect x="{x(max(ev.start, t0)):.1f}" y="{plot_top}" width="{max(1.5, x(min(ev.end, t1)) - x(max(ev.start, t0))):.1f}" '
                     f'height="{plot_h}" fill="#888" fill-opacity="0.18"><title>{html.escape(ev.label)}: '
                     f'{_iso(ev.start)} – {_iso(ev.end)}</title></rect>')
    for i, ep in enumerate(sorted(episodes, key=lambda e: e.start)):
        end = ep.end if ep.end is not None else t1
        band = (i % 2) * _BAND
        changes = ep.severities or [(ep.start, "blue")]
        for k, (since, severity) in enumerate(changes):  # one segment per severity the episode had
            until = changes[k + 1][0] if k + 1 < len(changes) else end
            since = ep.start if k == 0 else since
            parts.append(f'<rect x="{x(since):.1f}" y="{band + 2}" width="{max(2.0, x(until) - x(since)):.1f}" '
                         f'height="{_BAND - 2}" fill="{SEVERITY_COLOURS.get(severity, "#555")}"><title>'
                         f'{html.escape(ep.rule)} {severity}: {_iso(since)} – {_iso(until)}</title></rect>')
    for name, v in sorted(levels.items(), key=lambda kv: kv[1]):
        parts.append(f'<line x1="{_PAD_L}" x2="{_W - 8}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#444" '
                     f'stroke-dasharray="4 3" stroke-width="0.8"/><text x="{_W - 10}" y="{y(v) - 3:.1f}" '
                     f'text-anchor="end" font-size="10">{html.escape(name)} {v:g}</text>')
    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in _decimate(pts))
    parts.append(f'<polyline points="{line}" fill="none" stroke="#1b2a3a" stroke-width="1.1"/>')
    for frac in (0.0, 0.5, 1.0):
        t = t0 + frac * (t1 - t0)
        anchor = {0.0: "start", 0.5: "middle", 1.0: "end"}[frac]
        parts.append(f'<text x="{x(t):.1f}" y="{_H - 6}" font-size="10" text-anchor="{anchor}">{_iso(t)} UTC</text>')
    for v in (y0 + pad, y1 - pad):
        parts.append(f'<text x="{_PAD_L - 4}" y="{y(v) + 3:.1f}" font-size="10" text-anchor="end">{v:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """body{font:15px/1.45 system-ui,sans-serif;margin:24px;color:#111;max-width:1000px}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}.plot{width:100%;height:auto;border:1px solid #ddd}
td.text{text-align:left}.sev{display:inline-block;padding:0 6px;color:#fff;border-radius:3px;margin-right:4px}h2{margin-top:28px}"""


def _cell(value: Any) -> str:
    if value is None:
        return "<td>–</td>"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"<td>{value:g}</td>" if isinstance(value, float) else f"<td>{value}</td>"
    return f'<td class="text">{html.escape(str(value))}</td>'


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(r.get(c)) for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(path: Path, ds: Dataset, result: dict[str, Any], episodes: Sequence[Episode],
               events_by_sensor: dict[str, list[Event]]) -> None:
    """The self-contained report: summary, per-sensor scores, the diff (if any), a plot per sensor."""
    legend = "".join(f'<span class="sev" style="background:{c}">{s}</span>' for s, c in SEVERITY_COLOURS.items())
    out = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>CityEye backtest</title>"
           f"<style>{_CSS}</style></head><body><h1>Backtest: {html.escape(ds.source)}</h1>",
           f"<p>Rules version <code>{html.escape(str(result.get('rules_version')))}</code>, "
           f"{result['summary']['readings']} readings of {result['summary']['sensors']} sensors, "
           f"{html.escape(_iso(result['span'][0]))} – {html.escape(_iso(result['span'][1]))} UTC.</p>",
           "<h2>Summary</h2>", _table([result["summary"]], list(result["summary"])),
           "<h2>Per sensor</h2>", _table(result["sensors"], ["sensor_id", "readings", "episodes", "events",
                                                            "detected", "missed", "median_lead_min",
                                                            "false_alerts", "false_per_sensor_month"])]
    if result.get("compare"):
        cmp_ = result["compare"]
        out.append(f"<h2>Compared with {html.escape(cmp_['rules'])}</h2>")
        out.append(_table([cmp_["summary"]], list(cmp_["summary"])))
        out.append(f"<p>{len(cmp_['diff']['added'])} alerts added, {len(cmp_['diff']['removed'])} removed, "
                   f"{len(cmp_['diff']['shifted'])} shifted or changed severity.</p>")
        if cmp_.get("lead_change_min"):
            out.append(_table([{"sensor_id": s, "median lead change (min)": v}
                               for s, v in cmp_["lead_change_min"].items()], ["sensor_id", "median lead change (min)"]))
        if cmp_["diff"]["shifted"]:
            out.append(_table(cmp_["diff"]["shifted"], ["sensor_id", "rule", "shift_min", "severity_before",
                                                         "severity_after"]))
    if result.get("notifications"):
        out.append(f"<h2>Notifications the dispatcher would have sent</h2><p>{len(result['notifications'])} "
                   "notifications (dry run: none was sent).</p>")
        rows = [{**n, "at": _iso(n["at"]) + " UTC"} for n in result["notifications"][:200]]
        out.append(_table(rows, ["at", "receiver", "reason", "status", "summary"]))
    out.append(f"<h2>Sensors</h2><p>Alert bands: {legend}; grey spans: labelled events; dashed: registry "
               "levels.</p>")
    for sid in sorted(ds.readings):
        mine = [e for e in episodes if e.sensor_id == sid]
        out.append(f"<h3>{html.escape(sid)}</h3>")
        out.append(svg_plot(ds, sid, mine, events_by_sensor.get(sid, [])))
    out.append("</body></html>")
    path.write_text("".join(out), encoding="utf-8")
