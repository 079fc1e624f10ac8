"""Stale sensor: no data for too long, evaluated on a clock.

:class:`StaleSensor` is a dead man's switch (Kapacitor's ``deadman``,
Prometheus's ``absent()``): ``process`` records when the sensor was last seen
and clears the finding; ``tick(t)`` fires once ``missed_intervals`` expected
intervals have passed with no reading.
"""

from __future__ import annotations

from cityeye.contracts import SEVERITIES, SEVERITY_RANK
from detectors.base import Finding, LazyFinding, Rule, severity_score
from detectors.levels import JSONStateMixin, finite_value, fmt_duration

__all__ = ["StaleSensor"]


class StaleSensor(JSONStateMixin, Rule):
    """No reading for ``missed_intervals`` × ``expected_interval_s``.

    A sensor never seen is not reported (nothing tells us it should exist:
    the registry's expected sensors are the stream processor's concern). The
    clock is the caller's: stream time, so a replay behaves as live.

    Parameters
    ----------
    expected_interval_s
        The sensor's reporting interval.
    missed_intervals
        How many intervals may pass without data before the finding.
    severity
        Severity of the finding.
    field
        If given, only readings with a finite value of this field count as
        seen (a sensor sending only empty or NaN values is stale too).
    name
        Default ``"stale"``.

    Examples
    --------
    >>> r = StaleSensor(expected_interval_s=60, missed_intervals=5)
    >>> r.process({"level_m": 4.2}, 1000.0) is None
    True
    >>> r.tick(1200.0) is None
    True
    >>> r.tick(1300.0).message
    'no data for 5 min (expected every 1 min; 5 intervals missed)'
    >>> r.process({"level_m": 4.2}, 1310.0) is None
    True
    """

    def __init__(
        self,
        expected_interval_s: float = 60.0,
        missed_intervals: int = 5,
        severity: str = "yellow",
        field: str | None = None,
        name: str | None = None,
    ) -> None:
        self.expected_interval_s = expected_interval_s
        self.missed_intervals = missed_intervals
        self.severity = severity
        self.field = field
        self.name = name or "stale"
        if severity not in SEVERITY_RANK:
            raise ValueError(f"severity {severity!r} not in {SEVERITIES}")
        if not expected_interval_s > 0 or not missed_intervals > 0:
            raise ValueError("expected_interval_s and missed_intervals must be positive")
        self._current: Finding | None = None
        self._last_seen: float | None = None

    @property
    def timeout_s(self) -> float:
        return float(self.expected_interval_s) * float(self.missed_intervals)

    def update(self, x: dict[str, float], t: float) -> Finding | None:
        if self.field is not None and finite_value(x, self.field) is None:
            return self._current
        if self._last_seen is None or t >= self._last_seen:
            self._last_seen = t
        self._current = None
        return None

    def tick(self, t: float) -> Finding | None:
        if self._last_seen is None:
            return self._current
        gap = t - self._last_seen
        if gap < self.timeout_s:
            self._current = None
            return None
        self._current = LazyFinding(
            self.name, self.severity, severity_score(self.severity), gap, self.timeout_s, _stale_message,
            (gap, self.expected_interval_s), field=self.field, extra={"last_seen": self._last_seen},
        )
        return self._current


def _stale_message(gap: float, expected_interval_s: float) -> str:
    """:class:`StaleSensor`'s message: how long without data, against the expected interval."""
    return (f"no data for {fmt_duration(gap)} (expected every {fmt_duration(expected_interval_s)}; "
            f"{int(gap // expected_interval_s)} intervals missed)")
