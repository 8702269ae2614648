"""`prodcat predict --data ... --review-db` queues the rows that need review."""

from __future__ import annotations

import pytest

pytest.importorskip("sqlalchemy")

from prodcat.cli import main  # noqa: E402
from prodcat.review import ReviewStore  # noqa: E402


def test_predict_data_queues_rows_that_need_review_once(trained_bundle, make_rakuten, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    # Listings of a category the model never saw: it is unsure of them.
    data = make_rakuten("unseen", per_class=2, unseen_rows=10, seed=5)
    args = ["predict", "--model", str(trained_bundle), "--data", str(data),
            "--out", str(tmp_path / "p.csv"), "--review-db", db]
    assert main(args) == 0
    import pandas as pd

    frame = pd.read_csv(tmp_path / "p.csv")
    items = ReviewStore.open(db).items()
    low = [i for i in items if i["reason"] == "low_confidence"]
    assert len(low) == int(frame["needs_review"].sum()) > 0
    assert all(i["source"] == "batch" and i["top_k"] and i["model_id"] for i in items)
    assert main(args) == 0  # a second run queues nothing new
    assert len(ReviewStore.open(db).items()) == len(items)
    assert "queued" in capsys.readouterr().err


def test_review_db_needs_data(trained_bundle, tmp_path):
    assert main(["predict", "--model", str(trained_bundle), "--title", "x",
                 "--review-db", f"sqlite:///{tmp_path / 'r.db'}"]) == 2


@pytest.mark.slow
def test_predict_job_folder_queues_too(trained_bundle, make_rakuten, tmp_path):
    pytest.importorskip("dask")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    data = make_rakuten("unseen_job", per_class=2, unseen_rows=6, seed=6)
    assert main(["predict", "--model", str(trained_bundle), "--data", str(data), "--out", str(tmp_path / "parts"),
                 "--workers", "0", "--review-db", db]) == 0
    items = ReviewStore.open(db).items()
    assert items and {i["reason"] for i in items} <= {"low_confidence", "modalities_disagree"}
