"""River's Predictive Anomaly Detection with a seasonal Holt-Winters forecaster."""

from __future__ import annotations

import math
from typing import Any

from river import anomaly, time_series

from detectors._pickled import pickled, unpickled
from detectors.base import LearntScoreDetector, model_value

__all__ = ["RiverSeasonalPAD"]


class RiverSeasonalPAD(LearntScoreDetector):
    """Forecast-error anomaly score with an additive Holt-Winters forecaster.

    The forecaster (level, trend and a season of ``season`` readings, e.g. 288
    for a daily cycle at 5-minute readings, 96 at 15 minutes) predicts the
    next reading; River's :class:`~river.anomaly.PredictiveAnomalyDetection`
    turns the squared error into a score in ``[0, 1]`` against a dynamic
    threshold (mean squared error + ``n_std`` standard deviations). Suited to
    traffic's daily / weekly cycles.

    ``score_one`` does not change the model (River's PAD updates its error
    statistics in ``score_one``; here that happens in ``learn_one``). Until the
    forecaster has seen one full season it scores 0.

    Parameters
    ----------
    field
        Name of the numeric field read from ``x``.
    season
        Season length in readings.
    alpha, beta, gamma
        Holt-Winters smoothing of level, trend and season.
    n_std
        Width of PAD's dynamic threshold, in standard deviations.
    warmup
        Readings after initialisation before scores are reported.

    Examples
    --------
    >>> import math, random
    >>> from detectors.river_pad import RiverSeasonalPAD
    >>> rng = random.Random(1)
    >>> det = RiverSeasonalPAD(season=24)
    >>> for t in range(24 * 20):
    ...     det.learn_one({"value": 10 * math.sin(2 * math.pi * t / 24) + rng.gauss(0, 0.3)})
    >>> t = 24 * 20
    >>> normal = {"value": 10 * math.sin(2 * math.pi * t / 24)}
    >>> det.score_one({"value": normal["value"] + 15}) > det.score_one(normal)
    True
    """

    def __init__(
        self,
        field: str = "value",
        season: int = 288,
        alpha: float = 0.3,
        beta: float = 0.01,
        gamma: float = 0.2,
        n_std: float = 3.0,
        warmup: int = 50,
    ) -> None:
        self.field = field
        self.season = season
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.n_std = n_std
        self.warmup = warmup
        self._pad = anomaly.PredictiveAnomalyDetection(
            time_series.HoltWinters(alpha=alpha, beta=beta, gamma=gamma, seasonality=season),
            horizon=1,
            n_std=n_std,
            warmup_period=0,
        )
        self._n = 0
        self._score = 0.0


    def _ready(self) -> bool:
        return bool(self._pad.predictive_model._initialized) and self._n >= self.warmup

    def score_one(self, x: dict[str, float]) -> float:
        v = model_value(x, self.field)
        if v is None:
            return self._score
        if not self._ready():
            return 0.0
        pad = self._pad
        pred = pad.predictive_model.forecast(1)[0]
        se = (pred - v) ** 2
        threshold = pad.dynamic_mae.get() + pad.n_std * math.sqrt(pad.dynamic_se_variance.get())
        if se >= threshold:
            return 1.0
        return float(se / threshold) if threshold > 0 else 0.0

    def learn_one(self, x: dict[str, float]) -> None:
        v = model_value(x, self.field)
        if v is None:
            return
        self._score = self.score_one(x)
        model = self._pad.predictive_model
        if model._initialized:
            self._n += 1
            self._pad.score_one(None, v)  # updates PAD's error statistics
        if not model._initialized and len(model._first_values) + 1 >= max(2, self.season):
            self._initialise(model, v)
        else:
            self._pad.learn_one(None, v)
        # River's Holt-Winters components are unbounded deques: keep what is used
        for comp, keep in ((model.level, 2), (model.trend, 2), (model.season, self.season + 1)):
            if comp is not None:
                while len(comp) > keep:
                    comp.popleft()

    def _initialise(self, model: Any, v: float) -> None:
        # River initialises the *additive* season as y / level (a ZeroDivisionError
        # when the first season averages 0); initialise it additively here.
        first = [*model._first_values, v]
        level = sum(first) / len(first)
        model.level.append(level)
        if model.trend is not None:
            model.trend.append((first[-1] - first[0]) / max(1, len(first) - 1))
        if model.season is not None:
            model.season.extend([y - level for y in first])
        model._first_values = []
        model._initialized = True
        self._pad.iter += 1

    def snapshot(self) -> dict[str, Any]:
        """State as JSON-able data (the River objects pickled, zlib-compressed, base64)."""
        return pickled((self._pad, self._n, self._score))

    def restore(self, state: dict[str, Any]) -> None:
        self._pad, self._n, self._score = unpickled(state)
