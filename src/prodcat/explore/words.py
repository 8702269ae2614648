"""The words of a catalogue and how alike its classes are, from one ``CountVectorizer`` matrix:
per-class top words, word clouds, the Zipf curve, and the cosine similarity of the classes'
TF-IDF centroids with their average-linkage tree (the ``words`` and ``similarity`` sections of
:func:`~prodcat.explore.build_exploration`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from prodcat.explore.stopwords import STOP_WORDS

#: Characters of each cleaned description read for words, centroids and languages: the first
#: sentences carry the category, and a 9,000-character tail only costs time (the model reads
#: 1,000 by default).
DESCRIPTION_CHARS = 2000
#: Words kept per class in summary.json, and fed to each word cloud.
TOP_WORDS, CLOUD_WORDS = 20, 60
#: The dendrogram and the similarity matrix use at most this many (largest) classes.
MAX_SIMILARITY_CLASSES = 150
#: Words: two or more letters, not glued to digits (``x200`` and ``2x`` are codes and sizes).
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"


def words_and_similarity(docs: list[str], labels: np.ndarray, codes: list[str],
                          class_rows: Mapping[str, np.ndarray], top_words: int, raw: dict[str, Any],
                          notes: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer

    try:
        vec = CountVectorizer(token_pattern=TOKEN_PATTERN, lowercase=False, dtype=np.int32)
        X = vec.fit_transform(docs).tocsr()
    except ValueError:  # empty vocabulary: no listing has a word of two letters
        reason = "no words of two letters or more in the catalogue"
        return ({"available": False, "reason": reason}, {"available": False, "reason": reason})
    vocab = vec.get_feature_names_out()
    stop = np.fromiter((w in STOP_WORDS for w in vocab), dtype=bool, count=len(vocab))
    totals = np.asarray(X.sum(axis=0)).ravel()
    B = X.copy()
    B.data[:] = 1  # listings containing the word: one spammy description cannot top a class
    doc_freq = np.asarray(B.sum(axis=0)).ravel()

    def top(df_row: np.ndarray, k: int) -> list[list[Any]]:
        df_row = np.where(stop, 0, df_row)
        k = min(k, int((df_row > 0).sum()))
        if k == 0:
            return []
        idx = np.argpartition(-df_row, k - 1)[:k]
        idx = sorted(idx, key=lambda i: (-df_row[i], vocab[i]))
        return [[str(vocab[i]), int(df_row[i])] for i in idx]

    per_class: dict[str, list[list[Any]]] = {}
    clouds: dict[str, dict[str, int]] = {"__all__": dict(top(doc_freq, CLOUD_WORDS))}
    G = None
    if codes:
        # Class-indicator matrix: one sparse product gives every class's document frequencies.
        rows = np.concatenate([class_rows[c] for c in codes])
        cols = np.concatenate([np.full(len(class_rows[c]), j) for j, c in enumerate(codes)])
        G = sparse.csr_matrix((np.ones(len(rows)), (cols, rows)), shape=(len(codes), len(docs)))
        DF = (G @ B).tocsr()
        for j, c in enumerate(codes):
            row = DF.getrow(j).toarray().ravel()
            per_class[c] = top(row, top_words)
            clouds[c] = dict(top(row, CLOUD_WORDS))
    raw["cloud_words"] = clouds

    freq = np.sort(totals)[::-1]
    raw["zipf_frequencies"] = freq
    ranks = np.arange(1, len(freq) + 1)
    fit = freq >= 3  # the hapax tail is a flat staircase that would bend the fit
    slope = None
    if fit.sum() >= 10:
        slope, intercept = (float(v) for v in np.polyfit(np.log(ranks[fit]), np.log(freq[fit]), 1))
        raw["zipf_fit"] = (slope, intercept)
    words = {
        "available": True,
        "note": (f"words of 2+ letters in the cleaned title and the first {DESCRIPTION_CHARS} "
                 "description characters; counts are listings containing the word; French and "
                 "English stop words removed"),
        "vocabulary_size": int(len(vocab)),
        "tokens": int(totals.sum()),
        "hapax_share": float((totals == 1).mean()),
        "zipf_slope": round(slope, 4) if slope is not None else None,
        "overall": top(doc_freq, top_words),
        "per_class": per_class,
    }

    similarity = class_similarity(X, stop, doc_freq, G, codes, raw, notes)
    return words, similarity


def class_similarity(X, stop: np.ndarray, doc_freq: np.ndarray, G, codes: list[str], raw: dict[str, Any],
                notes: list[str]) -> dict[str, Any]:
    """Cosine similarity of the classes' TF-IDF centroids and their average-linkage tree."""
    if G is None or len(codes) < 2:
        return {"available": False, "reason": "needs at least two labelled classes"}
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.preprocessing import normalize

    k = min(len(codes), MAX_SIMILARITY_CLASSES)
    if k < len(codes):
        notes.append(f"class similarity uses the {k} largest of {len(codes)} classes")
    keep = ~stop & (doc_freq >= 2)  # words seen once cannot make two classes alike
    if not keep.any():
        return {"available": False, "reason": "no word occurs in two listings"}
    T = TfidfTransformer(sublinear_tf=True).fit_transform(X[:, keep])
    Gk = normalize(G[:k], norm="l1")  # row means: the centroid of each class
    C = normalize(Gk @ T)
    S = np.asarray((C @ C.T).todense())
    np.fill_diagonal(S, 1.0)
    D = np.clip(1.0 - S, 0.0, 2.0)
    np.fill_diagonal(D, 0.0)
    Z = linkage(squareform(D, checks=False), method="average")
    raw["linkage"] = Z
    raw["linkage_codes"] = codes[:k]
    raw["similarity_matrix"] = S
    iu = np.triu_indices(k, 1)
    order = np.argsort(-S[iu], kind="stable")[:10]
    pairs = [{"a": codes[iu[0][i]], "b": codes[iu[1][i]], "cosine": round(float(S[iu][i]), 4)}
             for i in order]
    return {"available": True,
            "method": ("cosine similarity of class centroids of sublinear TF-IDF vectors (stop "
                       "words and words seen once removed); average-linkage dendrogram"),
            "classes": codes[:k], "closest_pairs": pairs}
