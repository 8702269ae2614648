"""The benchmark helpers that decide what the quality tables say: repeated shuffles are averaged
as reported, and the member screen pools exactly as prodcat's own ensemble does."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from prodcat.text import TextClassifier
from prodcat.text.ensemble import TextEnsemble

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

quality = pytest.importorskip("quality")
member_screen = pytest.importorskip("member_screen")

from test_text_ensemble import listings  # noqa: E402


def shuffle_result(seed: int, mine: float, theirs: float, covered: float) -> dict:
    layout = lambda f: {"weighted_f1": f}  # noqa: E731
    return {"seed": seed,
            "prodcat": {"weighted_f1": mine}, "baseline": {"weighted_f1": theirs},
            "delta_points": {"weighted_f1": 100 * (mine - theirs)},
            "fold_delta": {"folds_better": 4},
            "layouts": {"prodcat": {"given": layout(mine), "title_only": layout(mine - 0.1)},
                        "recipe": {"given": layout(theirs), "title_only": layout(theirs - 0.1)}},
            "precision_coverage": {"prodcat": [{"target_precision": 0.95, "coverage": covered}],
                                   "recipe": [{"target_precision": 0.95, "coverage": 0.30}]},
            "threshold_promise": {"coverage": covered - 0.02, "precision": None},
            "photo": None}


def test_repeated_shuffles_are_reported_one_by_one_and_averaged():
    results = [shuffle_result(0, 0.72, 0.69, 0.42), shuffle_result(1, 0.74, 0.69, 0.36)]
    summary, markdown = quality.repeat_summary(results)
    assert summary["weighted F1 delta (points)"]["per_shuffle"] == pytest.approx([3.0, 5.0])
    assert summary["weighted F1 delta (points)"]["mean"] == pytest.approx(4.0)
    assert summary["layout title_only: delta (points)"]["mean"] == pytest.approx(4.0)
    assert "layout given: delta (points)" not in summary  # the first row says it already
    assert summary["filed at 95% precision, delta (points)"]["mean"] == pytest.approx(9.0)
    assert summary["stored threshold: filed (%)"]["mean"] == pytest.approx(37.0)
    # No precision when nothing was filed: shown as a dash, never as a number.
    assert np.isnan(summary["stored threshold: precision of what was filed (%)"]["mean"])
    assert "| seed 0 | seed 1 | mean |" in markdown
    assert "| weighted F1 delta (points) | 3.00 | 5.00 | 4.00 |" in markdown


def test_repeats_need_one_shuffle_and_no_ocr_comparison(capsys):
    with pytest.raises(SystemExit):
        quality.parse_args(["--repeats", "0"])
    with pytest.raises(SystemExit):
        quality.parse_args(["--repeats", "2", "--ocr", "rapidocr"])
    assert quality.parse_args(["--repeats", "3"]).repeats == 3


def test_the_member_screen_pools_like_the_ensemble_fitted_directly():
    X, y = listings(20)
    members = {"svm": TextClassifier(char_ngrams=None, title_ngrams=None, calibration_cv=2),
               "svm-C": TextClassifier(char_ngrams=None, calibration_cv=2, C=0.1)}
    direct = TextEnsemble(members=members).fit(X, y)
    keys = {}
    for name, member in members.items():
        keys[name] = ("test", 0, name)
        member_screen._FITTED[keys[name]] = TextClassifier(**member.get_params()).fit(X, y)
    try:
        screened = TextEnsemble(members={n: member_screen.Prefitted(k) for n, k in keys.items()}).fit(X, y)
    finally:
        for key in keys.values():
            member_screen._FITTED.pop(key)
    assert screened.weights_ == direct.weights_
    assert screened.power_ == pytest.approx(direct.power_)
    np.testing.assert_allclose(screened.predict_proba(X.head(7)), direct.predict_proba(X.head(7)))


def test_the_member_screen_refuses_unknown_members_before_reading_data(capsys, tmp_path):
    with pytest.raises(SystemExit) as raised:
        member_screen.main(["--sets", "tfidf-svm+no-such-member", "--data", str(tmp_path / "absent")])
    assert raised.value.code == 2
    assert "no-such-member" in capsys.readouterr().err
    # Known sets (a candidate and a registered member) pass the check; absent data then skips.
    assert member_screen.main(["--sets", "tfidf-svm-whole+tfidf-use-title-svm",
                               "--data", str(tmp_path / "absent")]) == 0


def test_learning_curve_shares_nest_and_keep_every_class():
    learning_curve = pytest.importorskip("learning_curve")
    y = np.array(["a"] * 40 + ["b"] * 10 + ["c"] * 2)
    subsets = learning_curve.nested_subsets(y, [0.25, 0.5, 1.0], seed=3)
    assert set(subsets[0.25]) <= set(subsets[0.5]) <= set(subsets[1.0]) == set(range(len(y)))
    for share, rows in subsets.items():
        counts = {c: int((y[rows] == c).sum()) for c in "abc"}
        assert counts == {c: max(1, int(np.ceil(share * n))) for c, n in {"a": 40, "b": 10, "c": 2}.items()}
    with pytest.raises(ValueError):
        learning_curve.parse_shares("0,0.5")
    assert learning_curve.parse_shares("1,0.5,0.5") == [0.5, 1.0]
