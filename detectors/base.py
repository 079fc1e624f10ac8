"""The detector interface, in River's style.

Two families share one small surface so that ``streams/`` can run any of them
per sensor and engineers can swap them by configuration:

* :class:`AnomalyDetector` -- online models: ``learn_one(x)`` /
  ``score_one(x)`` with scores in ``[0, 1]`` (higher = more anomalous). A
  separate thresholding wrapper (``detectors.threshold``) turns scores into
  :class:`Finding` s.
* :class:`Rule` -- deterministic checks (warning levels, rate of rise,
  accumulation, flatline, stale sensor...). ``update(x, t)`` returns the
  condition in force after this reading: a :class:`Finding` or ``None``.

Both are :class:`Check` s: ``process(x, t) -> Finding | None`` gives the
condition in force after the reading (``None`` = normal), ``tick(t)``
re-evaluates on a clock with no reading (no-data rules use it), and
``snapshot()`` / ``restore()`` move the state to and from plain JSON-able
data so a worker can recover it.

``x`` is a dict ``{field: float}`` (a reading's values) and ``t`` the
reading's time in epoch seconds. A missing field or a NaN is not an error:
the check keeps its state and reports what it reported before.
"""

from __future__ import annotations

import abc
import math
import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from cityeye.contracts import SEVERITIES, SEVERITY_RANK

__all__ = [
    "Finding", "LazyFinding", "Check", "Rule", "AnomalyDetector", "LearntScoreDetector", "finite_value",
    "model_value", "MODEL_VALUE_LIMIT", "severity_score",
]



def severity_score(severity: str) -> float:
    """A rule finding's score in ``[0, 1]``: its severity's rank over the number of severities.

    >>> severity_score("red") > severity_score("orange") > severity_score("blue") > 0
    True
    """
    return SEVERITY_RANK[severity] / len(SEVERITIES)


def finite_value(x: Any, field: str | None) -> float | None:
    """``x[field]`` as a float, or ``None`` if missing, not a number, a bool, NaN or inf.

    Every check reads its field through this, so a missing field or a bad
    value never raises: the check keeps its state.

    >>> finite_value({"level_m": "4.5"}, "level_m"), finite_value({"level_m": float("nan")}, "level_m")
    (4.5, None)
    """
    if field is None or not isinstance(x, dict):
        return None
    v = x.get(field)
    if type(v) is float:  # what every decoded reading holds: no conversion (v - v is NaN for NaN and inf)
        return v if v - v == 0.0 else None
    if v is None or isinstance(v, bool):
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


#: The largest magnitude an anomaly model takes in: float32's largest value.
#: A model keeps readings as float32 (the shape buffers) and squares them in
#: float64 (running variances, prefix sums, autocorrelations); a reading held
#: at this magnitude stays finite through all of that (its square is ~1e77).
MODEL_VALUE_LIMIT = 3.4028234663852886e38


def model_value(x: Any, field: str | None) -> float | None:
    """:func:`finite_value`, held within ``+-MODEL_VALUE_LIMIT`` (what anomaly models read).

    A finite reading beyond float32's range (e.g. ``1e300``) would become inf
    in a float32 buffer or in a square, and inf or NaN in a model's state
    silences it for good; held at the limit it is only a very large reading.

    >>> model_value({"v": 1e300}, "v") == MODEL_VALUE_LIMIT, model_value({"v": -2.5}, "v")
    (True, -2.5)
    """
    v = finite_value(x, field)
    if v is None or -MODEL_VALUE_LIMIT <= v <= MODEL_VALUE_LIMIT:
        return v
    return MODEL_VALUE_LIMIT if v > 0 else -MODEL_VALUE_LIMIT


@dataclass
class Finding:
    """A condition a check found: what, how bad, and the numbers behind it.

    ``rule`` names the check instance (e.g. ``water_level.warning``);
    ``threshold`` is the level crossed (or the score threshold), ``value``
    the value that crossed it; ``score`` is in ``[0, 1]``.
    """

    rule: str
    severity: str
    score: float
    value: float | None
    threshold: float | None
    message: str
    field: str | None = None
    # dataclasses.field: the bare name ``field`` is shadowed by the attribute above
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITY_RANK:
            raise ValueError(f"severity {self.severity!r} not in {SEVERITIES}")

    @property
    def rank(self) -> int:
        return SEVERITY_RANK[self.severity]


class LazyFinding(Finding):
    """A :class:`Finding` whose ``message`` is formatted when first read.

    A check that fires builds a finding at every reading while its condition
    holds, but the message is read only for an alert event or a snapshot: the
    stream engine keeps the latest finding of an open episode and reads it
    when it has to (streams/sensor_state.py). ``render(*args)`` gives the
    message; ``args`` must be the values it needs *now* (numbers, strings),
    not the check's mutable state. Otherwise it is a :class:`Finding` in every
    respect (fields, ``dataclasses.asdict``, equality with an eager finding of
    the same fields).

    Examples
    --------
    >>> f = LazyFinding("r", "blue", 0.25, 4.2, 4.0, "level {:.2f} m ≥ {:.2f} m".format, (4.2, 4.0))
    >>> f.message, f == Finding("r", "blue", 0.25, 4.2, 4.0, "level 4.20 m ≥ 4.00 m")
    ('level 4.20 m ≥ 4.00 m', True)
    """

    def __init__(self, rule: str, severity: str, score: float, value: float | None, threshold: float | None,
                 render: Callable[..., str], args: tuple = (), field: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        self.rule, self.severity, self.score, self.value, self.threshold = rule, severity, score, value, threshold
        self.__post_init__()  # Finding's check of the severity
        self.field = field
        self.extra = {} if extra is None else extra
        self._render: Callable[..., str] | None = render
        self._args = args
        self._message = ""

    @property  # type: ignore[override]  # the dataclass field, computed
    def message(self) -> str:
        if self._render is not None:
            self._message = self._render(*self._args)
            self._render, self._args = None, ()
        return self._message

    @message.setter
    def message(self, text: str) -> None:
        self._message, self._render, self._args = text, None, ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Finding):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in dataclasses.fields(Finding))

    __hash__ = None  # type: ignore[assignment]  # as a Finding's (a mutable dataclass)


class Check(abc.ABC):
    """Anything that turns a sensor's readings into findings."""

    #: Name of the check instance; alert events carry it as ``rule``.
    name: str = ""

    @abc.abstractmethod
    def process(self, x: dict[str, float], t: float) -> Finding | None:
        """Take one reading; return the condition in force after it."""

    def tick(self, t: float) -> Finding | None:
        """Re-evaluate at clock time ``t`` with no new reading.

        Most checks only change on readings and return their current finding.
        """
        return getattr(self, "_current", None)

    def snapshot(self) -> dict[str, Any]:
        """The check's state as plain data (JSON-able)."""
        return {k: copy.deepcopy(v) for k, v in vars(self).items() if k.startswith("_")}

    def restore(self, state: dict[str, Any]) -> None:
        """Put back a state taken with :meth:`snapshot`."""
        for k, v in state.items():
            setattr(self, k, copy.deepcopy(v))

    def clone(self) -> "Check":
        """A fresh instance with the same hyperparameters and no state."""
        params = {k: copy.deepcopy(v) for k, v in vars(self).items() if not k.startswith("_")}
        return type(self)(**params)


class Rule(Check):
    """A deterministic rule: ``update`` returns the condition in force.

    In a subclass, ``process`` *is* ``update`` (set when the class is made)
    unless the subclass or one of its bases below ``Rule`` defines its own
    ``process``: the stream engine calls ``process`` of every check at every
    reading, and a ``process`` calling ``update`` cost a call more each time.
    """

    #: ``process`` is the class's ``update``: false from a class defining its own ``process`` down
    _process_is_update = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "process" in vars(cls):
            cls._process_is_update = False
        elif cls._process_is_update:
            cls.process = cls.update  # type: ignore[method-assign]

    @abc.abstractmethod
    def update(self, x: dict[str, float], t: float) -> Finding | None:
        """Take one reading; return the finding in force (``None`` = normal)."""

    def process(self, x: dict[str, float], t: float) -> Finding | None:
        return self.update(x, t)

    # River-style surface, so the generic estimator test can drive rules too.
    def learn_one(self, x: dict[str, float], t: float = 0.0) -> None:
        self.update(x, t)

    def score_one(self, x: dict[str, float], t: float = 0.0) -> float:
        f = getattr(self, "_current", None)
        return 0.0 if f is None else severity_score(f.severity)


class AnomalyDetector(Check):
    """An online anomaly model: ``score_one`` then ``learn_one`` per reading.

    :meth:`score_learn_one` does both in one call; a model overrides it when
    the two share work (the reading's value, its contexts, look-ups).
    """

    @abc.abstractmethod
    def learn_one(self, x: dict[str, float]) -> None:
        """Update the model with one observation."""

    @abc.abstractmethod
    def score_one(self, x: dict[str, float]) -> float:
        """Anomaly score of ``x`` in ``[0, 1]``, higher = more anomalous."""

    def score_learn_one(self, x: dict[str, float]) -> float:
        """:meth:`score_one` of ``x``, then :meth:`learn_one` of it; returns the score.

        Every model gives exactly the score ``score_one`` would have given
        (the same float): only the cost differs.
        """
        score = self.score_one(x)
        self.learn_one(x)
        return score

    def process(self, x: dict[str, float], t: float) -> Finding | None:
        raise TypeError(
            f"{type(self).__name__} yields scores, not findings: wrap it in "
            "detectors.threshold.ScoreThreshold to get findings"
        )


class LearntScoreDetector(AnomalyDetector):
    """An anomaly model whose ``learn_one(x)`` leaves in ``_score`` what ``score_one(x)``
    gave just before (``score_one`` of a reading with no usable value returns ``_score``
    and ``learn_one`` leaves it alone): :meth:`score_learn_one` is then ``learn_one``
    alone, and the scoring is done once."""

    _score: float

    def score_learn_one(self, x: dict[str, float]) -> float:
        self.learn_one(x)
        return self._score
