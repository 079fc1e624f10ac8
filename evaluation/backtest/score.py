"""What a backtest's alerts were worth: lead times, missed events, false alerts, and the diff of two runs.

The events to warn of are the dataset's labels; a water-level sensor with
no labels gets one event per upward crossing of its registry warning level
(``warning_m``), from the first reading at or above it until the level is
left. Device-health rules (``stale``, ``flatline`` by default) are neither
warnings nor false alerts and are left out of the scores.

* an event is **detected** by the first scored episode of its sensor that
  is firing at some moment in ``[event.start - lookback, event.end]``; its
  **lead time** is ``event.start - episode.start`` (positive: the warning
  came before the event), or ``0`` if the episode was already firing
  earlier still;
* an event nobody warned of is **missed**;
* a scored episode overlapping no ``[start - lookback, end + grace]`` of an
  event of its sensor is a **false alert**; false alerts per sensor-month
  divide by the sensor's data span (30.44-day months).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Sequence

from evaluation.backtest.data import Dataset, Event
from evaluation.backtest.replay import Episode

__all__ = ["SensorScore", "score_sensor", "level_crossings", "compare_episodes", "summary", "DEVICE_RULES"]

DEVICE_RULES = ("stale", "flatline")
MONTH_S = 30.44 * 86400.0


@dataclass
class SensorScore:
    sensor_id: str
    readings: int
    episodes: int
    events: int
    detected: int
    #: lead time in seconds per detected event, in event order
    lead_s: list[float] = field(default_factory=list)
    missed: list[Event] = field(default_factory=list)
    false_alerts: list[Episode] = field(default_factory=list)
    span_s: float = 0.0

    @property
    def false_per_month(self) -> float:
        return len(self.false_alerts) / (self.span_s / MONTH_S) if self.span_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"sensor_id": self.sensor_id, "readings": self.readings, "episodes": self.episodes,
                "events": self.events, "detected": self.detected, "missed": len(self.missed),
                "lead_min": [round(x / 60.0, 1) for x in self.lead_s],
                "median_lead_min": round(statistics.median(self.lead_s) / 60.0, 1) if self.lead_s else None,
                "false_alerts": len(self.false_alerts), "false_per_sensor_month": round(self.false_per_month, 3),
                "span_days": round(self.span_s / 86400.0, 2)}


def _scored(ep: Episode) -> bool:
    return ep.rule.rsplit(".", 1)[-1] not in DEVICE_RULES


def level_crossings(ds: Dataset, sensor_id: str, level_key: str = "warning_m") -> list[Event]:
    """One event per upward crossing of the sensor's registry level (water level only)."""
    sensor = ds.registry.get(sensor_id)
    level = (sensor.levels or {}).get(level_key) if sensor is not None else None
    if sensor is None or sensor.kind != "water_level" or level is None:
        return []
    out, start, last = [], None, None
    for r in ds.readings.get(sensor_id, []):
        v = r.values.get("level_m")
        if v is None:
            continue
        if v >= level and start is None:
            start = r.ts
        elif v < level and start is not None:
            out.append(Event(sensor_id, f"crossed {level_key} {level:g}", start, r.ts))
            start = None
        last = r.ts
    if start is not None:
        out.append(Event(sensor_id, f"crossed {level_key} {level:g}", start, last))
    return out


def score_sensor(ds: Dataset, sensor_id: str, episodes: Sequence[Episode], lookback_s: float = 6 * 3600.0,
                 grace_s: float = 3600.0) -> SensorScore:
    """The scores of one sensor (see the module docstring)."""
    rows = ds.readings.get(sensor_id, [])
    span = rows[-1].ts - rows[0].ts if len(rows) > 1 else 0.0
    labelled = [e for e in ds.events if e.sensor_id == sensor_id]
    events = labelled or level_crossings(ds, sensor_id)
    eps = [e for e in episodes if e.sensor_id == sensor_id and _scored(e)]
    end_of_data = rows[-1].ts if rows else 0.0
    score = SensorScore(sensor_id, len(rows), len(eps), len(events), 0, span_s=span)
    for ev in events:
        hits = [e for e in eps if e.start <= ev.end and (e.end if e.end is not None else end_of_data)
                >= ev.start - lookback_s]
        if not hits:
            score.missed.append(ev)
            continue
        first = min(hits, key=lambda e: e.start)
        score.detected += 1
        score.lead_s.append(max(0.0, ev.start - max(first.start, ev.start - lookback_s)))
    for ep in eps:
        ep_end = ep.end if ep.end is not None else end_of_data
        if not any(ep.start <= ev.end + grace_s and ep_end >= ev.start - lookback_s for ev in events):
            score.false_alerts.append(ep)
    return score


def summary(scores: Sequence[SensorScore]) -> dict[str, Any]:
    """Totals over sensors: events, detected, missed, median lead, false alerts per sensor-month."""
    leads = [x for s in scores for x in s.lead_s]
    months = sum(s.span_s for s in scores) / MONTH_S
    false = sum(len(s.false_alerts) for s in scores)
    return {"sensors": len(scores), "readings": sum(s.readings for s in scores),
            "episodes": sum(s.episodes for s in scores), "events": sum(s.events for s in scores),
            "detected": sum(s.detected for s in scores), "missed": sum(len(s.missed) for s in scores),
            "median_lead_min": round(statistics.median(leads) / 60.0, 1) if leads else None,
            "false_alerts": false, "false_per_sensor_month": round(false / months, 3) if months > 0 else 0.0}


def compare_episodes(before: Sequence[Episode], after: Sequence[Episode],
                     tolerance_s: float = 0.0) -> dict[str, list[dict[str, Any]]]:
    """Alerts added, removed and shifted between two runs (matched by sensor, rule and overlap in time)."""
    unmatched = list(after)
    removed, shifted = [], []
    for old in before:
        old_end = old.end if old.end is not None else float("inf")
        match = next((n for n in unmatched if n.sensor_id == old.sensor_id and n.rule == old.rule
                      and n.start <= old_end and (n.end if n.end is not None else float("inf")) >= old.start),
                     None)
        if match is None:
            removed.append(old.to_dict())
            continue
        unmatched.remove(match)
        delta = match.start - old.start
        if abs(delta) > tolerance_s or match.max_severity != old.max_severity:
            shifted.append({"sensor_id": old.sensor_id, "rule": old.rule, "start_before": old.start,
                            "start_after": match.start, "shift_min": round(delta / 60.0, 1),
                            "severity_before": old.max_severity, "severity_after": match.max_severity})
    return {"added": [n.to_dict() for n in unmatched], "removed": removed, "shifted": shifted}
