"""Several calibrated text models, pooled by weights learnt on their out-of-fold answers.

No single text model wins everywhere: a linear SVM on word and character n-grams is precise on
product vocabulary, and one that also sees a multilingual sentence embedding generalises across
phrasings and languages (a model on the embedding alone, ``use-logistic``, is registered but the
selection never gave it weight on Rakuten or Flipkart). Members are fitted once each, members
with the same n-grams share one TF-IDF fit; every one keeps the *out-of-fold* probabilities it
produced while calibrating itself, so weighing them costs no extra fit. Poolings:

- ``linear`` (default): Caruana et al. (2004)'s greedy ensemble selection with replacement, as
  AutoGluon does — a weighted average grown to minimise the out-of-fold log loss — then one
  sharpening power fitted on the same out-of-fold probabilities, because averaging calibrated
  models makes them timid.
- ``geometric``: the members' probabilities multiplied with equal weights, then sharpened.
- ``log-linear``: ``P ∝ Π P_m ** w_m`` with free weights minimising the out-of-fold log loss
  (:class:`~prodcat.fusion.fusers.LateFusion`, the pool that fuses text and photo).

Under nested cross-validation on the Rakuten sample (choices on inner folds, outer folds
report) the linear pool scored best in weighted F1 (``benchmarks/results/quality_rakuten.md``);
the log-linear pool's learnt weights filed more listings at 95 % precision but lost 1 point of F1.

Members come from a registry of named configurations (:data:`MEMBERS`); the default ones read
the title and the description as one text, so a feed that glues the description onto the title,
or leaves one of them empty, is read the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.utils.validation import check_consistent_length, check_is_fitted

from prodcat.fusion.fusers import LateFusion, probability_blocks
from prodcat.params import Integral, Interval, StrOptions, check_params
from prodcat.registry import Registry
from prodcat.text.dense import DenseTextClassifier
from prodcat.text.encoders import TEXT_ENCODERS, installed_version
from prodcat.text.features import sharing_tfidf
from prodcat.text.model import TextClassifier
from prodcat.text.platt import out_of_fold_folds

#: name → builder of an unfitted member (keyword arguments: ``random_state``, ``n_jobs``).
MEMBERS: Registry[Callable[..., object]] = Registry("text ensemble member",
                                                    shared=("random_state", "n_jobs"))

#: The members of ``members="auto"``. The selection weighs them, and may leave any out.
#: ``use-logistic`` was a default until the selection gave it no weight in any outer fold of the
#: Rakuten and Flipkart samples: it cost a third of the training time for nothing. The USE member
#: reads the title, not the title and the start of the description (``tfidf-use-svm``, the default
#: until 2026-12): under nested CV on the Rakuten sample, same outer folds, weighted F1 0.7244
#: against 0.7220, and it filed 42.9 % of the listings at 95 % precision against 37.1 % (more on
#: 5 of 5 folds), and encodes 3x faster. It does worse when a feed has descriptions but no titles
#: (0.4897 against 0.5081 in that layout): the title's place then holds a description it never
#: saw there. The three members together: 0.7278, but 38.5 % filed at 95 % and both encodings.
DEFAULT_MEMBERS = ("tfidf-svm", "tfidf-use-title-svm")
#: Member sets by name (``--members quality``). ``quality`` adds the e5 member (the ``text-e5``
#: extra): +0.88 weighted F1 on the Rakuten sample and +0.28 on Flipkart under nested CV (3
#: shuffles; ``benchmarks/results/member_screen_*_e5.md``), but it predicts 17 listings a second
#: and 67 ms a listing (``predict_speed_quality.md``), so it is not the default.
MEMBER_SETS = {"quality": (*DEFAULT_MEMBERS, "tfidf-e5-svm")}
#: The n-gram settings every SVM member shares: no separate title block, so a word counts the same
#: in whichever field a feed put it; the description read up to 2,000 characters for words and
#: 1,000 for character n-grams (reading more, or all of it, lowered weighted F1 and coverage under
#: nested CV on the Rakuten sample: ``benchmarks/results/member_screen_rakuten_description.md``).
MEMBER_TFIDF = {"title_ngrams": None, "class_weight": None, "max_description_chars": 2000,
                "char_description_chars": 1000}
#: Above this many training listings ``members="auto"`` leaves the sentence-encoder members out:
#: with it, 85k listings trained in 310 s and 3.2 GB on 2 cores (the encoding, and a second member's
#: four SVM fits with 512 dense columns) against 96 s and 1.9 GB without — the budget is 180 s.
#: Fitted on a stratified sample of 20,000 (its answers on the rest standing in for out-of-fold
#: ones): still 210 s and 3.4 GB, most of it encoding every title for those answers — not kept,
#: although in a one-off screen on the Rakuten sample the member fitted on a quarter of each
#: training fold kept a third of its gain (+1.0 weighted F1 over the TF-IDF SVM alone, not +3.5).
MAX_DENSE_ROWS = 20_000
#: The sentence encoder each member needs (the ``text-dense`` extra); members whose encoder is
#: not installed are left out of ``members="auto"``.
MEMBER_ENCODERS = {"tfidf-use-svm": "use-multilingual-description",
                   "use-logistic": "use-multilingual-description",
                   "tfidf-use-title-svm": "use-multilingual",
                   "use-title-logistic": "use-multilingual",
                   "tfidf-e5-svm": "e5-small-description"}


@MEMBERS.register("tfidf-svm")
def _tfidf_svm(random_state=0, n_jobs=-1):
    """Word 1–2-grams and char_wb 3–5-grams over title + description, Platt-calibrated SVM."""
    return TextClassifier(**MEMBER_TFIDF, random_state=random_state, n_jobs=n_jobs)


@MEMBERS.register("tfidf-use-svm")
def _tfidf_use_svm(random_state=0, n_jobs=-1):
    """The same n-grams plus the multilingual USE embedding of title and description start."""
    return TextClassifier(**MEMBER_TFIDF, dense="use-multilingual-description",
                          random_state=random_state, n_jobs=n_jobs)


@MEMBERS.register("tfidf-use-title-svm")
def _tfidf_use_title_svm(random_state=0, n_jobs=-1):
    """The n-grams plus the USE embedding of the title alone (about twice as fast to encode)."""
    return TextClassifier(**MEMBER_TFIDF, dense="use-multilingual",
                          random_state=random_state, n_jobs=n_jobs)


@MEMBERS.register("tfidf-e5-svm")
def _tfidf_e5_svm(random_state=0, n_jobs=-1):
    """The n-grams plus the e5-small embedding of title and description start (the ``text-e5``
    extra): the quality ensemble's third member, far slower to encode than USE."""
    return TextClassifier(**MEMBER_TFIDF, dense="e5-small-description",
                          random_state=random_state, n_jobs=n_jobs)


@MEMBERS.register("use-title-logistic")
def _use_title_logistic(random_state=0, n_jobs=-1):
    """Logistic regression on the USE embedding of the title alone."""
    return DenseTextClassifier(encoder="use-multilingual", random_state=random_state)


@MEMBERS.register("title-tfidf-svm")
def _title_tfidf_svm(random_state=0, n_jobs=-1):
    """prodcat's single-model default: the n-grams plus a block of the title's own words."""
    return TextClassifier(random_state=random_state, n_jobs=n_jobs)


@MEMBERS.register("use-logistic")
def _use_logistic(random_state=0, n_jobs=-1):
    """Logistic regression on the USE embedding alone."""
    return DenseTextClassifier(random_state=random_state)


@MEMBERS.register("complement-nb")
def _complement_nb(random_state=0, n_jobs=-1):
    """Complement naive Bayes on word n-grams, Platt-calibrated."""
    return TextClassifier(head="complement-nb", char_ngrams=None, title_ngrams=None,
                          class_weight=None, max_description_chars=2000,
                          random_state=random_state, n_jobs=n_jobs)


def available_members(names=DEFAULT_MEMBERS) -> tuple[str, ...]:
    """``names`` less those whose sentence encoder's package is not installed."""
    return tuple(n for n in names
                 if n not in MEMBER_ENCODERS or installed_version(TEXT_ENCODERS.get(MEMBER_ENCODERS[n])))


def too_many_to_encode(names, n_rows: int, max_dense_rows: int | None) -> tuple[str, ...]:
    """The members of ``names`` that ``members="auto"`` leaves out on ``n_rows`` training
    listings: those that need a sentence encoder, above ``max_dense_rows`` (None: no limit)."""
    if max_dense_rows is None or n_rows <= max_dense_rows:
        return ()
    return tuple(n for n in names if n in MEMBER_ENCODERS)


def default_text_model(random_state=0, n_jobs=-1):
    """prodcat's default text model: the ensemble of the available default members, or the
    TF-IDF SVM alone when the sentence encoder is not installed (an ensemble of one is that
    model with extra steps)."""
    members = available_members()
    if len(members) == 1:
        return MEMBERS.create(members[0], random_state=random_state, n_jobs=n_jobs)
    return TextEnsemble(random_state=random_state, n_jobs=n_jobs)


def greedy_selection(probas: list[np.ndarray], y_idx: np.ndarray, rounds: int) -> np.ndarray:
    """Caruana's ensemble selection with replacement: weights (summing to 1) of ``probas``.

    Each round adds the member whose inclusion gives the lowest log loss of the running average.
    """
    rows = np.arange(len(y_idx))
    counts = np.zeros(len(probas))
    total = np.zeros_like(probas[0])
    for r in range(rounds):
        losses = [_log_loss((total + p) / (r + 1), rows, y_idx) for p in probas]
        best = int(np.argmin(losses))
        counts[best] += 1
        total += probas[best]
    return counts / counts.sum()


def sharpen(proba: np.ndarray, power: float) -> np.ndarray:
    """``proba ** power``, renormalised (power > 1 sharpens, < 1 flattens)."""
    p = np.power(np.clip(proba, 1e-12, 1.0), power)
    return p / p.sum(axis=1, keepdims=True)


def fit_power(proba: np.ndarray, y_idx: np.ndarray) -> float:
    """The power (inverse temperature) minimising the log loss of :func:`sharpen`."""
    rows = np.arange(len(y_idx))
    result = minimize_scalar(lambda t: _log_loss(sharpen(proba, t), rows, y_idx),
                             bounds=(0.25, 8.0), method="bounded")
    return float(result.x)


def _log_loss(proba: np.ndarray, rows: np.ndarray, y_idx: np.ndarray) -> float:
    return float(-np.log(np.clip(proba[rows, y_idx], 1e-12, 1.0)).mean())


def _title_lengths(X) -> np.ndarray:
    # A plain loop: pandas' string methods cost more than the rest of a single listing's pooling.
    titles = X["title"].tolist()
    return np.fromiter((len(t.strip()) if isinstance(t, str) else 0 if pd.isna(t) else len(str(t).strip())
                        for t in titles), dtype=np.int64, count=len(titles))


def _reads_the_title(member) -> bool:
    """Whether ``member``'s sentence encoder embeds the title alone."""
    encoder = getattr(getattr(member, "features_", None), "dense_encoder_", None)
    return encoder is not None and encoder.spec.combine == "title"


class TextEnsemble(ClassifierMixin, BaseEstimator):
    """Catalog frame → probabilities pooled from several calibrated text models.

    Parameters
    ----------
    members : "auto", sequence of str, or mapping of name → estimator
        Members by registered name (:data:`MEMBERS`; ``"auto"``: :data:`DEFAULT_MEMBERS` whose
        encoder is installed, less those that need one when there are more than
        ``max_dense_rows`` listings), or estimators given directly. An estimator without
        ``oof_proba_`` after ``fit`` is cross-validated once more to get them.
    pooling : {"linear", "geometric", "log-linear"}
        ``linear``: greedy ensemble selection of a weighted average, then sharpening;
        ``geometric``: equal-weight product, then sharpening; ``log-linear``: weighted product
        with weights (and temperature) by out-of-fold log loss.
    rounds : int
        Rounds of greedy selection (``linear`` only; the weights' resolution is ``1/rounds``).
    cv : int
        Folds for members that do not produce out-of-fold probabilities themselves.
    max_dense_rows : int or None
        ``members="auto"`` on more training listings than this keeps only the members without a
        sentence encoder (its encoding dominates training time on large catalogues); None: no
        limit. Members named explicitly are always fitted.
    random_state : int
    n_jobs : int or None
        Cores each member's head may use.

    Attributes
    ----------
    classes_ : ndarray of str
    members_ : dict of name → fitted estimator
        The members the selection kept (weight > 0), and those that do not embed the title,
        which answer where the title embedders abstain.
    weights_ : dict of name → float
        Every candidate's weight (0 for those left out).
    power_ : float
        The sharpening power applied to the blend (1 for the log-linear pool, whose weights
        already include it).
    oof_proba_ : ndarray of shape (n_listings, n_classes)
        The blend's out-of-fold probabilities (for thresholds and fusion).
    member_scores_ : dict of name → {"log_loss", "accuracy"}
        Each candidate's out-of-fold scores, and the blend's as ``"ensemble"``.
    left_out_ : dict of name → str
        Default members not fitted, and why.
    title_chars_ : int or None
        The longest training title: a member that embeds the title abstains on a listing whose
        title is empty or longer (see ``_abstaining``).
    """

    _parameter_constraints = {
        "members": [StrOptions({"auto"}), list, tuple, Mapping],
        "pooling": [StrOptions({"linear", "geometric", "log-linear"})],
        "rounds": [Interval(Integral, 1, None, closed="left")],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "max_dense_rows": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
    }

    def __init__(self, members="auto", pooling="linear", rounds=20, cv=3,
                 max_dense_rows=MAX_DENSE_ROWS, random_state=0, n_jobs=-1):
        self.members = members
        self.pooling = pooling
        self.rounds = rounds
        self.cv = cv
        self.max_dense_rows = max_dense_rows
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _candidates(self, n_rows: int) -> dict[str, object]:
        self.left_out_ = {}
        if isinstance(self.members, Mapping):
            return {str(k): clone(v) for k, v in self.members.items()}
        names = tuple(self.members)
        if self.members == "auto":
            names = available_members()
            self.left_out_ = {n: "sentence encoder not installed" for n in DEFAULT_MEMBERS
                              if n not in names}
            dense = too_many_to_encode(names, n_rows, self.max_dense_rows)
            self.left_out_.update({n: f"{n_rows:,} listings > max_dense_rows="
                                      f"{self.max_dense_rows:,}" for n in dense})
            names = tuple(n for n in names if n not in dense)
        if not names:
            raise ValueError("TextEnsemble needs at least one member")
        return {name: MEMBERS.create(name, random_state=self.random_state, n_jobs=self.n_jobs)
                for name in names}

    def _oof(self, model, estimator, X, y) -> np.ndarray:
        oof = getattr(model, "oof_proba_", None)
        if oof is None:
            oof = cross_val_predict(clone(estimator), X, y,
                                    cv=StratifiedKFold(out_of_fold_folds(y, self.cv)),
                                    method="predict_proba")
        return self._place(model, oof)

    def _place(self, model, proba: np.ndarray) -> np.ndarray:
        out = np.zeros((proba.shape[0], len(self.classes_)))
        out[:, np.searchsorted(self.classes_, np.asarray(model.classes_).astype(str))] = proba
        return out

    def fit(self, X, y):
        check_params(self)
        y = np.asarray(y, dtype=object).astype(str)
        check_consistent_length(X, y)
        self.classes_ = np.unique(y).astype(object)
        y_idx = np.searchsorted(self.classes_.astype(str), y)
        rows = np.arange(len(y))
        fitted, oofs = {}, {}
        with sharing_tfidf():
            for name, estimator in self._candidates(len(y)).items():
                fitted[name] = clone(estimator).fit(X, y)
                oofs[name] = self._oof(fitted[name], estimator, X, y)
        names = list(fitted)
        if self.pooling == "linear":
            weights = greedy_selection([oofs[n] for n in names], y_idx, self.rounds)
        elif self.pooling == "geometric":
            weights = np.full(len(names), 1 / len(names))
        else:
            weights = LateFusion(n_modalities=len(names), classes=np.arange(len(self.classes_))).fit(
                probability_blocks([oofs[n] for n in names]), y_idx).weights_
        self.weights_ = {n: float(w) for n, w in zip(names, weights, strict=True)}
        self.title_chars_ = int(_title_lengths(X).max()) if hasattr(X, "columns") and "title" in X.columns \
            and len(X) else None
        # A member that does not embed the title stays, even without weight: it answers where
        # the title embedders abstain (see _abstaining).
        weighted = [n for n in names if self.weights_[n] > 0]
        abstainers = any(_reads_the_title(fitted[n]) for n in weighted)
        self.members_ = {n: fitted[n] for n in names
                         if n in weighted or (abstainers and not _reads_the_title(fitted[n]))}
        blend = self._pool({n: oofs[n] for n in self.members_})
        self.power_ = fit_power(blend, y_idx) if self.pooling != "log-linear" else 1.0
        self.oof_proba_ = sharpen(blend, self.power_)
        self.member_scores_ = {
            name: {"log_loss": _log_loss(p, rows, y_idx),
                   "accuracy": float((p.argmax(axis=1) == y_idx).mean())}
            for name, p in {**oofs, "ensemble": self.oof_proba_}.items()}
        return self

    def _pool(self, probas: dict[str, np.ndarray], abstain: dict[str, np.ndarray] | None = None) -> np.ndarray:
        if self.pooling == "linear":
            if not abstain:
                return sum(self.weights_[n] * p for n, p in probas.items())
            # Per listing, the members that answer share the weight of those that abstain; where
            # those had no weight, they answer with equal weights; where every member abstains,
            # all answer after all.
            n_rows = next(iter(probas.values())).shape[0]
            answers = {n: ~np.broadcast_to(abstain.get(n, False), n_rows) for n in probas}
            weights = {n: np.where(answers[n], self.weights_[n], 0.0) for n in probas}
            for fallback in (lambda n: answers[n].astype(float), lambda n: self.weights_[n]):
                empty = sum(weights.values()) == 0
                weights = {n: np.where(empty, fallback(n), w) for n, w in weights.items()}
            total = sum(weights.values())
            return sum(weights[n][:, None] * p for n, p in probas.items()) / total[:, None]
        # Log-linear weights are not normalised: their sum is also an inverse temperature.
        logits = sum(self.weights_[n] * np.log(np.clip(p, 1e-6, 1.0)) for n, p in probas.items())
        logits -= logits.max(axis=1, keepdims=True)
        blend = np.exp(logits)
        return blend / blend.sum(axis=1, keepdims=True)

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "members_")
        with sharing_tfidf():  # members with the same n-grams transform X once
            probas = {n: self._place(m, m.predict_proba(X)) for n, m in self.members_.items()}
        return sharpen(self._pool(probas, self._abstaining(X)), self.power_)

    def _abstaining(self, X) -> dict[str, np.ndarray]:
        """Per member that embeds the title, the listings it is not asked about: those without a
        title (its encoder would read a description in the title's place) or whose title is longer
        than any it was trained on (a feed that glued the description onto it).

        Trained on titles only, such a member took a description for a title: on the Rakuten
        sample's description-only layout it pulled the ensemble 1.2 points below the TF-IDF
        member alone."""
        longest = getattr(self, "title_chars_", None)
        if longest is None or self.pooling != "linear" or not hasattr(X, "columns") or "title" not in X.columns:
            return {}
        lengths = _title_lengths(X)
        out_of_shape = (lengths == 0) | (lengths > longest)
        if not out_of_shape.any():
            return {}
        return {n: out_of_shape for n, m in self.members_.items() if _reads_the_title(m)}

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    @property
    def features_member_(self):
        """The first kept member with TF-IDF features (what early fusion reads), or None."""
        check_is_fitted(self, "members_")
        return next((m for m in self.members_.values() if hasattr(m, "features_")), None)

    def transform(self, X):
        """The TF-IDF (and dense) features of :attr:`features_member_`."""
        member = self.features_member_
        if member is None:
            raise ValueError("no member of this ensemble has TF-IDF features")
        return member.transform(X)
