"""The NAB scorer on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from evaluation.nab_scorer import (
    NO_WINDOW,
    PROBATIONARY,
    PROFILES,
    probation_length,
    scaled_sigmoid,
    score_corpus,
    sweep_file,
)

N = 40  # rows; probationary period = floor(0.15 * 40) = 6 rows
TS = [f"2020-01-01 00:{m:02d}:00" for m in range(N)]
WIN = {"cat/f.csv": [(TS[20], "2020-01-01 00:29:00.000000")]}  # rows 20..29, width 10


# a longer file, where flagging every row costs more than missing the window
NL = 400
TSL = [f"2020-01-{1 + m // 1440:02d} {m % 1440 // 60:02d}:{m % 60:02d}:00" for m in range(NL)]
WINL = [(TSL[200], TSL[239])]


def S(p: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * p)) - 1.0


def scores_with(**rows: float) -> list[float]:
    s = [0.0] * N
    for k, v in rows.items():
        s[int(k[1:])] = v
    return s


def run(scores, profile="standard"):
    return score_corpus({"cat/f.csv": (TS, scores)}, WIN)[profile]


def test_scaled_sigmoid_and_probation():
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(3.0) == -1.0 and scaled_sigmoid(10.0) == -1.0
    assert probation_length(40) == 6
    assert probation_length(10_000) == 750


def test_sweep_labels_rows():
    f = sweep_file("cat/f.csv", TS, [0.0] * N, WIN["cat/f.csv"])
    assert list(f.window[:6]) == [PROBATIONARY] * 6
    assert f.window[6] == NO_WINDOW and f.window[19] == NO_WINDOW and f.window[30] == NO_WINDOW
    assert set(f.window[20:30]) == {0}
    assert f.tp_unit[20] == pytest.approx(1.0)  # left edge: S(-1) / S(-1)
    assert f.tp_unit[28] == pytest.approx(S(-0.2) / S(-1.0))
    assert f.fp_unit[10] == -1.0  # no preceding window
    assert f.fp_unit[30] == pytest.approx(S(1 / 9))  # just after the window: cheap FP
    assert f.fp_unit[39] == pytest.approx(S(10 / 9))


def test_early_detection_scores_more_than_late():
    early, late = run(scores_with(r20=1.0)), run(scores_with(r28=1.0))
    assert early.raw == pytest.approx(1.0)
    assert late.raw == pytest.approx(S(-0.2) / S(-1.0))  # 0.46839
    assert late.normalized == pytest.approx(100 * (0.468393 + 1) / 2, abs=1e-3)
    assert early.normalized > late.normalized


def test_fp_weights_per_profile():
    s = scores_with(r20=1.0, r30=1.0)  # a TP at the window's start, an FP right after it
    for prof in PROFILES:
        r = run(s, prof)
        fp = PROFILES[prof]["fpWeight"]
        assert r.threshold == 1.0
        assert r.raw == pytest.approx(1.0 + fp * S(1 / 9))
    assert run(s, "reward_low_FP_rate").raw < run(s, "standard").raw


def test_fn_penalty():
    res = {"c/l.csv": (TSL, [0.0] * NL)}
    r = score_corpus(res, {"c/l.csv": WINL})
    low_fn = r["reward_low_FN_rate"]  # no detection: the window is missed
    assert low_fn.null == -2.0 and low_fn.perfect == 1.0
    assert low_fn.raw == -2.0 and low_fn.normalized == 0.0
    assert r["standard"].raw == -1.0 and r["standard"].threshold == 1.1
    # on a tiny file, flagging every row can beat missing a window worth -2 (NAB semantics)
    assert run([0.0] * N, "reward_low_FN_rate").raw > -2.0


def test_probationary_rows_ignored():
    # a high score during the probationary period is neither a FP nor anything else
    r = run(scores_with(r3=1.0, r20=1.0))
    assert r.raw == pytest.approx(1.0) and r.normalized == pytest.approx(100.0)
    assert r.per_file["cat/f.csv"]["fp_rows"] == 0


def test_threshold_sweep_picks_best():
    # the window start scores 0.9; eight FPs score 0.5: threshold 0.9 is best
    s = scores_with(r20=0.9, r8=0.5, r9=0.5, r10=0.5, r11=0.5, r12=0.5, r13=0.5, r14=0.5, r15=0.5)
    r = run(s)
    assert r.threshold == 0.9 and r.raw == pytest.approx(1.0)
    # with 0.95 on the FPs, detecting nothing... is worse than TP + 8 FPs at 0.5
    r2 = run(scores_with(r20=0.5, r8=0.95))
    assert r2.threshold == 0.5
    assert r2.raw == pytest.approx(1.0 - 0.11)


def test_normalisation_null_zero_perfect_hundred_all_profiles():
    hit = [1.0 if i == 200 else 0.0 for i in range(NL)]
    two = {"a/x.csv": (TSL, hit), "b/y.csv": (TSL, hit)}
    wins = {"a/x.csv": WINL, "b/y.csv": WINL}
    perfect = score_corpus(two, wins)
    null = score_corpus({k: (TSL, [0.0] * NL) for k in two}, wins)
    const = score_corpus({k: (TSL, [0.5] * NL) for k in two}, wins)  # NAB's null detector
    for prof in PROFILES:
        assert perfect[prof].normalized == pytest.approx(100.0)
        assert null[prof].normalized == pytest.approx(0.0)
        assert const[prof].normalized == pytest.approx(0.0)
        assert perfect[prof].perfect == 2.0


def test_window_counted_once_by_its_earliest_detection():
    all_window = scores_with(**{f"r{i}": 1.0 for i in range(20, 30)})
    assert run(all_window).raw == pytest.approx(1.0)


def test_file_without_windows_only_costs_fps():
    ts = TS
    res = {"cat/f.csv": (ts, scores_with(r20=1.0)), "cat/g.csv": (ts, scores_with(r10=1.0))}
    r = score_corpus(res, WIN)["standard"]
    # detecting at 1.0 gains the window (+2 vs null) and costs one FP (-0.11)
    assert r.threshold == 1.0 and r.raw == pytest.approx(1.0 - 0.11)
    assert r.per_file["cat/g.csv"]["score"] == pytest.approx(-0.11)
