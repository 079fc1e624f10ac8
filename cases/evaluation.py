"""综合评价: figures per department, district and level, from the cases and their timelines.

Per group: ``cases`` (filed), ``closed``, ``on_time_<stage>`` (the share of
stages left before their deadline, an open case already past its current
deadline counting as late), ``accept_mean_s`` / ``accept_p90_s`` (dispatch
to acceptance), ``close_mean_s`` / ``close_p90_s`` (filing to closing),
``returns`` (退单), ``reopens`` (failed verifications), ``escalations``.
A case's level is the level of the unit it is dispatched at.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from typing import Any, Iterable

from alerts.sinks.line_protocol import Point
from cases.org import Org
from cases.sla import STAGES

__all__ = ["GROUPINGS", "evaluate", "to_csv", "to_points", "percentile", "COLUMNS"]

GROUPINGS = ("department", "district", "level")
COLUMNS = ("by", "key", "name", "cases", "closed", *(f"on_time_{s}" for s in STAGES), "accept_mean_s",
           "accept_p90_s", "close_mean_s", "close_p90_s", "returns", "reopens", "escalations")


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by the nearest-rank method, or ``None`` for no values.

    >>> percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9), percentile([], 0.9)
    (9, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _key(case: dict[str, Any], by: str, org: Org) -> tuple[str, str]:
    if by == "department":
        dept = org.departments.get(case.get("department") or "")
        return (dept.code, dept.name) if dept else ("-", "未派遣 undispatched")
    if by == "district":
        unit = org.units.get(case.get("district") or "")
        return (unit.code, unit.name) if unit else ("-", "市级 city-wide")
    unit = org.units.get(case.get("dispatch_unit") or "")
    return (unit.level, unit.level) if unit else ("-", "未派遣 undispatched")


def evaluate(cases: Iterable[dict[str, Any]], events: Iterable[dict[str, Any]], org: Org, by: str,
             now: float) -> list[dict[str, Any]]:
    """The figures of every group of ``by`` (one of :data:`GROUPINGS`)."""
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(GROUPINGS)}")
    per_case: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ev in events:
        per_case[ev["case_id"]].append(ev)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for case in cases:
        groups[_key(case, by, org)].append(case)
    rows = []
    for (key, name), members in sorted(groups.items()):
        judged: dict[str, list[bool]] = {s: [] for s in STAGES}
        accept, close = [], []
        escalations = 0
        for case in members:
            for ev in per_case.get(case["id"], []):
                if ev["stage"] in judged and ev["on_time"] is not None:
                    judged[ev["stage"]].append(bool(ev["on_time"]))
                if ev["action"] == "accept" and ev["stage_seconds"] is not None:
                    accept.append(ev["stage_seconds"])
                escalations += ev["action"] == "escalate"
            if case["state"] != "closed" and case.get("stage") in judged and case.get("deadline_at") \
                    and now > case["deadline_at"]:
                judged[case["stage"]].append(False)
            if case.get("closed_at"):
                close.append(case["closed_at"] - case["created_at"])
        row: dict[str, Any] = {"by": by, "key": key, "name": name, "cases": len(members),
                               "closed": sum(c["state"] == "closed" for c in members)}
        for stage, marks in judged.items():
            row[f"on_time_{stage}"] = round(sum(marks) / len(marks), 4) if marks else None
        row.update(accept_mean_s=_mean(accept), accept_p90_s=percentile(accept, 0.9), close_mean_s=_mean(close),
                   close_p90_s=percentile(close, 0.9), returns=sum(c["returns"] for c in members),
                   reopens=sum(c["reopens"] for c in members), escalations=escalations)
        rows.append(row)
    return rows


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV with a header (empty cells for no figure)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in COLUMNS})
    return out.getvalue()


def to_points(rows: list[dict[str, Any]], now: float) -> list[Point]:
    """The rows as InfluxDB points of measurement ``case_evaluation`` (tags ``by``, ``key``)."""
    ts = int(now * 1e9)
    return [Point("case_evaluation", tags={"by": r["by"], "key": r["key"]},
                  fields={k: r[k] for k in COLUMNS[3:] if r.get(k) is not None}, time_ns=ts) for r in rows]
