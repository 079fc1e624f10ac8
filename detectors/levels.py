"""Multi-level warning thresholds with hysteresis and a minimum duration.

:class:`WarningLevels` is the workhorse rule (water level above 警戒水位 and so
on). It follows Kapacitor's ``warnReset``/``critReset``: each severity has a
*level* that must be met to raise the severity and a *reset* level that must
be left to lower it again, so a value oscillating around a level does not flap.

This module also holds the few helpers the other rule modules share (reading a
field safely, units in messages, JSON-able snapshots of ``Finding`` s and
deques).
"""

from __future__ import annotations

import copy
import dataclasses
from collections import deque
from typing import Any

from cityeye.contracts import SEVERITIES, SEVERITY_RANK
from detectors.base import Finding, LazyFinding, Rule, finite_value, severity_score

__all__ = [
    "WarningLevels",
    "JSONStateMixin",
    "encode_state",
    "decode_state",
    "finite_value",
    "unit_of",
    "label_of",
    "fmt_value",
    "fmt_duration",
]

# -- shared helpers ---------------------------------------------------------

_UNITS = {
    "_mm": "mm",
    "_m": "m",
    "_c": "°C",
    "_ms": "m/s",
    "_kmh": "km/h",
    "_vph": "veh/h",
    "_pct": "%",
}
#: the unit suffixes, longest first (``_mm`` before ``_m``)
_SUFFIXES = tuple(sorted(_UNITS, key=len, reverse=True))


def unit_of(field: str | None) -> str:
    """The unit encoded in a field name: ``unit_of("level_m") == "m"``."""
    if not field:
        return ""
    for suffix in _SUFFIXES:
        if field.endswith(suffix):
            return _UNITS[suffix]
    return ""


def label_of(field: str | None) -> str:
    """A field name without its unit: ``label_of("level_m") == "level"``."""
    if not field:
        return "value"
    for suffix in _SUFFIXES:
        if field.endswith(suffix) and len(field) > len(suffix):
            return field[: -len(suffix)].replace("_", " ")
    return field.replace("_", " ")


def fmt_value(v: float | None, field: str | None, digits: int = 2) -> str:
    """``fmt_value(4.5, "level_m") == "4.50 m"``."""
    if v is None:
        return "n/a"
    u = unit_of(field)
    sep = "" if u in ("%", "°C") else " "
    return f"{v:.{digits}f}{sep}{u}" if u else f"{v:.{digits}f}"


def fmt_duration(seconds: float) -> str:
    """``fmt_duration(600) == "10 min"``; hours above 2 h, seconds below 1 min."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    h = seconds / 3600
    return f"{h:.0f} h" if abs(h - round(h)) < 0.05 else f"{h:.1f} h"


def encode_state(v: Any) -> Any:
    """Plain JSON-able data of ``v``: ``Finding`` -> ``{"__finding__": {...}}``, deques/tuples -> lists."""
    if isinstance(v, Finding):
        return {"__finding__": encode_state(dataclasses.asdict(v))}
    if isinstance(v, (deque, list, tuple)):
        return [encode_state(i) for i in v]
    if isinstance(v, dict):
        return {str(k): encode_state(i) for k, i in v.items()}
    return copy.deepcopy(v)


def decode_state(v: Any) -> Any:
    """Inverse of :func:`encode_state` (lists stay lists; see :meth:`JSONStateMixin.restore`)."""
    if isinstance(v, dict):
        if set(v) == {"__finding__"}:
            return Finding(**decode_state(v["__finding__"]))
        return {k: decode_state(i) for k, i in v.items()}
    if isinstance(v, list):
        return [decode_state(i) for i in v]
    return v


class JSONStateMixin:
    """Snapshots as plain JSON data: ``Finding`` s become dicts, deques lists.

    Put it before the check's base class. ``restore`` turns lists back into
    deques wherever the fresh instance holds a deque (keeping ``maxlen``).
    """

    def snapshot(self) -> dict[str, Any]:
        return {k: encode_state(v) for k, v in vars(self).items() if k.startswith("_")}

    def restore(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            v = decode_state(copy.deepcopy(v))
            cur = getattr(self, k, None)
            if isinstance(cur, deque) and isinstance(v, list):
                v = deque(v, maxlen=cur.maxlen)
            setattr(self, k, v)


def _check_severity(severity: str) -> None:
    if severity not in SEVERITY_RANK:
        raise ValueError(f"severity {severity!r} not in {SEVERITIES}")


# -- the rule -----------------------------------------------------------------


class WarningLevels(JSONStateMixin, Rule):
    """Multi-level thresholds with hysteresis and a minimum duration.

    A severity is *raised* once the value has met its level continuously for
    ``min_duration_s``; it is *lowered* only when the value leaves the reset
    level of the severity in force (immediately, no duration), and then falls
    to the highest severity whose reset level the value still meets.

    Parameters
    ----------
    field
        The reading's field, e.g. ``"level_m"``.
    levels
        ``{severity: level}``, e.g. ``{"yellow": 4.5, "orange": 5.2}``. Higher
        severities must have more extreme levels.
    reset
        ``{severity: reset level}``; defaults to each level minus
        ``hysteresis`` (plus, for ``direction="below"``).
    hysteresis
        Distance between a level and its default reset level, in field units.
    min_duration_s
        How long a level must be met before firing or raising the severity.
    direction
        ``"above"`` (value ≥ level is bad) or ``"below"`` (value ≤ level).
    level_names
        Optional names for messages, e.g. ``{"yellow": "warning level"}``;
        default ``"<severity> level"``.
    name
        The rule's name; default ``"<field>.levels"``.

    Examples
    --------
    >>> r = WarningLevels("level_m", levels={"yellow": 4.5, "orange": 5.2},
    ...                   hysteresis=0.1, level_names={"yellow": "warning level"})
    >>> r.update({"level_m": 4.3}, 0) is None
    True
    >>> r.update({"level_m": 4.62}, 60).message
    'level 4.62 m above warning level 4.50 m'
    >>> r.update({"level_m": 4.45}, 120).severity   # above reset 4.40: held
    'yellow'
    >>> r.update({"level_m": 4.38}, 180) is None
    True
    >>> r.update({"level_m": 5.3}, 240).severity
    'orange'
    """

    def __init__(
        self,
        field: str = "level_m",
        levels: dict[str, float] | None = None,
        reset: dict[str, float] | None = None,
        hysteresis: float = 0.1,
        min_duration_s: float = 0.0,
        direction: str = "above",
        level_names: dict[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        self.field = field
        self.levels = levels
        self.reset = reset
        self.hysteresis = hysteresis
        self.min_duration_s = min_duration_s
        self.direction = direction
        self.level_names = level_names
        self.name = name or f"{field}.levels"

        if direction not in ("above", "below"):
            raise ValueError("direction must be 'above' or 'below'")
        lv = dict(levels) if levels is not None else {"blue": 4.0, "yellow": 4.5, "orange": 5.0, "red": 5.5}
        if not lv:
            raise ValueError("levels must not be empty")
        for s in lv:
            _check_severity(s)
        order = sorted(lv, key=SEVERITY_RANK.__getitem__)
        sign = 1.0 if direction == "above" else -1.0
        for lo, hi in zip(order, order[1:]):
            if sign * (lv[hi] - lv[lo]) <= 0:
                raise ValueError(f"level of {hi} must be {'above' if sign > 0 else 'below'} level of {lo}")
        rs = {s: lv[s] - sign * float(hysteresis) for s in lv}
        if reset:
            for s, v in reset.items():
                if s not in lv:
                    raise ValueError(f"reset given for {s!r} which has no level")
                if sign * (lv[s] - v) < 0:
                    raise ValueError(f"reset of {s} must not be beyond its level")
                rs[s] = float(v)
        self._order = order  # severities, lowest first (derived, kept for speed)
        self._lv = lv
        self._rs = rs
        self._sign = sign
        self._lowest_level = lv[order[0]]  # short of it, no severity is met

        self._current: Finding | None = None
        self._met_since: dict[str, float] = {}  # severity -> start of its run of readings meeting the level

    # state worth persisting: only the episode, not the derived tables
    def snapshot(self) -> dict[str, Any]:
        return {k: v for k, v in super().snapshot().items() if k in ("_current", "_met_since")}

    def update(self, x: dict[str, float], t: float) -> Finding | None:
        v = finite_value(x, self.field)
        if v is None:
            return self._current
        sign, lv, met, hold = self._sign, self._lv, self._met_since, self.min_duration_s
        if self._current is None and not met and sign * (v - self._lowest_level) < 0:
            return None  # the usual reading: short of the lowest level, nothing met or held before
        new = None
        for s in self._order:  # raised: level met long enough (severities lowest first)
            if sign * (v - lv[s]) >= 0:
                since = met.get(s)
                if since is None:
                    met[s] = since = t
                if t - since >= hold:
                    new = s
            elif s in met:
                del met[s]
        if self._current is not None:  # held: reset level of a severity <= current still met
            cur_rank, rs = self._current.rank, self._rs
            for s in self._order:
                if SEVERITY_RANK[s] <= cur_rank and sign * (v - rs[s]) >= 0:
                    if new is None or SEVERITY_RANK[s] > SEVERITY_RANK[new]:
                        new = s
        if new is None:
            self._current = None
            return None
        level = self._lv[new]
        self._current = LazyFinding(
            self.name, new, severity_score(new), v, level, _level_message,
            (self.field, v, new, level, self.level_names, self._sign, self._met_since.get(new), t, self._rs[new]),
            field=self.field, extra={"reset": self._rs[new]},
        )
        return self._current


def _level_message(field: str, v: float, severity: str, level: float, level_names: dict[str, str] | None,
                   sign: float, since: float | None, t: float, reset: float) -> str:
    """:class:`WarningLevels`' message: value, side and level, and how long it has been met (or where it clears)."""
    level_name = (level_names or {}).get(severity, f"{severity} level")
    side = "above" if sign > 0 else "below"
    if since is not None and t - since > 0:
        tail = f" for {fmt_duration(t - since)}"
    elif since is None:  # held by its reset level, no longer met
        side = "near"
        tail = f" (clears {'below' if sign > 0 else 'above'} {fmt_value(reset, field)})"
    else:
        tail = ""
    return f"{label_of(field)} {fmt_value(v, field)} {side} {level_name} {fmt_value(level, field)}{tail}"
