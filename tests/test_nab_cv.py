"""``cityeye eval nab --cv``: leave-one-category-out, on a NAB-format corpus the test writes."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta
from pathlib import Path

from evaluation.nab_cv import cross_validate
from evaluation.nab_scorer import load_windows
from launch.cli import main


def write_corpus(root: Path) -> Path:
    """Three categories, one file each; a planted drop in two of them, none in the third."""
    rng = random.Random(3)
    t0 = datetime(2020, 1, 1)
    windows: dict[str, list[list[str]]] = {}
    for rel, anomaly in (("catA/a.csv", 1300), ("catB/b.csv", 1400), ("catC/c.csv", None)):
        ts = [(t0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(1800)]
        vals = [round(50 + 20 * math.sin(2 * math.pi * i / 48) + rng.gauss(0, 1), 3) for i in range(1800)]
        windows[rel] = []
        if anomaly:
            vals[anomaly] = 300.0
            windows[rel] = [[ts[anomaly - 20] + ".000000", ts[anomaly + 20] + ".000000"]]
        path = root / "data" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in zip(ts, vals)))
    labels = root / "labels" / "combined_windows.json"
    labels.parent.mkdir(parents=True)
    labels.write_text(json.dumps(windows))
    return root


def test_cross_validation_chooses_on_the_other_categories(tmp_path):
    nab = write_corpus(tmp_path / "nab")
    windows = load_windows(nab / "labels" / "combined_windows.json")
    # a grid point that can never alarm (shape vote off, rest threshold above any score) and the
    # default with its top votes unranked (no tie-break, no alarm penalty): a spike then scores
    # exactly 1 in every file, so the threshold chosen on one file's spike is not a hair above
    # another's (NAB's sweep takes the training spike's own score as the threshold)
    found = {"shape_tiebreak": 0.0, "alarm_penalty": 0.0}
    grid = [{"rest_threshold": 2.0, "offsets": [-2.0, -2.0, -2.0], "excursion_scale": None,
             "flat_min_run": None, "shape_window": None, "season_warmup": None}, found]
    report = cross_validate(nab / "data", windows, "multiscale_novelty", grid, profiles=["standard"], jobs=1)
    folds = {f.category: f for f in report.folds}
    assert set(folds) == {"catA", "catB", "catC"}
    # holding out catA, the choice is made on catB (spike found by the default) and catC
    # the grid point that never alarms scores 0 wherever a window is: the default is chosen
    assert folds["catA"].params == found and folds["catB"].params == found
    # catA's spike is found with the threshold chosen on catB and catC
    assert folds["catA"].score > 80
    assert folds["catC"].score is None  # no window: no normalised score of its own
    assert report.mean("standard") == (folds["catA"].score + folds["catB"].score) / 2
    raw = sum(f.raw for f in report.folds)
    assert report.pooled("standard") == 100.0 * (raw + 2.0) / 4.0  # null -2, perfect 2


def test_cli_prints_every_category_mean_and_pooled(tmp_path, capsys):
    nab = write_corpus(tmp_path / "nab")
    rc = main(["eval", "nab", "--cv", "--data", str(nab), "--jobs", "2", "--profile", "standard",
               "--grid", json.dumps([{"shape_offset": -0.1}, {"shape_offset": 0.0}])])
    assert rc == 0
    out = capsys.readouterr().out
    for line in ("catA", "catB", "catC", "mean (with windows)", "pooled held-out"):
        assert line in out
    assert main(["eval", "nab", "--cv", "--data", str(nab), "--grid", "{}"]) == 2  # not a list
    rc = main(["eval", "nab", "--data", str(nab), "--jobs", "2", "--profile", "standard"])
    assert rc == 0 and "chosen by scoring variants on this same corpus" in capsys.readouterr().out
