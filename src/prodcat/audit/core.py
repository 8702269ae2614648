"""Label audit: which training labels look wrong, which listings are near-copies filed under
different categories, which categories the model keeps mixing up, and how clean each class is.

The label issues are confident learning (Northcutt et al., 2021) as implemented by ``cleanlab``
on out-of-fold probabilities of the default :class:`~prodcat.model.Classifier`: a model never
scores a listing it was trained on, so a wrong label cannot vouch for itself.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prodcat.errors import ConfigError


@dataclass
class AuditResult:
    #: One row per listing, worst label first: id, given_label, suggested_label, label_quality,
    #: is_label_issue, given_name, suggested_name, title.
    issues: pd.DataFrame
    per_class: list[dict[str, Any]]
    confused_pairs: list[dict[str, Any]]
    duplicates: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    #: Out-of-fold probabilities (rows in catalogue order, columns ``classes``).
    proba: np.ndarray | None = None
    classes: np.ndarray | None = None

    def to_json(self, top: int = 100) -> dict[str, Any]:
        suspects = self.issues[self.issues["is_label_issue"]].head(top)
        return {"summary": self.summary, "per_class": self.per_class, "confused_pairs": self.confused_pairs,
                "conflicting_duplicates": self.duplicates,
                "top_label_issues": suspects.to_dict(orient="records")}


def _cleanlab():
    try:
        import cleanlab  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"the label audit needs the 'audit' extra: pip install 'prodcat[audit]' ({exc})") from None
    from cleanlab import dataset, filter, rank

    return dataset, filter, rank


def rank_label_issues(labels: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label-quality score per row, confident-learning issue mask); low scores are suspect."""
    _, cl_filter, cl_rank = _cleanlab()
    quality = cl_rank.get_label_quality_scores(labels, proba, method="self_confidence")
    issue = cl_filter.find_label_issues(labels, proba, filter_by="prune_by_noise_rate")
    return np.asarray(quality, dtype=float), np.asarray(issue, dtype=bool)


def _normalise(text: str) -> str:
    return re.sub(r"\W+", " ", str(text).lower()).strip()


def conflicting_duplicates(frame: pd.DataFrame, labels: np.ndarray, *, threshold: float = 0.9,
                           block: int = 2048, limit: int = 200) -> list[dict[str, Any]]:
    """Pairs of listings whose title and start of description are near-identical (cosine of
    character n-gram TF-IDF ≥ ``threshold``) but whose labels differ; most similar first."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [_normalise(f"{t} {str(d)[:200]}") for t, d in zip(frame["title"], frame["description"], strict=True)]
    if len(texts) < 2:
        return []
    X = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=1, sublinear_tf=True,
                        dtype=np.float32).fit_transform(texts)
    pairs = []
    for s in range(0, X.shape[0], block):
        sims = (X[s:s + block] @ X.T).tocoo()
        keep = (sims.data >= threshold) & (sims.row + s < sims.col)
        for i, j, v in zip(sims.row[keep] + s, sims.col[keep], sims.data[keep], strict=True):
            if labels[i] != labels[j]:
                pairs.append((float(v), int(i), int(j)))
    pairs.sort(key=lambda p: -p[0])
    ids, titles = frame["id"].astype(str).to_numpy(), frame["title"].astype(str).to_numpy()
    return [{"similarity": round(v, 4), "id_a": ids[i], "id_b": ids[j], "label_a": str(labels[i]),
             "label_b": str(labels[j]), "title_a": titles[i][:200], "title_b": titles[j][:200]}
            for v, i, j in pairs[:limit]]


def run_audit(catalog, *, folds: int = 5, seed: int = 0, estimator=None, duplicate_threshold: float = 0.9,
              progress: bool = False, memory=None) -> AuditResult:
    """Audit the labels of ``catalog`` (a labelled :class:`~prodcat.data.Catalog`)."""
    from prodcat.evaluation.crossval import cross_val_proba
    from prodcat.model import Classifier

    cl_dataset, _, _ = _cleanlab()
    catalog = catalog.labelled()
    taxonomy = catalog.taxonomy
    t0 = time.perf_counter()
    estimator = estimator if estimator is not None else Classifier(memory=memory, random_state=seed)
    res = cross_val_proba(estimator, catalog.X, catalog.y, folds=folds, seed=seed, progress=progress)
    cv_seconds = time.perf_counter() - t0
    classes = np.asarray(res.classes).astype(str)
    y = np.searchsorted(classes, res.y)
    # Rows of a class no fold model knew are all zeros: cleanlab needs distributions.
    proba = res.proba.copy()
    empty = proba.sum(axis=1) <= 0
    proba[empty] = 1.0 / proba.shape[1]
    proba /= proba.sum(axis=1, keepdims=True)
    quality, issue = rank_label_issues(y, proba)
    suggested = classes[np.argmax(proba, axis=1)]
    frame = catalog.frame.reset_index(drop=True)
    issues = pd.DataFrame({
        "id": frame["id"].astype(str), "given_label": res.y, "suggested_label": suggested,
        "label_quality": np.round(quality, 6), "is_label_issue": issue,
        "given_name": [taxonomy.name(c) for c in res.y], "suggested_name": [taxonomy.name(c) for c in suggested],
        "title": frame["title"].astype(str).str.slice(0, 200)})
    order = np.lexsort((np.arange(len(issues)), quality))
    issues = issues.iloc[order].reset_index(drop=True)

    def describe(idx: int) -> dict[str, Any]:
        code = classes[int(idx)]
        return {"code": code, "name": taxonomy.name(code), "parent": taxonomy.parent(code)}

    per_class = []
    ranked = cl_dataset.rank_classes_by_label_quality(labels=y, pred_probs=proba)
    for r in ranked.to_dict(orient="records"):
        k = int(r["Class Index"])
        per_class.append({**describe(k), "listings": int((y == k).sum()),
                          "label_issues": int(r["Label Issues"]),
                          "inverse_label_issues": int(r["Inverse Label Issues"]),
                          "label_noise": round(float(r["Label Noise"]), 4),
                          "label_quality": round(float(r["Label Quality Score"]), 4)})
    confused = []
    overlap = cl_dataset.find_overlapping_classes(labels=y, pred_probs=proba)
    for r in overlap.head(20).to_dict(orient="records"):
        a, b = describe(r["Class Index A"]), describe(r["Class Index B"])
        confused.append({"a": a, "b": b, "overlapping_listings": int(r["Num Overlapping Examples"]),
                         "joint_probability": round(float(r["Joint Probability"]), 5),
                         "same_parent": a["parent"] is not None and a["parent"] == b["parent"]})
    duplicates = conflicting_duplicates(frame, np.asarray(res.y), threshold=duplicate_threshold)
    accuracy = float((suggested == res.y).mean())
    summary = {"listings": len(issues), "classes": len(classes), "folds": folds, "seed": seed,
               "label_issues": int(issue.sum()), "label_issue_share": round(float(issue.mean()), 4),
               "out_of_fold_accuracy": round(accuracy, 4), "conflicting_duplicate_pairs": len(duplicates),
               "duplicate_threshold": duplicate_threshold, "cv_seconds": round(cv_seconds, 1),
               "seconds": round(time.perf_counter() - t0, 1), "source": catalog.source,
               "method": "cleanlab confident learning (prune_by_noise_rate; self-confidence scores) "
                         "on out-of-fold probabilities of the default Classifier"}
    return AuditResult(issues=issues, per_class=per_class, confused_pairs=confused, duplicates=duplicates,
                       summary=summary, proba=proba, classes=classes)
