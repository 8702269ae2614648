"""Explanations of prodcat's answers: which words (exact for linear heads, LIME for any), which
photo regions (Grad-CAM or occlusion), and how much each modality moved the probabilities."""

from prodcat.explain.explanation import Explanation, explain_listing
from prodcat.explain.image import (
    ImageExplanation,
    deletion_check,
    explain_image,
    explain_image_targets,
    gradcam_available,
    prepare_image_explainer,
)
from prodcat.explain.modality import modality_contributions
from prodcat.explain.text import TextExplanation, explain_text, linear_head

__all__ = ["Explanation", "ImageExplanation", "TextExplanation", "deletion_check", "explain_image",
           "explain_image_targets", "explain_listing", "explain_text", "gradcam_available", "linear_head",
           "modality_contributions", "prepare_image_explainer"]
