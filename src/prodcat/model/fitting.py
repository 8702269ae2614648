"""The steps of a :class:`~prodcat.model.Classifier` fit, as functions of their inputs only.

Each step takes unfitted estimators and data, never a model fitted by another step, so that
:mod:`prodcat.model.fitcache` can key it by content and a re-run loads it instead of fitting.
``code`` (the :func:`~prodcat.model.fitcache.source_fingerprint`) is part of every key and is
otherwise unused; ``memory`` is never part of a key.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone
from tqdm.auto import tqdm

from prodcat.fusion.early import EarlyFusion, early_features
from prodcat.fusion.fusers import create_fuser, cross_val_fused, log_loss_of, probability_blocks
from prodcat.image.encoders import EncodedImages


def fit_text(estimator, X, y, code):
    """A clone of the text ``estimator`` fitted on ``X``, ``y``."""
    return clone(estimator).fit(X, y)


def fit_image_head(estimator, embeddings, ok, y, code):
    """A clone of the image ``estimator`` fitted on embeddings already computed."""
    return clone(estimator).fit_embeddings(embeddings, ok, y)


def place_columns(classes: np.ndarray, model, proba: np.ndarray) -> np.ndarray:
    """A model fitted on part of the data may know fewer classes than ``classes``: place its
    columns among them (zeros elsewhere)."""
    out = np.zeros((proba.shape[0], len(classes)))
    out[:, np.searchsorted(classes.astype(str), np.asarray(model.classes_).astype(str))] = proba
    return out


def pseudo_labels(text_model, U, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Unlabelled listings the text model is at least ``threshold`` sure of, and its answers."""
    proba = text_model.predict_proba(U)
    sure = proba.max(axis=1) >= threshold
    return sure, np.asarray(text_model.classes_).astype(str)[proba[sure].argmax(axis=1)]


def with_pseudo_labels(embeddings, ok, y, extra, sure, labels):
    """The image training set: labelled photos plus the confidently pseudo-labelled ones."""
    if extra is None or not sure.any():
        return embeddings, ok, y, 0
    u_emb = extra[1][sure]
    return (np.vstack([embeddings, u_emb]), np.concatenate([ok, np.ones(len(u_emb), bool)]),
            np.concatenate([y, labels]), int(sure.sum()))


def text_out_of_fold(text_model, text_estimator, X, y, *, splits, classes, code):
    """Every listing's text probabilities from a model that did not see it.

    A text model that keeps the out-of-fold probabilities of its own calibration
    (``oof_proba_``: :class:`~prodcat.text.model.TextClassifier`, the ensemble) gives them for
    free; any other estimator is fitted once more per fold of ``splits``.
    """
    oof = getattr(text_model, "oof_proba_", None)
    if oof is not None:
        return place_columns(classes, text_model, oof)
    p_text = np.zeros((len(y), len(classes)))
    for tr, te in tqdm(splits, desc="text folds", unit="fold", disable=len(y) < 5000):
        text = clone(text_estimator).fit(X.iloc[tr], y[tr])
        p_text[te] = place_columns(classes, text, text.predict_proba(X.iloc[te]))
    return p_text


def fusion_input(fuser, *, probas=None, text_model=None, image_model=None, X=None, images=None):
    """The one ``X`` a fuser reads, built the same way when it is fitted and when it predicts:
    early fusion the listings' :func:`~prodcat.fusion.early.early_features` (``text_model``,
    ``image_model``, listings ``X`` and their encoded ``images``), late and stacked fusion the
    modalities' probabilities side by side (``probas``: text, then image)."""
    if isinstance(fuser, EarlyFusion):
        return early_features(text_model, image_model, X, images)
    return probability_blocks(probas)


def image_out_of_fold(image_estimator, text_model, X, y, embeddings, ok, *, with_early, extra,
                      sure, labels, splits, classes, random_state, code):
    """Out-of-fold image (and early-fusion) probabilities of the listings with a photo.

    Only image heads (and early-fusion heads) are fitted per fold: the text model is fitted
    once, and early fusion reads its features, which no label shaped. Unlabelled photos join
    every fold's training set under the text model's pseudo-labels (``sure``, ``labels``).
    Rows without a photo stay zero: only listings with both modalities are fused.
    """
    images = EncodedImages(embeddings, ok, [None] * len(ok))
    p_image = np.zeros((len(y), len(classes)))
    p_early = np.zeros_like(p_image) if with_early else None
    for tr, te in tqdm(splits, desc="fusion folds", unit="fold", disable=len(y) < 5000):
        te = te[ok[te]]
        if te.size == 0:
            continue
        image = clone(image_estimator).fit_embeddings(
            *with_pseudo_labels(embeddings[tr], ok[tr], y[tr], extra, sure, labels)[:3])
        p_image[te] = place_columns(classes, image, image.proba_from_embeddings(embeddings[te], ok[te]))
        if p_early is not None:
            early = EarlyFusion(random_state=random_state)
            early.fit(fusion_input(early, text_model=text_model, image_model=image, X=X.iloc[tr],
                                   images=images.subset(tr)), y[tr])
            Z = fusion_input(early, text_model=text_model, image_model=image, X=X.iloc[te],
                             images=images.subset(te))
            p_early[te] = place_columns(classes, early, early.predict_proba(Z))
    return p_image, p_early


def fit_early(text_model, image_model, X, y, embeddings, ok, *, random_state, code):
    """Early fusion fitted on the features of the fitted text and image models (which it does
    not keep: the classifier holds each model once)."""
    early = EarlyFusion(random_state=random_state)
    return early.fit(fusion_input(early, text_model=text_model, image_model=image_model, X=X,
                                  images=EncodedImages(embeddings, ok, [None] * len(ok))), y)


def choose_fusion(oof_text, oof_image, oof_early, y, *, classes, requested, random_state, code):
    """Score every candidate fusion on out-of-fold probabilities of the listings with a photo
    (labels ``y`` among ``classes``, the base models' column order); fit the best.

    Returns ``(chosen name, fitted fuser or None for early fusion, log losses, accuracies,
    the chosen fusion's out-of-fold probabilities)``, the scores including text and image alone
    for comparison. Late and stacked fusion are judged by :func:`cross_val_fused`; early
    fusion's out-of-fold probabilities come from :func:`image_out_of_fold`.
    """
    y_idx = np.searchsorted(np.asarray(classes).astype(str), y)
    candidates = {}
    for name in ("late", "stack"):
        if requested in (name, "auto"):
            fuser = create_fuser(name, classes=classes)
            Z = fusion_input(fuser, probas=[oof_text, oof_image])
            candidates[name] = (fuser, Z, cross_val_fused(fuser, Z, y, random_state))
    if oof_early is not None:
        candidates["early"] = (None, None, oof_early)
    oof_by_name = {**{name: p for name, (_, _, p) in candidates.items()},
                   "text": oof_text, "image": oof_image}
    scores = {name: log_loss_of(p, y_idx) for name, p in oof_by_name.items()}
    accuracy = {name: float((p.argmax(axis=1) == y_idx).mean()) for name, p in oof_by_name.items()}
    chosen = min(candidates, key=scores.get)
    fuser, Z, _ = candidates[chosen]
    return (chosen, (fuser.fit(Z, y) if fuser is not None else None), scores, accuracy,
            oof_by_name[chosen])
