"""River's Half-Space Trees, with online scaling, as an :class:`AnomalyDetector`."""

from __future__ import annotations

from typing import Any

from river import anomaly, preprocessing

from detectors._pickled import pickled, unpickled
from detectors.base import LearntScoreDetector, model_value

__all__ = ["RiverHalfSpaceTrees"]


class RiverHalfSpaceTrees(LearntScoreDetector):
    """Half-Space Trees (Tan et al., 2011) on one field, scaled online.

    Half-Space Trees need features in ``[0, 1]``. Readings are scaled with a
    running min / max (River's ``MinMaxScaler``), clipped to ``[0, 1]`` so a
    reading beyond the range seen so far lands on the edge of the space. The
    reading is scored before it updates the scaler (causal).

    Parameters
    ----------
    field
        Name of the numeric field read from ``x``.
    n_trees, height, window_size
        Passed to :class:`river.anomaly.HalfSpaceTrees`.
    seed
        Random seed of the trees.

    Examples
    --------
    >>> import random
    >>> from detectors.river_hst import RiverHalfSpaceTrees
    >>> rng = random.Random(7)
    >>> det = RiverHalfSpaceTrees(seed=42)
    >>> for _ in range(1000):
    ...     det.learn_one({"value": rng.gauss(10, 1)})
    >>> det.score_one({"value": 25.0}) > det.score_one({"value": 10.0})
    True
    >>> 0.0 <= det.score_one({"value": float("nan")}) <= 1.0
    True
    """

    def __init__(
        self,
        field: str = "value",
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        seed: int | None = 42,
    ) -> None:
        self.field = field
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed
        self._scaler = preprocessing.MinMaxScaler()
        self._hst = anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )
        self._score = 0.0


    def _scaled(self, v: float) -> dict[str, float]:
        s = self._scaler.transform_one({"v": v})["v"]
        return {"v": min(1.0, max(0.0, s))}

    def score_one(self, x: dict[str, float]) -> float:
        v = model_value(x, self.field)
        if v is None:
            return self._score
        return float(min(1.0, max(0.0, self._hst.score_one(self._scaled(v)))))

    def learn_one(self, x: dict[str, float]) -> None:
        v = model_value(x, self.field)
        if v is None:
            return
        z = self._scaled(v)
        self._score = float(min(1.0, max(0.0, self._hst.score_one(z))))
        self._hst.learn_one(z)
        self._scaler.learn_one({"v": v})

    def snapshot(self) -> dict[str, Any]:
        """State as JSON-able data (the River objects pickled, zlib-compressed, base64)."""
        return pickled((self._scaler, self._hst, self._score))

    def restore(self, state: dict[str, Any]) -> None:
        self._scaler, self._hst, self._score = unpickled(state)
