"""Named anomaly detectors, so configuration can pick one by name.

>>> from detectors.catalog import DEFAULT_DETECTOR, make_detector
>>> det = make_detector(DEFAULT_DETECTOR, field="speed")
>>> det.field
'speed'
"""

from __future__ import annotations

from typing import Any

from detectors.base import AnomalyDetector
from detectors.context_novelty import ContextNoveltyDetector
from detectors.multiscale_novelty import MultiScaleNoveltyDetector
from detectors.river_hst import RiverHalfSpaceTrees
from detectors.river_pad import RiverSeasonalPAD

__all__ = ["DETECTORS", "DEFAULT_DETECTOR", "make_detector"]

#: name -> AnomalyDetector class
DETECTORS: dict[str, type[AnomalyDetector]] = {
    "context_novelty": ContextNoveltyDetector,
    "multiscale_novelty": MultiScaleNoveltyDetector,
    "river_hst": RiverHalfSpaceTrees,
    "river_pad": RiverSeasonalPAD,
}

#: CityEye's default anomaly detector (scored on NAB, see docs/detectors-nab.md).
DEFAULT_DETECTOR = "multiscale_novelty"


def make_detector(name: str | None = None, **params: Any) -> AnomalyDetector:
    """A new detector ``name`` (default :data:`DEFAULT_DETECTOR`) built with ``params``."""
    name = name or DEFAULT_DETECTOR
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}") from None
    return cls(**params)
