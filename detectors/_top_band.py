"""The reported score of :class:`~detectors.multiscale_novelty.MultiScaleNoveltyDetector`: alarm band and top band.

The detector's highest vote ``best`` (every view, shape and flat-run vote,
offset) is turned into the score it reports:

* below the band's low end ``lo`` (the rest threshold, 0.75 by default):
  ``best`` as it is;
* an *ordinary alarm*, ``lo <= best < 1``: mapped linearly into the band
  ``[lo, hi)`` (0.95 by default);
* a *top vote*, ``best >= 1`` (a vote clipped at the top of the scale):
  ``1 - tiebreak * (1 - s)`` in ``[1 - tiebreak, 1]``, ``s`` the highest
  shape score, so the readings that reach the top rank by how unlike every
  earlier window they are.

The alarm penalty (``alarm_penalty`` per recent alarm, see the detector) is
taken off every score but the top votes': a sensor that keeps alarming needs
a higher vote to alarm again, but its strongest evidence keeps the top of the
scale, above every ordinary alarm of any sensor. A "highest score of the
series" metric (the hold-out of issue #11, ``evaluation.holdout_proxy``)
reads that top: before, a later top vote was lowered by the alarms before it
and an earlier, weaker one could outrank it. A NAB threshold (about 0.72)
lies below the band: the band changes which readings cross it only through
the penalty.

``band=None`` is the former score: no band, and the penalty on every vote.
"""

from __future__ import annotations

from typing import Callable, Sequence

__all__ = ["score_reporter", "alarm_band"]


def alarm_band(band: Sequence[float] | None) -> tuple[float, float] | None:
    """``band`` as a ``(lo, hi)`` pair of floats, ``ValueError`` unless ``0 <= lo < hi <= 1``.

    >>> alarm_band([0.75, 0.95]), alarm_band(None)
    ((0.75, 0.95), None)
    """
    if band is None:
        return None
    lo, hi = (float(b) for b in band)
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError("alarm_band: (lo, hi) with 0 <= lo < hi <= 1, or None")
    return lo, hi


def score_reporter(band: tuple[float, float] | None, tiebreak: float,
                   penalty: float) -> Callable[[float, float, float], float]:
    """``report(best, distinct, alarms)``: the score reported for the highest vote ``best``.

    ``distinct`` is the highest shape score (the top votes' tie-break),
    ``alarms`` the discounted number of recent alarms (times ``penalty``
    is taken off). The score is clipped at 0.

    Examples
    --------
    >>> report = score_reporter((0.75, 0.95), tiebreak=0.05, penalty=0.01)
    >>> report(0.5, 0.0, 2.0), round(report(0.875, 0.0, 0.0), 6), report(1.3, 1.0, 5.0)
    (0.48, 0.85, 1.0)
    >>> old = score_reporter(None, tiebreak=0.05, penalty=0.01)
    >>> round(old(0.875, 0.0, 0.0), 6), round(old(1.3, 1.0, 5.0), 6)
    (0.875, 0.95)
    """
    top_share = float(tiebreak)
    penalty = float(penalty)
    if band is None:
        def report(best: float, distinct: float, alarms: float) -> float:
            if best >= 1.0:
                best = 1.0 - top_share * (1.0 - distinct)
            score = best - penalty * alarms
            return score if score > 0.0 else 0.0
        return report
    lo, hi = band
    slope = (hi - lo) / (1.0 - lo)

    def report(best: float, distinct: float, alarms: float) -> float:
        if best >= 1.0:  # a top vote: no penalty
            return 1.0 - top_share * (1.0 - distinct)
        if best >= lo:  # an ordinary alarm: into the band
            best = lo + (best - lo) * slope
        score = best - penalty * alarms
        return score if score > 0.0 else 0.0
    return report
