"""Flatline: the same value many readings in a row (a stuck sensor).

Delft-FEWS's "same reading" check: :class:`Flatline` counts consecutive
readings within ``tolerance`` of the first reading of the run.
"""

from __future__ import annotations

from cityeye.contracts import SEVERITIES, SEVERITY_RANK
from detectors.base import Finding, LazyFinding, Rule, severity_score
from detectors.levels import JSONStateMixin, finite_value, fmt_duration, fmt_value, label_of

__all__ = ["Flatline"]


class Flatline(JSONStateMixin, Rule):
    """The same value ``repeats`` times in a row.

    The run is anchored at its first value, so a slow drift of less than
    ``tolerance`` per reading still ends it once it leaves the tolerance. The
    finding clears with the first reading outside the tolerance.

    Parameters
    ----------
    field
        The reading's field.
    repeats
        Number of consecutive equal readings (the first one included) that
        make a flatline.
    tolerance
        Readings within this distance of the run's first value count as equal.
    severity
        Severity of the finding (a data-quality problem: ``"blue"``).
    name
        Default ``"<field>.flatline"``.

    Examples
    --------
    >>> r = Flatline("level_m", repeats=3)
    >>> [r.update({"level_m": v}, 60.0 * i) is None for i, v in enumerate([4.1, 4.2, 4.2, 4.2])]
    [True, True, True, False]
    >>> r.update({"level_m": 4.2}, 240).message
    'level stuck at 4.20 m for 4 readings (3 min)'
    >>> r.update({"level_m": 4.25}, 300) is None
    True
    """

    def __init__(
        self,
        field: str = "level_m",
        repeats: int = 10,
        tolerance: float = 0.0,
        severity: str = "blue",
        name: str | None = None,
    ) -> None:
        self.field = field
        self.repeats = repeats
        self.tolerance = tolerance
        self.severity = severity
        self.name = name or f"{field}.flatline"
        if severity not in SEVERITY_RANK:
            raise ValueError(f"severity {severity!r} not in {SEVERITIES}")
        if int(repeats) < 2:
            raise ValueError("repeats must be at least 2")
        if tolerance < 0:
            raise ValueError("tolerance must be >= 0")
        self._current: Finding | None = None
        self._anchor: float | None = None
        self._count = 0
        self._since: float | None = None

    def update(self, x: dict[str, float], t: float) -> Finding | None:
        v = finite_value(x, self.field)
        if v is None:
            return self._current
        if self._anchor is not None and abs(v - self._anchor) <= self.tolerance:
            self._count += 1
        else:
            self._anchor, self._count, self._since = v, 1, t
        if self._count < self.repeats:
            self._current = None
            return None
        self._current = LazyFinding(
            self.name, self.severity, severity_score(self.severity), self._anchor, float(self.repeats),
            _flatline_message, (self.field, self._anchor, self._count, t - self._since),
            field=self.field, extra={"count": self._count, "since": self._since},
        )
        return self._current


def _flatline_message(field: str, anchor: float, count: int, duration_s: float) -> str:
    """:class:`Flatline`'s message: the value stuck, for how many readings and how long."""
    return f"{label_of(field)} stuck at {fmt_value(anchor, field)} for {count} readings ({fmt_duration(duration_s)})"
