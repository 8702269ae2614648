"""Text side: cleaning, TF-IDF features, classifier heads and the text model."""

from prodcat.text.cleaning import clean_text, listing_texts
from prodcat.text.features import TfidfFeatures
from prodcat.text.heads import HEADS, create_head, list_heads
from prodcat.text.model import TextClassifier

__all__ = ["HEADS", "TextClassifier", "TfidfFeatures", "clean_text", "create_head",
           "list_heads", "listing_texts"]
