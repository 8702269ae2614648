"""The Classifier: one estimator over Catalog frames that the CLI, API, UI and batch jobs share."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_consistent_length, check_is_fitted

from prodcat.data.catalog import FEATURE_COLUMNS, label_to_code
from prodcat.data.taxonomy import Taxonomy
from prodcat.errors import DataError
from prodcat.evaluation.automation import threshold_for_precision
from prodcat.fusion.fusers import log_loss_of
from prodcat.model.fitcache import fit_memory, remembered, source_fingerprint, trim
from prodcat.model.fitting import (
    choose_fusion,
    fit_early,
    fit_image_head,
    fit_text,
    fusion_input,
    image_out_of_fold,
    place_columns,
    pseudo_labels,
    text_out_of_fold,
    with_pseudo_labels,
)
from prodcat.model.ocr_channel import (
    OCR_CHOICES,
    auto_decision,
    engine_record,
    has_photo,
    ocr_texts,
    read_training_words,
    with_ocr_words,
    words_alone,
)
from prodcat.params import Integral, Interval, Real, StrOptions, check_params
from prodcat.text.ensemble import default_text_model


def as_listings(X) -> pd.DataFrame:
    """Accept a Catalog frame, one listing as a dict, or a list of dicts; return the model's frame.

    Missing columns are added empty, so callers may pass only a title.
    """
    if isinstance(X, Mapping):
        X = [X]
    if not isinstance(X, pd.DataFrame):
        # Plain Python for dicts: a single listing must not pay pandas' dtype conversions.
        rows = list(X)
        return pd.DataFrame({
            "title": [_text(r.get("title")) for r in rows],
            "description": [_text(r.get("description")) for r in rows],
            "image": [r.get("image") if r.get("image") is not None else None for r in rows],
        }, columns=list(FEATURE_COLUMNS))
    frame = X.copy()
    for col in FEATURE_COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    for col in ("title", "description"):
        frame[col] = frame[col].astype("string").fillna("").astype(object)
    frame["image"] = frame["image"].astype(object).where(frame["image"].notna(), None)
    return frame.loc[:, list(FEATURE_COLUMNS)]


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def top_k_indices(proba: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest probabilities per row, best first."""
    k = min(k, proba.shape[1])
    part = np.argpartition(-proba, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(proba, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


FUSIONS = ("auto", "late", "stack", "early")
#: Standard errors (Wilson lower bound) by which the out-of-fold precision of what the stored
#: threshold files must clear the target precision (see ``Classifier._set_threshold``).
THRESHOLD_MARGIN = 0.75


class Classifier(ClassifierMixin, BaseEstimator):
    """Listing → category probabilities, from its text and, when given a model for it, its photo.

    Parameters
    ----------
    text : estimator, default None
        The text model; any estimator with ``fit``/``predict_proba`` over a Catalog frame. None:
        :func:`~prodcat.text.ensemble.default_text_model` (an ensemble of calibrated text models
        chosen by out-of-fold log loss, or one TF-IDF SVM without the ``text-dense`` extra).
    image : ImageClassifier or None
        The image model; None trains a text-only classifier.
    fusion : {"auto", "late", "stack", "early"}
        How text and image probabilities are combined on listings that have both (see
        :mod:`prodcat.fusion`). ``auto`` picks the fusion with the lowest out-of-fold log loss.
    fusion_cv : int or "auto"
        Folds of the out-of-fold image probabilities the fusion learns from ("auto": 3; every
        fold is one more fit of the image head, never of the text model, whose out-of-fold
        probabilities come from its own calibration).
    threshold : "auto" or float in [0, 1]
        Confidence at or above which a prediction is filed without review. ``"auto"``: the lowest
        confidence at which the out-of-fold answers reaching it are ``target_precision`` correct.
    target_precision : float in (0, 1]
        The precision the automatically filed listings must keep (with ``threshold="auto"``).
    min_class_count : int
        Classes with fewer training listings are left out (and recorded): a category seen once
        cannot be calibrated or cross-validated.
    min_images : int
        Fewer usable labelled photos than this and the image model is left out (with a warning).
    ocr : None, "auto", "none" or an OCR engine name ("rapidocr", "tesseract")
        Read the words on the listings' photos (:mod:`prodcat.ocr`, cached) and give them to the
        text model at the head of the description, behind a marker (see
        :mod:`prodcat.model.ocr_channel`), in training and prediction alike. ``"auto"``: the
        default engine when installed, kept only when the words clearly help out of fold (one
        more text fit; the rule: :func:`~prodcat.model.ocr_channel.auto_decision`). None/"none": off.
    pseudo_label_threshold : float
        With ``unlabelled`` listings passed to :meth:`fit`, their photos are added to the image
        model's training set under the text model's answer when it is at least this confident.
        Marketplaces have far more unlabelled listings than labelled ones; the text model is the
        stronger one, and its confident answers are rarely wrong (see the coverage table).
    memory : None, str or joblib.Memory
        Where fits are remembered (:mod:`prodcat.model.fitcache`): fitting again on the same
        listings with the same parameters loads each model instead of fitting it. None: off.
    random_state : int
        Seed of the fusion folds and of every model's own randomness: the same data and seed
        give the same model.

    Attributes
    ----------
    classes_ : ndarray of str
        Category codes; the column order of :meth:`predict_proba`.
    taxonomy_ : Taxonomy
        Names and parents of the categories (the given taxonomy, extended to every class).
    text_ : estimator
        The fitted text model.
    image_ : ImageClassifier or None
        The fitted image model (None when left out or not asked for).
    fuser_ : LateFusion, StackedFusion, EarlyFusion or None
        The fitted fuser of the listings with text and a photo (None for text-only models); it
        reads one ``X``, built by :func:`~prodcat.model.fitting.fusion_input` from the text and
        image models.
    fusion_ : dict or None
        The fusion chosen, every candidate's out-of-fold log loss and accuracy, the weights.
    ocr_ : dict or None
        The OCR engine the model reads photos with (name, version, cache id, photos with words,
        out-of-fold log loss with and without them); None without OCR.
    threshold_ : float
        The automation threshold in force (``needs_review`` is ``top-1 probability < threshold_``).
    automation_ : dict
        How the threshold was chosen and what it filed out of fold (coverage, precision).
    dropped_classes_ : dict of str → int
        Classes left out for having fewer than ``min_class_count`` listings.
    n_train_ : int
        Listings the model was fitted on.

    Examples
    --------
    >>> import pandas as pd
    >>> from prodcat.model import Classifier
    >>> from prodcat.text.model import TextClassifier
    >>> X = pd.DataFrame({"title": ["lego star wars", "poupee barbie", "lego city camion",
    ...                             "barbie maison", "lego technic", "poupee bebe"] * 3,
    ...                   "description": [""] * 18})
    >>> y = ["jouet-construction", "poupee", "jouet-construction", "poupee",
    ...      "jouet-construction", "poupee"] * 3
    >>> model = Classifier(text=TextClassifier(calibration_cv=2)).fit(X, y)
    >>> model.predict([{"title": "lego ninjago"}])[0]
    'jouet-construction'
    >>> 0.0 <= model.threshold_ <= 1.0
    True
    """

    _parameter_constraints = {
        "text": "no_validation",
        "image": "no_validation",
        "fusion": [StrOptions(set(FUSIONS))],
        "fusion_cv": [StrOptions({"auto"}), Interval(Integral, 2, None, closed="left")],
        "threshold": [StrOptions({"auto"}), Interval(Real, 0, 1, closed="both")],
        "target_precision": [Interval(Real, 0, 1, closed="right")],
        "min_class_count": [Interval(Integral, 1, None, closed="left")],
        "min_images": [Interval(Integral, 0, None, closed="left")],
        "pseudo_label_threshold": [Interval(Real, 0, 1, closed="both")],
        "memory": "no_validation",
        "random_state": ["random_state"],
        "ocr": [StrOptions(set(OCR_CHOICES)), None],
    }

    def __init__(self, text=None, image=None, fusion="auto", fusion_cv="auto", threshold="auto",
                 target_precision=0.95, min_class_count=3, min_images=30,
                 pseudo_label_threshold=0.9, memory=None, random_state=0, ocr=None):
        self.text = text
        self.image = image
        self.fusion = fusion
        self.fusion_cv = fusion_cv
        self.threshold = threshold
        self.target_precision = target_precision
        self.min_class_count = min_class_count
        self.min_images = min_images
        self.pseudo_label_threshold = pseudo_label_threshold
        self.memory = memory
        self.random_state = random_state
        self.ocr = ocr

    # Fitting -----------------------------------------------------------------------------------

    def fit(self, X, y, taxonomy: Taxonomy | None = None, unlabelled=None):
        """Fit on labelled listings ``X``, ``y``; ``unlabelled`` listings (any frame with photos)
        only teach the image model, through confident text pseudo-labels.

        Each base model is fitted once: the text model, then (with photos) the image head; the
        fusion learns from their out-of-fold probabilities, and so does the automation threshold.
        """
        check_params(self)
        X = as_listings(X)
        check_consistent_length(X, y)
        y = pd.Series([label_to_code(v) for v in np.asarray(y, dtype=object)], dtype=object)
        known = y.notna().to_numpy()
        counts = y[known].value_counts()
        rare = counts[counts < self.min_class_count]
        keep = known & ~y.isin(rare.index).to_numpy()
        if rare.size:
            warnings.warn(f"left out {rare.size} class(es) with fewer than {self.min_class_count} "
                          f"listings: {', '.join(map(str, rare.index[:10]))}", stacklevel=2)
        if keep.sum() == 0 or y[keep].nunique() < 2:
            raise DataError("training needs at least two categories with "
                            f"{self.min_class_count} or more labelled listings each")
        self.dropped_classes_ = {str(k): int(v) for k, v in rare.items()}
        X = X[keep].reset_index(drop=True)
        y = y[keep].to_numpy().astype(str)
        self.classes_ = np.unique(y).astype(object)
        self.taxonomy_ = (taxonomy or Taxonomy()).extended(self.classes_)
        self.n_train_ = len(y)
        self.image_ = self.fuser_ = None
        self.fusion_ = None
        memory, code = fit_memory(self.memory), source_fingerprint()
        text = self.text if self.text is not None else default_text_model(self.random_state)
        splits = self._splits(y)
        X, oof = self._fit_text(memory, code, text, X, y, splits)
        images = self._embed_for_fit(X, y)
        if images is not None:
            extra = self._embed_unlabelled(unlabelled)
            sure, labels = (pseudo_labels(self.text_, extra[0], self.pseudo_label_threshold)
                            if extra is not None else (None, None))
            *image_set, self.n_pseudo_labelled_ = with_pseudo_labels(
                images.embeddings, images.ok, y, extra, sure, labels)
            self.image_ = remembered(memory, fit_image_head)(self.image, *image_set, code)
            fused = self._fit_fusion(memory, code, X, y, images, oof, extra, sure, labels, splits)
            oof = oof.copy()
            oof[images.ok] = fused
            self.fusion_["n_pseudo_labelled"] = self.n_pseudo_labelled_
        self._set_threshold(oof, y)
        trim(memory)
        return self

    def _fit_text(self, memory, code, text, X, y, splits) -> tuple[pd.DataFrame, np.ndarray]:
        """``text_`` and its out-of-fold probabilities, on the listings with their photos' words
        (``ocr``; with ``"auto"`` only when :func:`auto_decision` keeps them) or without;
        returns the listings as the model reads them, and those probabilities."""
        self.ocr_ = None
        words = read_training_words(self.ocr, X, min_rows=self.min_images)
        frames = [X] if words is None else [words.X] if self.ocr != "auto" else [X, words.X]
        fits = []
        for frame in frames:
            model = remembered(memory, fit_text)(text, frame, y, code)
            fits.append((model, frame, remembered(memory, text_out_of_fold)(
                model, text, frame, y, splits=splits, classes=self.classes_, code=code)))
        y_idx = np.searchsorted(self.classes_.astype(str), y)
        losses = [log_loss_of(oof, y_idx) for _, _, oof in fits]
        decision = None
        if len(fits) == 2:
            decision = auto_decision(fits[0][2], fits[1][2], y_idx, has_photo(X), splits)
        self.text_, X, oof = fits[-1] if decision is None or decision["keep"] else fits[0]
        if words is not None and X is words.X:
            self.ocr_ = {**engine_record(words.name), "requested": self.ocr,
                         "n_with_words": words.n_with_words,
                         "oof_log_loss": dict(zip(["without", "with"][-len(losses):], losses, strict=True)),
                         **({"auto": decision} if decision is not None else {})}
        elif words is not None:
            warnings.warn(f"ocr='auto': {decision['reason']}; training without OCR", stacklevel=3)
        return X, oof

    def _set_threshold(self, oof: np.ndarray, y: np.ndarray) -> None:
        """``threshold_``: the given threshold, or (``"auto"``) the lowest confidence at which the
        out-of-fold answers that reach it are ``target_precision`` correct; ``automation_``
        records what that threshold filed out of fold."""
        y_idx = np.searchsorted(self.classes_.astype(str), y)
        confidence = oof.max(axis=1)
        correct = oof.argmax(axis=1) == y_idx
        # A margin of 0.75 standard errors (Wilson): the cut that files the most out of fold is
        # partly luck, and a threshold at the very edge of the promise on a few hundred answers
        # breaks it on the next listings. Nested CV on the Rakuten sample, 3 shuffles of 5 outer
        # folds (text model): z=0.5 filed 39.4 % of the held-out listings at 95.0 % precision
        # (93.6 % on one shuffle; with photos 94.6 % on average), z=0.75 37.6 % at 95.3 %
        # (every shuffle >= 94.4 %), z=1 36.0 % at 95.6 %, z=0 41.6 % at 94.5 %.
        chosen = threshold_for_precision(confidence, correct, self.target_precision, z=THRESHOLD_MARGIN)
        if self.threshold == "auto":
            self.threshold_ = min(1.0, chosen["threshold"])
        else:
            self.threshold_ = float(self.threshold)
        filed = confidence >= self.threshold_
        self.automation_ = {
            "threshold": self.threshold_, "chosen_by": "target_precision" if self.threshold == "auto"
            else "given", "target_precision": self.target_precision,
            "oof_coverage": float(filed.mean()),
            "oof_precision": float(correct[filed].mean()) if filed.any() else None,
            "oof_n": int(len(y))}

    def _splits(self, y: np.ndarray) -> list:
        skf = StratifiedKFold(n_splits=self._folds(), shuffle=True, random_state=self.random_state)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The least populated class")
            return list(skf.split(np.zeros(len(y)), y))

    def _embed_for_fit(self, X, y):
        """Embeddings of the training photos, or None when the image model cannot be used."""
        if self.image is None:
            return None
        images = self.image.embed(X)
        n_ok = int(images.ok.sum())
        classes_with_photos = np.unique(y[images.ok]).size
        if n_ok < self.min_images or classes_with_photos < 2:
            warnings.warn(f"image model left out: {n_ok} usable labelled photos in "
                          f"{classes_with_photos} categories (need {self.min_images} in 2+)", stacklevel=3)
            return None
        return images

    def _embed_unlabelled(self, unlabelled):
        """Unlabelled listings with a usable photo: (frame, embeddings), or None."""
        if unlabelled is None:
            return None
        U = as_listings(unlabelled)
        encoded = self.image.embed(U)
        if not encoded.ok.any():
            return None
        return U[encoded.ok].reset_index(drop=True), encoded.embeddings[encoded.ok]

    def _folds(self) -> int:
        return 3 if self.fusion_cv == "auto" else int(self.fusion_cv)

    def _fit_fusion(self, memory, code, X, y, images, p_text, extra, sure, labels, splits):
        """Out-of-fold image probabilities beside the text's on the listings with photos → a
        fuser (early fusion's fitted on all the listings' features, the other fusers on those
        out-of-fold probabilities); returns the chosen fusion's out-of-fold probabilities of the
        listings with photos."""
        ok = images.ok
        # Early fusion reads the text model's TF-IDF rows (an ensemble's first TF-IDF member's).
        with_early = self.fusion in ("early", "auto") and (
            hasattr(self.text_, "features_") or getattr(self.text_, "features_member_", None) is not None)
        p_image, p_early = remembered(memory, image_out_of_fold)(
            self.image, self.text_, X, y, images.embeddings, ok, with_early=with_early, extra=extra,
            sure=sure, labels=labels, splits=splits, classes=self.classes_,
            random_state=self.random_state, code=code)
        rows = np.flatnonzero(ok)
        chosen, self.fuser_, scores, accuracy, fused = remembered(memory, choose_fusion)(
            p_text[rows], p_image[rows], p_early[rows] if p_early is not None else None, y[rows],
            classes=self.classes_, requested=self.fusion, random_state=self.random_state, code=code)
        if chosen == "early":
            self.fuser_ = remembered(memory, fit_early)(
                self.text_, self.image_, X, y, images.embeddings, ok,
                random_state=self.random_state, code=code)
        self.fusion_ = {"method": chosen, "requested": self.fusion, "folds": len(splits),
                        "n_fused": int(ok.sum()), "oof_log_loss": scores, "oof_accuracy": accuracy,
                        "fuser": self.fuser_.describe()}
        return fused

    def _columns(self, model, proba: np.ndarray) -> np.ndarray:
        return place_columns(self.classes_, model, proba)

    # Predicting --------------------------------------------------------------------------------

    def predict_modalities(self, X) -> dict[str, np.ndarray | None]:
        """Per-modality and fused probabilities.

        Returns ``text``, ``image`` (None for a text-only model; rows without a usable photo hold
        the image model's class prior), ``has_image`` (bool mask), ``has_text`` and ``fused``
        (what :meth:`predict_proba` answers). A model with ``ocr_`` adds ``ocr_text`` (the words
        read on each photo, "" for none; the text model read them with the listing) and ``ocr``
        (the text model's answer for those words alone; uniform where none were read).
        """
        check_is_fitted(self, "text_")
        X = as_listings(X)
        ocr, words = getattr(self, "ocr_", None), {}
        if ocr is not None:
            texts = ocr_texts(X, ocr["engine"], cache=getattr(self, "ocr_cache_", True))
            X = with_ocr_words(X, texts)
            words = {"ocr_text": list(texts), "ocr": words_alone(self.text_, self.classes_, texts)}
        has_text = ((X["title"].str.strip() != "") | (X["description"].str.strip() != "")).to_numpy()
        p_text = self.text_.predict_proba(X)
        if getattr(self, "image_", None) is None:
            return {"text": p_text, "image": None, "has_image": np.zeros(len(X), bool),
                    "has_text": has_text, "fused": p_text, **words}
        images = self.image_.embed(X, warn=False)
        ok = images.ok
        p_image = self._columns(self.image_, self.image_.proba_from_embeddings(images.embeddings, ok))
        fused = p_text.copy()
        both = ok & has_text
        if both.any():
            Z = fusion_input(self.fuser_, probas=[p_text[both], p_image[both]], text_model=self.text_,
                             image_model=self.image_, X=X[both], images=images.subset(both))
            fused[both] = self._columns(self.fuser_, self.fuser_.predict_proba(Z))
        only_image = ok & ~has_text
        fused[only_image] = p_image[only_image]
        return {"text": p_text, "image": p_image, "has_image": ok, "has_text": has_text, "fused": fused,
                **words}

    def predict_proba(self, X) -> np.ndarray:
        return self.predict_modalities(X)["fused"]

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def describe(self, proba: np.ndarray, k: int = 3) -> list[list[dict]]:
        """Top-``k`` categories per row of ``proba``, each with code, name, parent, probability."""
        idx = top_k_indices(proba, k)
        out = []
        for row, cols in zip(proba, idx, strict=True):
            out.append([{"code": str(self.classes_[c]), "name": self.taxonomy_.name(self.classes_[c]),
                         "parent": self.taxonomy_.parent(self.classes_[c]),
                         "probability": float(row[c])} for c in cols])
        return out

    def predict_top_k(self, X, k: int = 3) -> list[list[dict]]:
        return self.describe(self.predict_proba(X), k)

    def predict_frame(self, X, k: int = 3, ids: Sequence[object] | None = None) -> pd.DataFrame:
        """Batch output: id, then code/name/probability for ranks 1..k, then ``needs_review``."""
        proba = self.predict_proba(X)
        idx = top_k_indices(proba, k)
        names = np.array([self.taxonomy_.name(c) for c in self.classes_], dtype=object)
        frame = pd.DataFrame({"id": list(ids) if ids is not None else np.arange(len(proba))})
        for r in range(idx.shape[1]):
            frame[f"code_{r + 1}"] = self.classes_[idx[:, r]]
            frame[f"name_{r + 1}"] = names[idx[:, r]]
            frame[f"probability_{r + 1}"] = np.round(proba[np.arange(len(proba)), idx[:, r]], 6)
        # Decided on the unrounded probability, exactly as for a single listing.
        frame["needs_review"] = proba[np.arange(len(proba)), idx[:, 0]] < self.threshold_
        return frame

    # Bundles -----------------------------------------------------------------------------------

    def save(self, path: str | Path, **manifest_extra) -> Path:
        from prodcat.model.bundle import save_bundle

        return save_bundle(self, path, **manifest_extra)

    @classmethod
    def load(cls, path: str | Path) -> Classifier:
        from prodcat.model.bundle import load_bundle

        model, _ = load_bundle(path)
        return model

    def __setstate__(self, state):
        super().__setstate__(_one_fuser(state))


def _one_fuser(state: dict) -> dict:
    """A classifier's state saved before every fuser read one ``X`` (it had an ``early_``
    attribute), as this version keeps it: the early-fusion head becomes ``fuser_`` without the
    text and image models it held (the classifier's own), and a late or stacked fuser learns that
    its blocks' columns are the classifier's classes."""
    if "ocr" not in state:
        state = {**state, "ocr": None}  # saved before the OCR channel
    if "early_" not in state:
        return state
    state = dict(state)
    early = state.pop("early_")
    if early is not None:
        for name in ("text_model_", "image_model_", "image_weight"):  # image_weight: always 1.0
            early.__dict__.pop(name, None)
        state["fuser_"] = early
    fuser = state.get("fuser_")
    if fuser is not None and not hasattr(fuser, "classes_"):
        fuser.__dict__.pop("n_classes_", None)
        fuser.classes = fuser.classes_ = np.asarray(state["classes_"])
        fuser.n_modalities = fuser.n_modalities_ = 2
        fuser.n_features_in_ = 2 * len(fuser.classes_)
    return state
