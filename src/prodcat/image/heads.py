"""Classifier heads over image embeddings, by name: ``create_image_head("logistic", C=0.1)``.

Every head here gives calibrated ``predict_proba``: the image probabilities are fused with the
text model's and feed the automation threshold. Logistic regression is calibrated by its loss;
the MLP, which early stopping leaves over-confident, is calibrated by cross-validation (Platt
scaling, as the text side does).
"""

from __future__ import annotations

from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from prodcat.heads import HeadRegistry

IMAGE_HEADS = HeadRegistry("image head")
register_image_head = IMAGE_HEADS.register


@register_image_head("logistic", needs_calibration=False,
                     description="multinomial logistic regression on standardised embeddings (default)")
def _logistic(C=1.0, class_weight="balanced", random_state=0):
    # On standardised Lite0 embeddings of the Flipkart sample, 5-fold CV accuracy is flat for
    # C from 0.03 to 1 (0.849-0.853, mean of 3 splits); 1.0 converges fastest. On the Rakuten
    # sample's photos (Lite1, nested CV, 3 shuffles) C = 0.1 or 0.03 left the fused answer
    # +1.80 points over the text alone against +1.93 with C = 1 (quality_rakuten_image_C0.1.md).
    return LogisticRegression(C=C, class_weight=class_weight, max_iter=3000, random_state=random_state)


@register_image_head("mlp", needs_calibration=True,
                     description="one-hidden-layer MLP with early stopping, Platt-calibrated")
def _mlp(C=None, random_state=0, hidden_layer_sizes=(256,)):
    # C, when given, is the inverse L2 strength as for the linear heads (alpha = 1 / C).
    # MLPClassifier has no class weights: the registry keeps class_weight from it.
    alpha = 1e-2 if C is None else 1.0 / C
    return MLPClassifier(hidden_layer_sizes=hidden_layer_sizes, alpha=alpha, early_stopping=True,
                         validation_fraction=0.15, n_iter_no_change=10, max_iter=300,
                         random_state=random_state)


def list_image_heads() -> list[str]:
    return list(IMAGE_HEADS)


def create_image_head(name: str, *, calibration: str = "auto", calibration_cv: int = 3,
                      n_jobs: int | None = None, **params):
    """Build an image head by name (see :meth:`HeadRegistry.create`); ``n_jobs`` is taken for
    symmetry with the text heads, and reaches the heads that declare it (none today)."""
    return IMAGE_HEADS.create(name, calibration=calibration, calibration_cv=calibration_cv,
                              n_jobs=n_jobs, **params)
