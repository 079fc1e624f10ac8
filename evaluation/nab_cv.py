"""Leave-one-category-out cross-validation on NAB (``cityeye eval nab --cv``).

The default detector's settings were chosen by scoring variants on the whole
NAB corpus, so its full-corpus figure is an optimistic estimate. Here, for
each of NAB's seven categories in turn, the settings *and* the threshold are
chosen on the other six categories (the best of a small, declared grid,
:data:`CV_GRID`, by the profile's normalised score there) and applied
unchanged to the held-out one. Reported: each held-out category's score,
their mean (over the categories that have label windows), and the *pooled*
score (the seven held-out results scored together, the figure comparable
with the full-corpus one).

Every grid point runs once over the corpus (the detectors learn nothing
across files); the folds only re-score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from evaluation.nab_runner import run_corpus
from evaluation.nab_scorer import PROFILES, FileSweep, score_sweeps, sweep_corpus

__all__ = ["CV_GRID", "FoldResult", "CVReport", "cross_validate"]

#: The declared grid of the default detector's cross-validation: the shape
#: vote's offset around the default (-0.1). Every point is a full corpus run
#: (about 1-4 minutes on 2 loaded cores), so the grid is kept small.
CV_GRID: tuple[dict[str, Any], ...] = tuple({"shape_offset": offset} for offset in (-0.2, -0.1, 0.0))


@dataclass
class FoldResult:
    """One held-out category: the grid point and threshold chosen on the others, and its score."""

    category: str
    profile: str
    params: dict[str, Any]
    threshold: float
    train_score: float
    score: float | None  # normalised; None when the category has no label window
    raw: float
    null: float
    perfect: float


@dataclass
class CVReport:
    """Every fold of every profile, with the mean and pooled figures."""

    folds: list[FoldResult] = field(default_factory=list)

    def of(self, profile: str) -> list[FoldResult]:
        return [f for f in self.folds if f.profile == profile]

    def mean(self, profile: str) -> float:
        """Mean of the held-out categories' normalised scores (categories with windows)."""
        vals = [f.score for f in self.of(profile) if f.score is not None]
        return sum(vals) / len(vals) if vals else 0.0

    def pooled(self, profile: str) -> float:
        """The held-out results of every fold scored together (normalised)."""
        folds = self.of(profile)
        raw, null, perfect = (sum(getattr(f, k) for f in folds) for k in ("raw", "null", "perfect"))
        return 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0


def _category(path: str) -> str:
    return path.split("/", 1)[0]


def cross_validate(
    data_dir: str | Path,
    windows: Mapping[str, Any],
    detector: str,
    grid: Sequence[Mapping[str, Any]] = CV_GRID,
    base_params: Mapping[str, Any] | None = None,
    profiles: Sequence[str] = tuple(PROFILES),
    jobs: int | None = None,
) -> CVReport:
    """Leave-one-category-out over the files of ``windows`` (see the module docstring)."""
    files = sorted(windows)
    sweeps: list[dict[str, FileSweep]] = []
    for point in grid:
        params = {**dict(base_params or {}), **dict(point)}
        results, _ = run_corpus(data_dir, detector, params, files=files, jobs=jobs)
        sweeps.append({f.name: f for f in sweep_corpus(results, windows)})
    categories = sorted({_category(f) for f in sweeps[0]})
    report = CVReport()
    for held in categories:
        for prof in profiles:
            best = None
            for k, by_file in enumerate(sweeps):
                train = [f for name, f in by_file.items() if _category(name) != held]
                r = score_sweeps(train, [prof])[prof]
                if best is None or r.normalized > best[1].normalized:
                    best = (k, r)
            k, train_result = best
            test = [f for name, f in sweeps[k].items() if _category(name) == held]
            r = score_sweeps(test, [prof], thresholds={prof: train_result.threshold})[prof]
            report.folds.append(FoldResult(
                held, prof, dict(grid[k]), train_result.threshold, train_result.normalized,
                r.normalized if r.perfect != r.null else None, r.raw, r.null, r.perfect,
            ))
    return report
