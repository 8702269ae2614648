"""The label audit: flipped labels rank worst, conflicting near-duplicates, the files written,
suspects queued."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("cleanlab")

from prodcat.audit import conflicting_duplicates, run_audit, write_audit  # noqa: E402
from prodcat.cli import main  # noqa: E402
from prodcat.data import read_catalog  # noqa: E402
from prodcat.text.model import TextClassifier  # noqa: E402


def _flipped(rakuten_dir):
    catalog = read_catalog(rakuten_dir).labelled()
    frame = catalog.frame.copy()
    rows = [3, 17, 30, 44]
    classes = sorted(frame["label"].unique())
    for r in rows:
        frame.loc[r, "label"] = next(c for c in classes if c != frame.loc[r, "label"])
    return replace(catalog, frame=frame), set(frame["id"].astype(str).iloc[rows])


@pytest.mark.slow
def test_flipped_labels_rank_worst_and_files_are_written(make_rakuten, tmp_path):
    catalog, flipped = _flipped(make_rakuten("audit", per_class=20, seed=3))
    # A small text model keeps the test fast; the CLI uses the default Classifier.
    from prodcat.model import Classifier

    estimator = Classifier(text=TextClassifier(calibration_cv=2))
    result = run_audit(catalog, folds=3, estimator=estimator)
    top = set(result.issues["id"].head(2 * len(flipped)))
    assert len(top & flipped) >= 3
    assert result.issues["label_quality"].is_monotonic_increasing
    paths = write_audit(result, tmp_path / "audit")
    csv = pd.read_csv(paths["csv"], dtype=str)
    assert list(csv.columns[:4]) == ["id", "given_label", "suggested_label", "label_quality"]
    report = json.loads(paths["json"].read_text())
    assert report["summary"]["label_issues"] >= 1 and report["per_class"] and report["confused_pairs"]
    html = paths["html"].read_text()
    assert "<script" not in html and "http" not in html and "Label audit" in html


def test_near_duplicates_with_different_labels_are_found():
    frame = pd.DataFrame({"id": ["a", "b", "c", "d"],
                          "title": ["Piscine tubulaire ronde 300 x 76 cm", "PISCINE tubulaire ronde 300 x 76 cm !",
                                    "Stylo bleu", "Piscine ronde"],
                          "description": ["", "", "", ""]})
    pairs = conflicting_duplicates(frame, np.array(["2583", "1300", "2522", "2583"]))
    assert [(p["id_a"], p["id_b"]) for p in pairs] == [("a", "b")]
    assert conflicting_duplicates(frame, np.array(["2583", "2583", "2522", "2583"])) == []


@pytest.mark.slow
def test_audit_cli_queues_suspects(make_rakuten, tmp_path):
    pytest.importorskip("sqlalchemy")
    from prodcat.review import ReviewStore

    data = make_rakuten("audit_cli", per_class=12, seed=4)
    y = pd.read_csv(data / "Y_train_CVw08PX.csv", index_col=0)
    y.loc[[2, 9], "prdtypecode"] = [2583, 1160]
    y.to_csv(data / "Y_train_CVw08PX.csv")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["audit", "--data", str(data), "--out", str(tmp_path / "out"), "--folds", "3",
                 "--no-fit-cache", "--review-db", db]) == 0
    for name in ("label_issues.csv", "audit.json", "audit.html"):
        assert (tmp_path / "out" / name).is_file()
    items = ReviewStore.open(db).items()
    assert items and all(i["reason"] == "suspected_label_error" and i["given_label"] for i in items)
