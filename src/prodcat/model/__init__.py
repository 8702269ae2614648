"""The Classifier and its bundle."""

from prodcat.model.bundle import load_bundle, read_manifest, save_bundle
from prodcat.model.classifier import Classifier, as_listings, top_k_indices

__all__ = ["Classifier", "as_listings", "load_bundle", "read_manifest", "save_bundle", "top_k_indices"]
