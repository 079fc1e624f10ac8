"""Thresholding wrapper: turns an anomaly detector's scores into findings.

:class:`ScoreThreshold` runs an :class:`~detectors.base.AnomalyDetector` on
each reading (``score_one`` first, then ``learn_one``, so a reading never
scores against a model that has already seen it) and reports a finding when
the score reaches ``threshold`` -- after a warm-up of ``min_count`` readings,
before which the model has not learnt enough to be trusted.
"""

from __future__ import annotations

import math
from typing import Any

from cityeye.contracts import SEVERITIES, SEVERITY_RANK
from detectors.base import Check, Finding
from detectors.levels import JSONStateMixin, decode_state, encode_state, finite_value, fmt_value, label_of

__all__ = ["ScoreThreshold"]


def _clip01(s: Any) -> float:
    try:
        s = float(s)
    except (TypeError, ValueError):
        return 0.0
    if not math.isfinite(s):
        return 0.0
    return min(1.0, max(0.0, s))


class ScoreThreshold(JSONStateMixin, Check):
    """Finding when an anomaly score reaches a threshold.

    Parameters
    ----------
    detector
        An :class:`~detectors.base.AnomalyDetector` (anything with
        ``score_one``/``learn_one``/``snapshot``/``restore``/``clone``).
    threshold
        Score in ``[0, 1]`` at or above which a reading is anomalous.
    severity
        Severity of the finding.
    name
        Default ``"<field>.anomaly"`` (or ``"anomaly"``).
    field
        The field the detector watches: a reading without a finite value for
        it is neither scored nor learnt (the finding in force stays). With
        ``None``, readings with no finite value at all are skipped.
    min_count
        Warm-up: readings learnt before any finding can be reported.

    Examples
    --------
    >>> from detectors.base import AnomalyDetector
    >>> class Far(AnomalyDetector):          # toy detector: distance to the running mean
    ...     def __init__(self):
    ...         self._n, self._mean = 0, 0.0
    ...     def learn_one(self, x):
    ...         self._n += 1
    ...         self._mean += (x["v"] - self._mean) / self._n
    ...     def score_one(self, x):
    ...         return min(1.0, abs(x["v"] - self._mean) / 10)
    >>> r = ScoreThreshold(Far(), threshold=0.9, field="v", min_count=3)
    >>> [r.process({"v": v}, float(i)) for i, v in enumerate([50.0, 50.0, 50.0])]
    [None, None, None]
    >>> r.process({"v": 70.0}, 3.0).message
    'v 70.00 anomalous: score 1.00 ≥ 0.90'
    >>> r.process({}, 4.0).severity          # no value: the finding in force stays
    'yellow'
    >>> r.process({"v": 54.0}, 5.0) is None
    True
    """

    def __init__(
        self,
        detector: Any,
        threshold: float = 0.9,
        severity: str = "yellow",
        name: str | None = None,
        field: str | None = None,
        min_count: int = 50,
    ) -> None:
        self.detector = detector
        self.threshold = threshold
        self.severity = severity
        self.name = name or (f"{field}.anomaly" if field else "anomaly")
        self.field = field
        self.min_count = min_count
        if severity not in SEVERITY_RANK:
            raise ValueError(f"severity {severity!r} not in {SEVERITIES}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be in [0, 1]")
        self._current: Finding | None = None
        self._count = 0

    # -- plumbing -------------------------------------------------------------

    def clone(self) -> "ScoreThreshold":
        return type(self)(
            detector=self.detector.clone(),
            threshold=self.threshold,
            severity=self.severity,
            name=self.name,
            field=self.field,
            min_count=self.min_count,
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "_current": encode_state(self._current),
            "_count": self._count,
            "_detector": self.detector.snapshot(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._current = decode_state(state.get("_current"))
        self._count = int(state.get("_count", 0))
        if "_detector" in state:
            self.detector.restore(state["_detector"])

    def _clean(self, x: Any) -> dict[str, float] | None:
        if not isinstance(x, dict):
            return None
        if self.field is not None and finite_value(x, self.field) is None:
            return None
        clean = {k: finite_value(x, k) for k in x}
        clean = {k: v for k, v in clean.items() if v is not None}
        return clean or None

    # -- River-style surface -----------------------------------------------------

    def score_one(self, x: dict[str, float], t: float = 0.0) -> float:
        """The detector's score of ``x`` in ``[0, 1]``, without learning (0 if unusable)."""
        clean = self._clean(x)
        return 0.0 if clean is None else _clip01(self.detector.score_one(clean))

    def learn_one(self, x: dict[str, float], t: float = 0.0) -> None:
        self.process(x, t)

    # -- Check ---------------------------------------------------------------------

    def process(self, x: dict[str, float], t: float) -> Finding | None:
        clean = self._clean(x)
        if clean is None:
            return self._current
        score = _clip01(self.detector.score_one(clean))
        self.detector.learn_one(clean)
        self._count += 1
        if self._count <= self.min_count or score < self.threshold:
            self._current = None
            return None
        value = clean.get(self.field) if self.field else None
        what = f"{label_of(self.field)} {fmt_value(value, self.field)}" if self.field else "reading"
        self._current = Finding(
            rule=self.name,
            severity=self.severity,
            score=score,
            value=value,
            threshold=self.threshold,
            message=f"{what} anomalous: score {score:.2f} ≥ {self.threshold:.2f}",
            field=self.field,
            extra={"count": self._count},
        )
        return self._current

