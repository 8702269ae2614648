"""The automation threshold: chosen for a precision on out-of-fold answers, checked on new ones;
field layouts; the evaluation protocol's guards."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prodcat.evaluation.automation import (
    automation_section,
    coverage_at_precision,
    model_promise,
    threshold_for_precision,
    threshold_promise,
)
from prodcat.evaluation.layouts import LAYOUTS, layout_frames, layout_scores, layouts_section
from prodcat.evaluation.protocol import ChoiceLedger, FinalCheck, ProtocolError, frozen_split


def test_threshold_files_the_most_listings_at_the_target_precision():
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([True, True, True, False, True, False])
    out = threshold_for_precision(confidence, correct, 0.75)
    # 0.7 files 5 listings of which 4 are right (80 %); 0.6 would file 6 at 67 %.
    assert out["threshold"] == 0.7 and out["n_filed"] == 5
    assert out["precision"] == pytest.approx(0.8)
    assert out["coverage"] == pytest.approx(5 / 6)
    strict = threshold_for_precision(confidence, correct, 1.0)
    assert strict["threshold"] == 0.9 and strict["n_filed"] == 3


def test_threshold_never_splits_ties_and_may_file_nothing():
    confidence = np.array([0.9, 0.9, 0.5])
    correct = np.array([True, False, True])
    out = threshold_for_precision(confidence, correct, 0.9)
    assert out["n_filed"] == 0 and out["coverage"] == 0.0
    assert out["threshold"] > 0.9  # nothing reaches it
    assert threshold_for_precision(np.array([]), np.array([], bool), 0.9)["n"] == 0


def test_promise_is_checked_on_other_listings():
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.55, 0.45]])
    y = np.array([0, 1, 1, 1])
    out = threshold_promise(proba, y, 0.75, 0.95)
    assert out["n_filed"] == 2 and out["precision"] == 0.5 and out["held"] is False
    per_row = model_promise(proba, ["a", "b", "b", "b"], ["a", "b"], np.array([0.85, 0.85, 0.6, 0.6]), 0.9)
    assert per_row["n_filed"] == 2 and per_row["precision"] == 1.0 and per_row["held"]
    cov = coverage_at_precision(proba, y, (0.9,))
    assert cov[0]["n_filed"] == 1  # 0.9 is right, 0.8 wrong: no lower cut keeps 90 %
    title, md = automation_section({"precision_coverage": cov, "automation": out})
    assert "did not hold" in md and title


def test_layouts_move_text_between_fields():
    frame = pd.DataFrame({"title": ["Stylo <b>Bleu</b>"], "description": ["Encre, gel!"],
                          "image": [None]})
    out = layout_frames(frame)
    assert list(out) == list(LAYOUTS)
    assert out["merged"].loc[0, "title"] == "Stylo <b>Bleu</b> Encre, gel!"
    assert out["merged"].loc[0, "description"] == ""
    assert out["title_only"].loc[0, "description"] == ""
    assert out["description_only"].loc[0, "title"] == ""
    assert out["lower_nopunct"].loc[0, "title"] == "stylo bleu"
    assert out["lower_nopunct"].loc[0, "description"] == "encre gel"
    assert frame.loc[0, "title"] == "Stylo <b>Bleu</b>"  # the input is left alone
    scores = layout_scores(["a"], {"given": np.array([[0.9, 0.1]])}, ["a", "b"], threshold=0.5)
    assert scores["given"]["weighted_f1"] == 1.0 and scores["given"]["coverage"] == 1.0
    assert "| given |" in layouts_section(scores)[1]


def test_frozen_split_is_stable_and_about_the_fraction():
    ids = [str(i) for i in range(5000)]
    mask = frozen_split(ids)
    assert 0.17 < mask.mean() < 0.23
    np.testing.assert_array_equal(frozen_split(list(reversed(ids)))[::-1], mask)


def test_ledger_refuses_scores_on_listings_choices_saw():
    ledger = ChoiceLedger()
    ledger.chose("ensemble weights", [1, 2, 3])
    ledger.check_unseen([4, 5])
    with pytest.raises(ProtocolError, match="choices saw"):
        ledger.check_unseen([3, 4])


def test_final_check_refuses_a_second_look_with_other_code(tmp_path):
    check = FinalCheck(tmp_path / "looks.json")
    check.open("code-a")
    check.open("code-a")  # a re-run of the same code gives the same numbers
    with pytest.raises(ProtocolError, match="already looked at"):
        check.open("code-b")
    check.open("code-b", reason="bug fix in the reader")
    assert [look["fingerprint"] for look in check.looks()] == ["code-a", "code-a", "code-b"]
    # Another model on the same code is another look: its choices may have seen the last one.
    quality = {"members": ["tfidf-svm", "tfidf-e5-svm"]}
    with pytest.raises(ProtocolError, match="another model"):
        check.open("code-b", model=quality)
    check.open("code-b", reason="the opt-in member set, never looked at", model=quality)
    check.open("code-b", model=quality)
    assert check.looks()[-1]["model"] == quality


def test_wilson_margin_asks_for_more_evidence():
    rng = np.random.default_rng(0)
    confidence = rng.random(2000)
    correct = rng.random(2000) < confidence ** 0.3  # surer answers are right more often
    plain = threshold_for_precision(confidence, correct, 0.9)
    careful = threshold_for_precision(confidence, correct, 0.9, z=1.0)
    assert careful["threshold"] >= plain["threshold"]
    assert careful["precision"] >= plain["precision"] >= 0.9


def test_metrics_report_parents_and_precision_coverage():
    from prodcat.data.taxonomy import Taxonomy
    from prodcat.evaluation import compute_metrics

    taxonomy = Taxonomy.from_records([
        {"code": "10", "name": "Livres", "parent": "Livres"},
        {"code": "20", "name": "Magazines", "parent": "Livres"},
        {"code": "30", "name": "Consoles", "parent": "Jeux"}])
    proba = np.array([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    m = compute_metrics(["10", "10", "30", "20"], proba, ["10", "20", "30"], taxonomy)
    # Wrong kind of book (10 read as 20) is right one level up; 20 read as 30 is not.
    assert m["accuracy"] == 0.5
    assert m["parent"]["accuracy"] == 0.75 and m["parent"]["n_parents"] == 2
    assert [c["target_precision"] for c in m["precision_coverage"]] == [0.9, 0.95, 0.98]
    assert m["precision_coverage"][0]["n_filed"] == 0  # the surest answer (0.8) is already wrong
