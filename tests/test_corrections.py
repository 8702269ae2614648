"""Corrections: exported from the review store, applied to training data by `prodcat train`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("sqlalchemy")

from prodcat.cli import main  # noqa: E402
from prodcat.data import read_catalog  # noqa: E402
from prodcat.review import NewItem, ReviewStore  # noqa: E402
from prodcat.review.corrections import apply_corrections, corrections_frame  # noqa: E402


def _decided_store(url: str, catalog) -> ReviewStore:
    ids = catalog.frame["id"].astype(str).tolist()
    labels = catalog.frame["label"].astype(str).tolist()
    other = next(c for c in sorted(set(labels)) if c != labels[0])
    store = ReviewStore.open(url)
    items = store.add([NewItem("suspected_label_error", title="x", listing_id=ids[0], given_label=labels[0]),
                       NewItem("low_confidence", title="y", listing_id=ids[1]),
                       NewItem("feedback", title="Piscine hors-sol neuve", listing_id="new-1", photo=b"\xff\xd8 jpeg")])
    store.decide(items[0], other, "ann")
    store.decide(items[1], labels[1], "ann")
    store.decide(items[2], "2583", "bob", comment="seller was right")
    return store


def test_corrections_override_labels_and_add_listings(rakuten_dir, tmp_path):
    catalog = read_catalog(rakuten_dir).labelled()
    store = _decided_store(f"sqlite:///{tmp_path / 'r.db'}", catalog)
    frame = corrections_frame(store)
    assert list(frame["reason"]) == ["suspected_label_error", "low_confidence", "feedback"]
    fixed, counts = apply_corrections(catalog, frame)
    assert counts == {"decisions": 3, "relabelled": 1, "confirmed": 1, "added": 1}
    assert len(fixed) == len(catalog) + 1
    assert fixed.frame["label"].iat[0] == frame["label"].iat[0]
    added = fixed.frame[fixed.frame["id"] == "new-1"].iloc[0]
    assert added["label"] == "2583" and Path(added["image"]).read_bytes() == b"\xff\xd8 jpeg"


@pytest.mark.slow
def test_export_and_train_with_corrections(rakuten_dir, tmp_path):
    catalog = read_catalog(rakuten_dir).labelled()
    url = f"sqlite:///{tmp_path / 'r.db'}"
    _decided_store(url, catalog).close()
    for name in ("c.csv", "c.parquet"):
        assert main(["corrections", "export", "--db", url, "--out", str(tmp_path / name)]) == 0
    exported = pd.read_parquet(tmp_path / "c.parquet")
    assert len(exported) == 3 and set(exported["reviewer"]) == {"ann", "bob"}
    assert main(["corrections", "export", "--db", url, "--out", str(tmp_path / "none.csv"),
                 "--since", "2999-01-01"]) == 0
    assert len(pd.read_csv(tmp_path / "none.csv")) == 0
    for source, name in ((url, "m1"), (str(tmp_path / "c.csv"), "m2")):
        assert main(["train", "--data", str(rakuten_dir), "--out", str(tmp_path / name), "--cv", "0",
                     "--no-track", "--corrections", source]) == 0
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        record = manifest["training"]["corrections"]
        assert (record["relabelled"], record["confirmed"], record["added"]) == (1, 1, 1)
        assert manifest["training"]["n_listings"] == len(catalog) + 1
