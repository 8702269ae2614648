"""Fusion of per-modality probabilities: late (weighted log-linear pool), stacking, early.

Every fuser is a scikit-learn classifier over one ``X``: late and stacked fusion read the
modalities' probabilities side by side (:func:`probability_blocks`), early fusion the listings'
text and image features (:func:`early_features`).
"""

from prodcat.fusion.fusers import (
    FUSERS,
    LateFusion,
    StackedFusion,
    create_fuser,
    cross_val_fused,
    probability_blocks,
)

__all__ = ["FUSERS", "LateFusion", "StackedFusion", "create_fuser", "cross_val_fused",
           "probability_blocks"]
