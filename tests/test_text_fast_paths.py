"""The fast paths of the text model must fit the same models as the scikit-learn originals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer

from prodcat.text.charngrams import WordCharTfidf, word_char_ngrams

DOCS = [
    "console ps4 pro 1to noire manette incluse",
    "manette sans fil pour ps4 noire",
    "roman policier edition de poche tres bon etat",
    "livre de poche roman",
    "a b",  # words shorter than the n-gram size
    "piscine gonflable   ronde 3m  bleu",
    "",
    "x",
]


@pytest.mark.parametrize("ngram_range,min_df,max_features",
                         [((3, 5), 1, None), ((3, 5), 2, None), ((2, 4), 1, 40), ((1, 1), 1, None)])
def test_same_matrix_and_columns_as_sklearn(ngram_range, min_df, max_features):
    ref = TfidfVectorizer(analyzer="char_wb", ngram_range=ngram_range, min_df=min_df,
                          max_features=max_features, lowercase=False, sublinear_tf=True, dtype=np.float32)
    ours = WordCharTfidf(ngram_range=ngram_range, min_df=min_df, max_features=max_features)
    a, b = ref.fit_transform(DOCS), ours.fit_transform(DOCS)
    if max_features is None:  # ties in max_features may be broken differently; compare columns only then
        assert list(ref.get_feature_names_out()) == list(ours.get_feature_names_out())
        np.testing.assert_allclose(a.toarray(), b.toarray(), atol=1e-6)
    else:
        assert b.shape == (len(DOCS), max_features)
    new = ["manette ps5 blanche", "", "roman"]
    if max_features is None:
        np.testing.assert_allclose(ref.transform(new).toarray(), ours.transform(new).toarray(), atol=1e-6)


def test_word_ngrams_follow_sklearn_padding():
    assert word_char_ngrams("ab", 3, 4) == [" ab", "ab ", " ab "]
    assert word_char_ngrams("a", 3, 5) == [" a "]


def test_remembered_words_give_the_same_matrix_and_are_not_saved(monkeypatch):
    from prodcat.model.safe_state import dump_state, load_state
    from prodcat.text import charngrams

    ref = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), lowercase=False, sublinear_tf=True,
                          dtype=np.float32).fit(DOCS)
    ours = WordCharTfidf().fit(DOCS)
    batches = [["manette ps5 blanche", "", "roman"], ["roman de poche", "manette manette noire"],
               ["zzz inconnu", "manette"]]
    monkeypatch.setattr(charngrams, "REMEMBERED_WORDS", 5)  # the third batch starts afresh
    for batch in batches + batches:  # the second time, from the remembered words
        np.testing.assert_allclose(ref.transform(batch).toarray(), ours.transform(batch).toarray(),
                                   atol=1e-6)
    assert 0 < len(ours._word_columns) <= 5 + 4
    tree, arrays = dump_state(ours)
    assert "_word_columns" not in str(tree)
    again, _ = load_state(tree, arrays)
    np.testing.assert_allclose(again.transform(batches[0]).toarray(), ours.transform(batches[0]).toarray())
    ours.fit(["autre chose"])  # a new vocabulary forgets the old words' columns
    assert ours.transform(["manette"]).nnz == 0


@pytest.mark.parametrize("options", [{"ngram_range": (1, 2)}, {"ngram_range": (1, 1)},
                                     {"ngram_range": (1, 2), "min_df": 2, "sublinear_tf": False},
                                     {"ngram_range": (1, 3)}, {"ngram_range": (1, 2), "lowercase": True}])
def test_word_ngrams_fast_path_gives_sklearns_matrix(options):
    """prodcat's vectorizers take the fast path, others scikit-learn's: the same matrix both ways."""
    from prodcat.text.wordngrams import _takes_fast_path, transform_block

    params = {"analyzer": "word", "token_pattern": r"(?u)\b\w+\b", "lowercase": False,
              "sublinear_tf": True, "dtype": np.float32, **options}
    vectorizer = TfidfVectorizer(**params).fit(DOCS)
    new = ["manette ps5 noire manette noire", "", "Roman de poche poche", "x y z", "ps4 pro ps4 pro"]
    expected = vectorizer.transform(new)
    got = transform_block(vectorizer, new)
    assert _takes_fast_path(vectorizer) == (options["ngram_range"] != (1, 3) and "lowercase" not in options)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_allclose(got.toarray(), expected.toarray(), rtol=1e-6)
    assert got.has_sorted_indices


def test_transform_of_empty_batch_has_no_rows_set():
    ours = WordCharTfidf().fit(DOCS)
    out = ours.transform(["", "   "])
    assert out.shape[0] == 2 and out.nnz == 0


def test_parallel_svm_fits_the_same_model_as_linear_svc():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    from prodcat.text.svm import ParallelLinearSVC

    rng = np.random.default_rng(0)
    vocab = {c: [f"{c}{i}" for i in range(12)] for c in "abcd"}
    docs, y = [], []
    for i in range(160):
        c = "abcd"[i % 4] if i % 9 else "a"  # imbalanced, so class weights matter
        docs.append(" ".join(rng.choice(vocab[c], 4)) + " " + " ".join(rng.choice(vocab["abcd"[(i + 1) % 4]], 2)))
        y.append(c)
    X = TfidfVectorizer().fit_transform(docs)
    ref = LinearSVC(C=0.5, class_weight="balanced", tol=1e-6, max_iter=10000).fit(X, y)
    ours = ParallelLinearSVC(C=0.5, class_weight="balanced", tol=1e-6, max_iter=10000, n_jobs=2).fit(X, y)
    assert list(ours.classes_) == list(ref.classes_)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-3)
    np.testing.assert_allclose(ours.decision_function(X), ref.decision_function(X), atol=1e-3)
    # Two classes: one decision column, as LinearSVC has.
    two = np.isin(y, ["a", "b"])
    ref2 = LinearSVC(C=0.5, tol=1e-6, max_iter=10000).fit(X[two], np.array(y)[two])
    ours2 = ParallelLinearSVC(C=0.5, class_weight=None, tol=1e-6, max_iter=10000).fit(X[two], np.array(y)[two])
    np.testing.assert_allclose(ours2.decision_function(X[two]), ref2.decision_function(X[two]), atol=1e-3)
    assert (ours2.predict(X[two]) == ref2.predict(X[two])).all()


def test_fold_fits_in_one_pool_give_the_models_fitted_one_after_another(monkeypatch):
    # cross_fit_platt sends the full fit's and the fold fits' binary problems to one pool of
    # workers; every problem seeds its own solver, so the models must be bit-identical.
    from sklearn.feature_extraction.text import TfidfVectorizer

    from prodcat.text import svm
    from prodcat.text.platt import cross_fit_platt

    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(40)]
    y = np.array(["abc"[i % 3] for i in range(90)])
    docs = [" ".join(rng.choice(words[:20] if c == "a" else words[10:30] if c == "b" else words[20:], 6))
            for c in y]
    Z = TfidfVectorizer().fit_transform(docs)
    runs = []
    # One problem after another on one core; every fit's problems in one pool of two workers
    # (each fit alone under the threshold, all of them together over it); each fit on its own
    # pool, one fit after the other (each fit alone over the threshold).
    for min_nnz in (10**12, int(Z.nnz * 1.5), 0):
        monkeypatch.setattr(svm, "PARALLEL_MIN_NNZ", min_nnz)
        runs.append(cross_fit_platt(svm.ParallelLinearSVC(n_jobs=2), Z, y, folds=3))
    seq, a1, _, p1 = runs[0]
    for model, a, _, p in runs[1:]:
        np.testing.assert_array_equal(seq.coef_, model.coef_)
        np.testing.assert_array_equal(seq.intercept_, model.intercept_)
        np.testing.assert_array_equal(p1, p)
        np.testing.assert_array_equal(a1, a)
        assert list(model.classes_) == ["a", "b", "c"]


def test_vectorised_platt_scaling_gives_calibrated_classifier_cv_probabilities():
    import pandas as pd

    from prodcat.text import TextClassifier

    rng = np.random.default_rng(1)
    words = {c: [f"{c}mot{i}" for i in range(10)] for c in "abcd"}
    labels = [("abcd"[i % 4] if i % 7 else "a") for i in range(120)]
    X = pd.DataFrame({"title": [" ".join(rng.choice(words[c], 3)) for c in labels],
                      "description": [" ".join(rng.choice(words["abcd"[(i + 2) % 4]], 2)) for i in range(120)]})
    # The full fit's head, as CalibratedClassifierCV(ensemble=False) keeps it (the default
    # averages it with the fold fits: see test_text_ensemble).
    model = TextClassifier(average_folds=False).fit(X, labels)
    assert model.sigmoids_ is not None
    Z = model.features_.transform(X)
    # Per class, one sigmoid of the head's score (Platt), then normalised over classes.
    _, _, a, b = model.sigmoids_
    scores = model.head_.decision_function(Z)
    per_class = np.column_stack([1 / (1 + np.exp(a[k] * scores[:, k] + b[k])) for k in range(len(a))])
    np.testing.assert_allclose(model.predict_proba(X), per_class / per_class.sum(1, keepdims=True),
                               atol=1e-12)
    # The same model as scikit-learn's Platt scaling on the same folds, up to its optimiser.
    from sklearn.calibration import CalibratedClassifierCV

    reference = CalibratedClassifierCV(clone(model.head_), method="sigmoid", cv=3,
                                       ensemble=False).fit(Z, labels).predict_proba(Z)
    np.testing.assert_allclose(model.predict_proba(X), reference, atol=5e-3)
