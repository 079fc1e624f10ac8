"""Validation of readings, as Delft-FEWS does it: hard/soft limits and spikes.

:class:`PhysicalLimits` flags values outside hard limits (impossible for this
sensor: a fault), outside soft limits (implausible: worth a look, lower
severity), jumps larger than ``max_step`` from the previous reading, and
spikes: a reading that differed from *both* neighbours by more than
``max_step`` in opposite directions (known one reading late, when the next
neighbour arrives).
"""

from __future__ import annotations

from cityeye.contracts import SEVERITIES, SEVERITY_RANK
from detectors.base import Finding, Rule, severity_score
from detectors.levels import JSONStateMixin, finite_value, fmt_value, label_of

__all__ = ["PhysicalLimits"]


class PhysicalLimits(JSONStateMixin, Rule):
    """Hard and soft limits, jumps and spikes of one field.

    Every reading is judged on its own: the finding in force is the most
    severe problem of the latest reading (or of the previous reading, for a
    spike detected now), and clears with the next clean reading.

    Parameters
    ----------
    field
        The reading's field.
    hard_low, hard_high
        Hard limits (``None`` = none): outside is a sensor fault.
    soft_low, soft_high
        Soft limits: outside is implausible.
    max_step
        Largest plausible change between consecutive readings (``None`` = no
        jump/spike check).
    hard_severity, soft_severity, spike_severity
        Severities of the three kinds of problem.
    name
        Default ``"<field>.validation"``.

    Examples
    --------
    >>> r = PhysicalLimits("level_m", hard_low=-1.0, hard_high=10.0, soft_high=6.0, max_step=0.5)
    >>> r.update({"level_m": 4.5}, 0) is None
    True
    >>> r.update({"level_m": 12.0}, 60).message
    'level 12.00 m outside hard limits [-1.00 m, 10.00 m]; jump of +7.50 m from 4.50 m (max step 0.50 m)'
    >>> r.update({"level_m": 4.52}, 120).message
    'spike: level 12.00 m between 4.50 m and 4.52 m (max step 0.50 m)'
    >>> r.update({"level_m": 4.53}, 180) is None
    True
    """

    def __init__(
        self,
        field: str = "level_m",
        hard_low: float | None = None,
        hard_high: float | None = None,
        soft_low: float | None = None,
        soft_high: float | None = None,
        max_step: float | None = None,
        hard_severity: str = "orange",
        soft_severity: str = "blue",
        spike_severity: str = "yellow",
        name: str | None = None,
    ) -> None:
        self.field = field
        self.hard_low = hard_low
        self.hard_high = hard_high
        self.soft_low = soft_low
        self.soft_high = soft_high
        self.max_step = max_step
        self.hard_severity = hard_severity
        self.soft_severity = soft_severity
        self.spike_severity = spike_severity
        self.name = name or f"{field}.validation"
        for s in (hard_severity, soft_severity, spike_severity):
            if s not in SEVERITY_RANK:
                raise ValueError(f"severity {s!r} not in {SEVERITIES}")
        if max_step is not None and not max_step > 0:
            raise ValueError("max_step must be positive")
        self._current: Finding | None = None
        self._prev: float | None = None
        self._prev2: float | None = None

    def _limits(self, lo: float | None, hi: float | None) -> str:
        a = "-inf" if lo is None else fmt_value(lo, self.field)
        b = "+inf" if hi is None else fmt_value(hi, self.field)
        return f"[{a}, {b}]"

    def update(self, x: dict[str, float], t: float) -> Finding | None:
        v = finite_value(x, self.field)
        if v is None:
            return self._current
        f = self.field
        problems: list[tuple[str, float | None, str]] = []  # (severity, threshold, message)
        if (self.hard_low is not None and v < self.hard_low) or (self.hard_high is not None and v > self.hard_high):
            thr = self.hard_low if self.hard_low is not None and v < self.hard_low else self.hard_high
            problems.append((self.hard_severity, thr, f"{label_of(f)} {fmt_value(v, f)} outside hard limits "
                             f"{self._limits(self.hard_low, self.hard_high)}"))
        elif (self.soft_low is not None and v < self.soft_low) or (self.soft_high is not None and v > self.soft_high):
            thr = self.soft_low if self.soft_low is not None and v < self.soft_low else self.soft_high
            problems.append((self.soft_severity, thr, f"{label_of(f)} {fmt_value(v, f)} outside soft limits "
                             f"{self._limits(self.soft_low, self.soft_high)}"))
        spike_value = None
        if self.max_step is not None and self._prev is not None:
            step = v - self._prev
            if (
                self._prev2 is not None
                and abs(self._prev - self._prev2) > self.max_step
                and abs(step) > self.max_step
                and (self._prev - self._prev2) * step < 0
            ):
                spike_value = self._prev
                problems.append((self.spike_severity, self.max_step,
                                 f"spike: {label_of(f)} {fmt_value(self._prev, f)} between "
                                 f"{fmt_value(self._prev2, f)} and {fmt_value(v, f)} "
                                 f"(max step {fmt_value(self.max_step, f)})"))
            elif abs(step) > self.max_step:
                problems.append((self.spike_severity, self.max_step,
                                 f"jump of {'+' if step >= 0 else '-'}{fmt_value(abs(step), f)} from {fmt_value(self._prev, f)} "
                                 f"(max step {fmt_value(self.max_step, f)})"))
        self._prev2, self._prev = self._prev, v
        if not problems:
            self._current = None
            return None
        worst = max(problems, key=lambda p: SEVERITY_RANK[p[0]])
        self._current = Finding(
            rule=self.name,
            severity=worst[0],
            score=severity_score(worst[0]),
            value=spike_value if worst[2].startswith("spike") else v,
            threshold=worst[1],
            message="; ".join(p[2] for p in problems),
            field=f,
            extra={"problems": [p[2] for p in problems]},
        )
        return self._current
