"""Seasonal contexts of :class:`~detectors.context_novelty.ContextNoveltyDetector`.

Once the period ``P`` of the signal is known (the autocorrelation peak of the
warm-up readings), "the symbols one (and two) periods ago -> the current
symbol" are contexts too: a daily pattern that does not come is new there.
The mixin keeps its state on the detector (``_s_buf``, ``_period``,
``_s_hist``, ``_s_seen``, ``_s_base``, ``_s_count``), which
:mod:`detectors._context_state` snapshots.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SeasonalContexts", "above_base"]


def above_base(share: float, base: float) -> float:
    """``share`` of new contexts read relative to its base rate ``base``, ``>= 0``.

    >>> above_base(0.75, 0.5), above_base(0.25, 0.5), above_base(0.5, 1.0)
    (0.5, 0.0, 0.0)
    """
    if not base < 1.0:
        return 0.0
    share = (share - base) / (1.0 - base)
    return share if share > 0.0 else 0.0  # max(0.0, share), NaN included


class SeasonalContexts:
    """The seasonal look-ups, novelty, period estimate and learning of a context detector."""

    def _season_keys(self, v: float) -> list[tuple[int, list[int]]] | None:
        """Per seasonal resolution: (symbol, keys "symbols one period ago (and the
        previous reading) -> current symbol"); None while no period is known."""
        P = self._period
        if not P:
            return None
        out = []
        for (levels, order), hist in zip(self.season_resolutions, self._s_hist):
            q = self._symbol(v, levels)
            base = levels + 3
            keys = []
            if len(hist) >= 2 * P + 2:
                # order 1: value one period ago; 2: and the previous reading;
                # 3: and the reading after the one a period ago; ... Each
                # context is also formed with the readings two periods ago:
                # the slot is new only if both are (an anomaly one period
                # ago does not make the present look new: no echo)
                for lag in (P, 2 * P):
                    h = q + 2
                    seq = [hist[-lag], hist[-1], hist[-lag + 1] if lag > 1 else hist[-1], hist[-2], hist[-lag - 1]]
                    for j in range(order):
                        h = h * base + seq[j % len(seq)] + 2
                        keys.append(h)
            out.append((q, keys))
        return out

    def _season_novelty(self, skeys) -> float:
        """Share of the seasonal slots new with both the readings one and two periods ago."""
        new = 0
        for (_, ks), (_, order), seen in zip(skeys, self.season_resolutions, self._s_seen):
            if not ks:
                new += order
                continue
            for j in range(order):
                if ks[j] not in seen and ks[order + j] not in seen:
                    new += 1
        return new / self._s_n

    def _estimate_period(self) -> None:
        """Period = lag of the highest local autocorrelation peak of the warm-up values."""
        buf = self._s_buf or []
        self._s_buf = None
        n = len(buf)
        if n < 8:
            return

        x = np.asarray(buf, dtype=float)
        x = x - x.mean()
        den = float((x * x).sum())
        if den <= 0:
            return
        f = np.fft.rfft(x, 2 * n)
        acf = np.fft.irfft(f * np.conj(f))[: n // 2 + 1] / den
        best, lag = self.season_min_acf, 0
        for k in range(2, n // 2):
            if acf[k] > best and acf[k] >= acf[k - 1] and acf[k] >= acf[k + 1]:
                best, lag = float(acf[k]), k
        self._period = lag

    def _learn_season(self, v: float, skeys, snov) -> None:
        """Learn reading ``v`` (its seasonal keys and novelty, if scored) into the seasonal contexts."""
        if self._s_buf is not None:
            self._s_buf.append(v)
            if len(self._s_buf) >= self.season_warmup:
                self._estimate_period()
        P = self._period
        if not P:
            return
        if skeys is None:
            skeys = [(self._symbol(v, l), []) for l, _ in self.season_resolutions]
        self._s_count += 1
        if snov is not None:
            self._s_base += self.season_alpha * (snov - self._s_base)
        for (q, ks), (_, order), hist, seen in zip(skeys, self.season_resolutions, self._s_hist, self._s_seen):
            seen.add(ks)
            hist.append(q)
            if len(hist) > 2 * P + 2:
                del hist[0]
