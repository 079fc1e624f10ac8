"""Backtest and sweep plots as PNG files (matplotlib, no display needed).

The HTML report carries the same plots as inline SVG; the PNGs are for
slides, tickets and chat: ``<out>/plots/<sensor>.png`` per sensor (series,
registry levels, alert episodes coloured and named by severity, labelled
events shaded) and ``pareto.png`` for a sweep.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from evaluation.backtest.data import Dataset, Event, main_field
from evaluation.backtest.replay import Episode
from evaluation.backtest.report import SEVERITY_COLOURS

__all__ = ["write_sensor_pngs", "write_pareto_png"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=timezone.utc)


def write_sensor_pngs(out: Path, ds: Dataset, episodes: Sequence[Episode],
                      events_by_sensor: dict[str, list[Event]]) -> list[Path]:
    """One PNG per sensor with readings; returns the files written."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for sid, rows in sorted(ds.readings.items()):
        sensor = ds.registry.get(sid)
        field = main_field(sensor.kind) if sensor is not None else ""
        pts = [(r.ts, r.values[field]) for r in rows if field in r.values]
        if len(pts) < 2:
            continue
        fig, ax = plt.subplots(figsize=(10, 3.2), dpi=100)
        ax.plot([_dt(t) for t, _ in pts], [v for _, v in pts], color="#1b2a3a", linewidth=0.9, label=field)
        for name, level in sorted(((sensor.levels or {}) if sensor else {}).items(), key=lambda kv: kv[1]):
            ax.axhline(level, color="#444", linestyle="--", linewidth=0.7)
            ax.annotate(f"{name} {level:g}", (1.0, level), xycoords=("axes fraction", "data"), ha="right",
                        va="bottom", fontsize=7)
        for ev in events_by_sensor.get(sid, []):
            ax.axvspan(_dt(ev.start), _dt(ev.end), color="#888", alpha=0.18, linewidth=0)
        shown: set[str] = set()
        for i, ep in enumerate(sorted((e for e in episodes if e.sensor_id == sid), key=lambda e: e.start)):
            end = ep.end if ep.end is not None else pts[-1][0]
            band = 0.94 - 0.06 * (i % 2)  # overlapping episodes on alternate bands, as in the HTML report
            for k, (since, severity) in enumerate(ep.severities or [(ep.start, "blue")]):
                until = ep.severities[k + 1][0] if k + 1 < len(ep.severities) else end
                ax.axvspan(_dt(ep.start if k == 0 else since), _dt(until), ymin=band, ymax=band + 0.055,
                           color=SEVERITY_COLOURS.get(severity, "#555"),
                           label=severity if severity not in shown else None)
                shown.add(severity)
        ax.set_title(f"{sid} {field}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper left")
        fig.autofmt_xdate()
        fig.tight_layout()
        path = out / f"{sid}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def write_pareto_png(path: Path, rows: list[dict[str, Any]], front: list[dict[str, Any]],
                     best: dict[str, Any]) -> Path:
    """Median lead time against false alerts per sensor-month, the front joined, the recommendation marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    ax.scatter([r["false_per_sensor_month"] for r in rows], [r["median_lead_min"] or 0 for r in rows],
               color="#777", label="setting")
    ordered = sorted(front, key=lambda r: r["false_per_sensor_month"])
    ax.plot([r["false_per_sensor_month"] for r in ordered], [r["median_lead_min"] or 0 for r in ordered],
            color="#ef7d00", marker="o", label="Pareto front")
    ax.scatter([best["false_per_sensor_month"]], [best["median_lead_min"] or 0], s=90, color="#d62828",
               label="recommended", zorder=3)
    ax.set_xlabel("false alerts per sensor-month")
    ax.set_ylabel("median lead time (min)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
