"""Fusion of per-modality probabilities: late (weighted log-linear pool), stacking, early."""

from prodcat.fusion.fusers import FUSERS, LateFusion, StackedFusion, create_fuser

__all__ = ["FUSERS", "LateFusion", "StackedFusion", "create_fuser"]
