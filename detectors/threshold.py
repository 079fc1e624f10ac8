"""Thresholding wrapper: turns an anomaly detector's scores into findings.

:class:`ScoreThreshold` runs an :class:`~detectors.base.AnomalyDetector` on
each reading (scored first, then learnt, in one ``score_learn_one`` call, so a
reading never scores against a model that has already seen it) and reports a finding when
the score reaches ``threshold`` -- after a warm-up of ``min_count`` readings,
before which the model has not learnt enough to be trusted.
"""

from __future__ import annotations

import math
from typing import Any

from cityeye.contracts import SEVERITIES, SEVERITY_RANK
from detectors._calibration import ScoreQuantile
from detectors.base import Check, Finding, LazyFinding
from detectors.levels import JSONStateMixin, decode_state, encode_state, finite_value, fmt_value, label_of

__all__ = ["ScoreThreshold"]

_WEEK_S = 7 * 86400.0


def _clip01(s: Any) -> float:
    if type(s) is float and 0.0 < s <= 1.0:  # the usual score: as it is (0.0 and -0.0 below give 0.0)
        return s
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
        ``score_one``/``score_learn_one``/``snapshot``/``restore``/``clone``).
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
    alerts_per_week
        ``None`` (default): ``threshold`` is the threshold. Else an
        alert-rate budget: the threshold in force is the higher of
        ``threshold`` (a fixed floor) and the score that at most
        ``alerts_per_week`` of a week's readings reach on this sensor's own
        past scores (a bounded histogram, see
        :class:`~detectors._calibration.ScoreQuantile`; scores of the
        warm-up are not counted). A noisy sensor then needs a higher score
        than a quiet one, and every sensor alerts about as rarely on its
        usual data.
    interval_s
        The sensor's reporting interval (readings per week =
        ``604800 / interval_s``); only used with ``alerts_per_week``.
    uncalibrated_threshold
        With ``alerts_per_week``: the threshold in force (if higher) until a
        week of the sensor's scores has been counted, while its quantile
        rests on too few readings to bound a weekly rate.

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
        alerts_per_week: float | None = None,
        interval_s: float = 60.0,
        uncalibrated_threshold: float = 0.9,
    ) -> None:
        self.detector = detector
        self.threshold = threshold
        self.severity = severity
        self.name = name or (f"{field}.anomaly" if field else "anomaly")
        self.field = field
        self.min_count = min_count
        self.alerts_per_week = alerts_per_week
        self.interval_s = interval_s
        self.uncalibrated_threshold = uncalibrated_threshold
        if alerts_per_week is not None and not alerts_per_week > 0:
            raise ValueError("alerts_per_week must be > 0 (or None)")
        if not interval_s > 0:
            raise ValueError("interval_s must be > 0")
        # per-sensor score histogram, about 8 weeks of readings
        self._quantile = ScoreQuantile(horizon=8 * _WEEK_S / interval_s) if alerts_per_week else None
        if severity not in SEVERITY_RANK:
            raise ValueError(f"severity {severity!r} not in {SEVERITIES}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be in [0, 1]")
        self._current: Finding | None = None
        self._count = 0

    def threshold_in_force(self) -> float:
        """``threshold``, or with an alert-rate budget the higher of it and the sensor's
        score quantile at ``1 - alerts_per_week / readings per week``."""
        if self._quantile is None:
            return self.threshold
        share = self.alerts_per_week * self.interval_s / _WEEK_S
        floor = self.threshold if self._quantile.total * share >= 1.0 else max(self.threshold,
                                                                              self.uncalibrated_threshold)
        return max(floor, self._quantile.upper(share))

    # -- plumbing -------------------------------------------------------------

    def clone(self) -> "ScoreThreshold":
        return type(self)(
            detector=self.detector.clone(),
            threshold=self.threshold,
            severity=self.severity,
            name=self.name,
            field=self.field,
            min_count=self.min_count,
            alerts_per_week=self.alerts_per_week,
            interval_s=self.interval_s,
            uncalibrated_threshold=self.uncalibrated_threshold,
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "_current": encode_state(self._current),
            "_count": self._count,
            "_detector": self.detector.snapshot(),
            "_quantile": None if self._quantile is None else self._quantile.snapshot(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._current = decode_state(state.get("_current"))
        self._count = int(state.get("_count", 0))
        if "_detector" in state:
            self.detector.restore(state["_detector"])
        if self._quantile is not None:
            self._quantile.restore(state.get("_quantile"))  # absent before the budget: starts afresh

    def _clean(self, x: Any) -> dict[str, float] | None:
        """``x``'s finite values as floats (in ``x``'s order), or ``None`` if none is, or if ``field``'s is not."""
        if not isinstance(x, dict):
            return None
        clean = {}
        for k, v in x.items():
            # a decoded reading's finite float as it is; anything else (an int, NaN...) through finite_value
            if type(v) is not float or v - v != 0.0:
                v = finite_value(x, k)
                if v is None:
                    continue
            clean[k] = v
        if self.field is not None and self.field not in clean:
            return None
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
        score = _clip01(self.detector.score_learn_one(clean))
        self._count += 1
        if self._count <= self.min_count:
            self._current = None
            return None
        # below the floor: below the threshold in force, whatever the calibration (not computed)
        threshold = self.threshold_in_force() if score >= self.threshold else None
        if self._quantile is not None:
            self._quantile.add(score)  # after the decision: score, then learn
        if threshold is None or score < threshold:
            self._current = None
            return None
        value = clean.get(self.field) if self.field else None
        self._current = LazyFinding(self.name, self.severity, score, value, threshold,
                                    _anomaly_message, (self.field, value, score, threshold),
                                    field=self.field, extra={"count": self._count})
        return self._current


def _anomaly_message(field: str | None, value: float | None, score: float, threshold: float) -> str:
    """:class:`ScoreThreshold`'s message: the value (if a field is watched), its score and the threshold."""
    what = f"{label_of(field)} {fmt_value(value, field)}" if field else "reading"
    return f"{what} anomalous: score {score:.2f} ≥ {threshold:.2f}"
