"""Text side: cleaning, TF-IDF features, sentence encoders, classifier heads and the text model."""

from prodcat.text.cleaning import clean_text, listing_texts
from prodcat.text.encoders import (
    TEXT_ENCODERS,
    SentenceEncoder,
    TextEncoderError,
    create_text_encoder,
    list_text_encoders,
)
from prodcat.text.features import TfidfFeatures
from prodcat.text.heads import HEADS, create_head, list_heads
from prodcat.text.model import TextClassifier

__all__ = ["HEADS", "TEXT_ENCODERS", "SentenceEncoder", "TextClassifier", "TextEncoderError",
           "TfidfFeatures", "clean_text", "create_head", "create_text_encoder", "list_heads",
           "list_text_encoders", "listing_texts"]
