"""The context-novelty views of :class:`~detectors.multiscale_novelty.MultiScaleNoveltyDetector`.

Builds one
:class:`~detectors.context_novelty.ContextNoveltyDetector` per block length,
with the wiring the detector's hot loops rely on: the raw view (block length
1) apart, the other views as ``(k, step, offset, view)`` blocks, the coarse
views' magnitude measured in the readings' statistics, and the first seasonal
view.
"""

from __future__ import annotations

from detectors.context_novelty import ContextNoveltyDetector

__all__ = ["build_views"]

_SHARED = (
    "resolutions", "base_alpha", "range_chunks", "range_growth", "season_resolutions", "season_offset",
    "season_min_acf", "season_learn", "season_weight", "context_generation_share", "season_slots",
)


def build_views(det) -> None:
    """Set ``det``'s ``_views``, ``_raw_view``, ``_raw_offset``, ``_blocks`` and ``_seasonal`` from its parameters."""
    season_warmup, magnitude_alpha = det.season_warmup, det.magnitude_alpha
    # the views' parameters that are the detector's own, whatever the block length
    shared = {name: getattr(det, name) for name in _SHARED}
    det._views = [
        ContextNoveltyDetector(
            **shared,
            rest_period=max(1, det.view_rest // s),
            excursion_scale=det.excursion_scale if s == 1 else None,
            range_window=det.range_window if s == 1 else None,
            season_warmup=(
                max(8, season_warmup // s)
                if season_warmup and (det.season_views is None or s in det.season_views)
                else None
            ),
            season_alpha=det.base_alpha,
            # the magnitude tie-breaker's running mean / variance cover
            # about 1 / magnitude_alpha readings in every view
            alpha=min(1.0, magnitude_alpha * s),
            magnitude_weight=det.magnitude_weight if s == 1 else det.coarse_magnitude_weight,
            magnitude_scale=det.magnitude_scale if s == 1 else det.coarse_magnitude_scale,
            context_slots=slots,
        )
        for s, slots in ((s, det.context_slots[0 if s == 1 else 1]) for s in det.steps)
    ]
    # the first view of block length 1 (the raw view) takes every reading
    # as it comes, outside the block loops; it learns after the others, so
    # a coarse view measuring its block against the readings' statistics
    # sees them as score_one did
    raw = next((k for k, step in enumerate(det.steps) if step == 1), None)
    det._raw_view = None if raw is None else det._views[raw]
    det._raw_offset = 0.0 if raw is None else det.offsets[raw]
    if det.coarse_magnitude_in_readings and det._raw_view is not None:
        # a coarse view's block mean is measured against the readings'
        # running mean, in the readings' standard deviations
        for step, view in zip(det.steps, det._views):
            if step > 1:
                view._magnitude_ref = det._raw_view
    det._blocks = tuple(  # (k, step, offset, view) of the other views
        block for block in zip(range(len(det.steps)), det.steps, det.offsets, det._views) if block[0] != raw
    )
    # the first view with seasonal contexts: its period, once found, marks a periodic signal
    det._seasonal = next((view for view in det._views if view.season_warmup), None)
