import json

import numpy as np
import pytest

from prodcat.data.taxonomy import Taxonomy
from prodcat.errors import ProdcatError
from prodcat.evaluation import compute_metrics, top_k_accuracy, write_report
from prodcat.evaluation.report import _plot_confusion, markdown_to_html

CLASSES = ["a", "b", "c", "d"]

# Hand-checked case: top-1 hits on rows 0, 1, 3; row 2 has truth "c" in second place, row 4
# has truth "d" in fourth place.
PROBA = np.array([
    [0.95, 0.03, 0.01, 0.01],  # a, right, conf .95
    [0.10, 0.85, 0.03, 0.02],  # b, right, conf .85
    [0.60, 0.00, 0.30, 0.10],  # a, truth c (top-2), conf .60
    [0.05, 0.05, 0.40, 0.50],  # d, right, conf .50
    [0.40, 0.35, 0.20, 0.05],  # a, truth d (rank 4), conf .40
])
Y = ["a", "b", "c", "d", "d"]


def one_hot(idx, k):
    p = np.zeros((len(idx), k))
    p[np.arange(len(idx)), idx] = 1.0
    return p


def test_perfect_predictions():
    idx = np.array([0, 1, 2, 3] * 5)
    y = [CLASSES[i] for i in idx]
    m = compute_metrics(y, one_hot(idx, 4), CLASSES)
    assert m["weighted_f1"] == pytest.approx(1.0)
    assert m["macro_f1"] == pytest.approx(1.0)
    assert m["accuracy"] == 1.0
    assert m["top3_accuracy"] == 1.0
    assert m["ece"] < 1e-9
    assert m["log_loss"] < 1e-9
    assert m["unseen_labels"] == {"count": 0, "labels": {}}
    assert m["confusion"]["matrix"] == (np.eye(4, dtype=int) * 5).tolist()


def test_hand_computed_case():
    m = compute_metrics(Y, PROBA, CLASSES, thresholds=(0.5, 0.8, 0.9))
    assert m["n"] == 5
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["top3_accuracy"] == pytest.approx(4 / 5)
    assert top_k_accuracy(Y, PROBA, CLASSES, 1) == pytest.approx(3 / 5)
    assert top_k_accuracy(Y, PROBA, CLASSES, 2) == pytest.approx(4 / 5)
    assert top_k_accuracy(Y, PROBA, CLASSES, 10) == 1.0

    cov = {c["threshold"]: c for c in m["coverage"]}
    assert cov[0.5] == {"threshold": 0.5, "coverage": 0.8, "n_automated": 4, "accuracy": 0.75}
    assert cov[0.8] == {"threshold": 0.8, "coverage": 0.4, "n_automated": 2, "accuracy": 1.0}
    assert cov[0.9] == {"threshold": 0.9, "coverage": 0.2, "n_automated": 1, "accuracy": 1.0}

    expected_ll = -np.mean(np.log([0.95, 0.85, 0.30, 0.50, 0.05]))
    assert m["log_loss"] == pytest.approx(expected_ll)

    # ECE with 2 bins: (0, .5] holds confidences .5 and .4 (one hit), (.5, 1] holds .95, .85,
    # .60 (two hits).
    m2 = compute_metrics(Y, PROBA, CLASSES, n_bins=2)
    low, high = m2["reliability"]
    assert (low["count"], high["count"]) == (2, 3)
    expected_ece = 2 / 5 * abs(0.5 - 0.45) + 3 / 5 * abs(2 / 3 - 0.8)
    assert m2["ece"] == pytest.approx(expected_ece)
    assert len(m["reliability"]) == 15
    assert sum(b["count"] for b in m["reliability"]) == 5

    pc = m["per_class"]["d"]
    assert (pc["precision"], pc["recall"], pc["support"]) == (1.0, 0.5, 2)
    assert m["per_class"]["a"]["precision"] == pytest.approx(1 / 3)


def test_unseen_labels_are_counted_as_errors():
    idx = np.array([0, 1, 2, 3, 0, 1])
    y = ["a", "b", "c", "d", "zz", "zz"]
    m = compute_metrics(y, one_hot(idx, 4), CLASSES)
    assert m["unseen_labels"] == {"count": 2, "labels": {"zz": 2}}
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["top3_accuracy"] == pytest.approx(4 / 6)
    assert m["weighted_f1"] < 1.0
    assert m["n_seen"] == 4
    assert m["log_loss"] < 1e-9  # only rows with known labels
    assert m["confusion"]["labels"] == ["a", "b", "c", "d", "zz"]
    assert m["confusion"]["matrix"][4] == [1, 1, 0, 0, 0]
    assert m["per_class"]["zz"]["support"] == 2
    assert m["per_class"]["zz"]["recall"] == 0.0
    assert m["per_class"]["zz"]["in_model"] is False


def test_per_class_uses_taxonomy_and_is_json_ready():
    tax = Taxonomy.from_records([
        {"code": "a", "name": "Watches", "parent": "Accessories"},
        {"code": "b", "name": "Shoes"},
    ])
    m = compute_metrics([1, 2, 1], one_hot(np.array([0, 1, 1]), 3), [1, 2, 3], taxonomy=tax)
    assert set(m["per_class"]) == {"1", "2", "3"}
    m = compute_metrics(Y, PROBA, CLASSES, taxonomy=tax)
    assert set(m["per_class"]) == set(CLASSES)
    for row in m["per_class"].values():
        assert {"name", "parent", "precision", "recall", "f1", "support"} <= set(row)
    assert m["per_class"]["a"]["name"] == "Watches"
    assert m["per_class"]["a"]["parent"] == "Accessories"
    assert m["per_class"]["c"]["name"] == "c"
    assert json.loads(json.dumps(m, allow_nan=False)) == m


def test_bad_inputs_raise_prodcat_errors():
    with pytest.raises(ProdcatError):
        compute_metrics(Y, PROBA[:, :3], CLASSES)
    with pytest.raises(ProdcatError):
        compute_metrics(Y[:4], PROBA, CLASSES)
    with pytest.raises(ProdcatError):
        compute_metrics([], np.zeros((0, 4)), CLASSES)
    with pytest.raises(ProdcatError):
        compute_metrics(["a", None, "c", "d", "d"], PROBA, CLASSES)
    with pytest.raises(ProdcatError):
        top_k_accuracy(Y, PROBA, CLASSES, 0)


def test_write_report(tmp_path):
    tax = Taxonomy.from_records([
        {"code": "a", "name": "Men's <b>shirts</b> | long-sleeved and very long name", "parent": "Clothing"},
    ])
    y = Y + ["new"]
    proba = np.vstack([PROBA, [0.7, 0.1, 0.1, 0.1]])
    m = compute_metrics(y, proba, CLASSES, taxonomy=tax)
    m["cv"] = {"folds": 2, "fold_scores": [{"weighted_f1": 0.8, "accuracy": 0.9},
                                           {"weighted_f1": 0.6, "accuracy": 0.7}]}
    out = tmp_path / "nested" / "report"
    paths = write_report(m, out, title="Test run",
                         extra_sections=[("Notes", "Trained on **demo** data.")])

    assert set(paths) == {"metrics_json", "confusion_matrix", "reliability", "report_md",
                          "report_html"}
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 0
    assert paths["confusion_matrix"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths["metrics_json"].read_text(encoding="utf-8")) == m

    md = paths["report_md"].read_text(encoding="utf-8")
    assert "## Accuracy vs coverage" in md
    assert "| 80% |" in md
    assert "## Cross-validation" in md and "0.700 ± 0.100" in md
    assert "## Unseen labels" in md and "new" in md
    assert "](confusion_matrix.png)" in md and "](reliability.png)" in md
    assert "## Notes" in md

    page = paths["report_html"].read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 2
    assert "<b>shirts</b>" not in page
    assert "Men's &lt;b&gt;shirts&lt;/b&gt; | long-sleeved" in page
    assert "<strong>demo</strong>" in page
    assert "<h2>Accuracy vs coverage</h2>" in page


def png_size(path):
    head = path.read_bytes()[:24]
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_confusion_figure_grows_with_classes(tmp_path):
    rng = np.random.default_rng(0)
    classes = [f"c{i:02d}" for i in range(60)]
    idx = rng.integers(0, 60, size=300)
    tax = Taxonomy.from_records([{"code": c, "name": f"Category number {c} with a long name"}
                                 for c in classes])
    m = compute_metrics([classes[i] for i in idx], one_hot(idx, 60), classes, taxonomy=tax)
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    assert _plot_confusion(m, big)
    assert _plot_confusion(compute_metrics(Y, PROBA, CLASSES), small)
    assert png_size(big)[0] > 2 * png_size(small)[0]
    assert png_size(big)[0] >= 60 * 20  # at least ~20 px per class row


def test_markdown_to_html_escapes_and_keeps_structure():
    html = markdown_to_html("# A \\| B\n\n| x | y |\n|---|---:|\n| <i> | `a` |\n\n- one\n- [l](javascript:x)\n")
    assert "<h1>A | B</h1>" in html
    assert "<td>&lt;i&gt;</td>" in html
    assert '<th style="text-align:right">y</th>' in html
    assert '<a href="#">l</a>' in html
    assert "<ul>" in html
