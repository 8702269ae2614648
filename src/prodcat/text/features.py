"""TF-IDF features over cleaned listing text: word 1–2-grams plus character 3–5-grams."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.utils.validation import check_is_fitted

from prodcat.text.charngrams import WordCharTfidf
from prodcat.text.cleaning import clean_text, frame_texts


class TfidfFeatures(TransformerMixin, BaseEstimator):
    """Catalog frame (``title``, ``description``) → sparse TF-IDF matrix.

    Blocks, stacked side by side:

    - ``word``: word n-grams of title + description, for exact product vocabulary;
    - ``char``: character n-grams within word boundaries, for misspellings, inflections, glued
      tokens and model numbers (``ps4``, ``x-box``), over the title and the first
      ``char_description_chars`` characters of the description (they are most of the matrix's
      non-zeros, so this bound sets training time and memory);
    - ``title``: word n-grams of the title alone (``title_ngrams``), because the title names the
      product while a long description dilutes it with shipping and care instructions.
    """

    def __init__(self, word_ngrams=(1, 2), char_ngrams=(3, 5), title_ngrams=(1, 2), min_df_word=1,
                 min_df_char=2, max_features_word=None, max_features_char=None,
                 max_description_chars=1000, char_description_chars=None, strip_accents=True,
                 sublinear_tf=True):
        self.word_ngrams = word_ngrams
        self.char_ngrams = char_ngrams
        self.title_ngrams = title_ngrams
        self.min_df_word = min_df_word
        self.min_df_char = min_df_char
        self.max_features_word = max_features_word
        self.max_features_char = max_features_char
        self.max_description_chars = max_description_chars
        self.char_description_chars = char_description_chars
        self.strip_accents = strip_accents
        self.sublinear_tf = sublinear_tf

    def _sources(self, X) -> dict[str, list[str]]:
        texts = frame_texts(X, self.max_description_chars, self.strip_accents)
        sources = {"text": texts, "chars": texts}
        if self.char_ngrams and self.char_description_chars is not None:
            sources["chars"] = frame_texts(X, self.char_description_chars, self.strip_accents)
        if self.title_ngrams:
            titles = X["title"] if hasattr(X, "columns") else np.asarray(X, dtype=object).ravel()
            sources["title"] = [clean_text(t, strip_accents=self.strip_accents) for t in titles]
        return sources

    def _blocks(self, n_docs: int) -> list[tuple[str, str, TransformerMixin]]:
        common = {"lowercase": False, "sublinear_tf": self.sublinear_tf, "dtype": np.float32}
        blocks = []
        if self.word_ngrams:
            blocks.append(("word", "text", TfidfVectorizer(
                analyzer="word", ngram_range=tuple(self.word_ngrams), token_pattern=r"(?u)\b\w+\b",
                min_df=min(self.min_df_word, n_docs), max_features=self.max_features_word, **common)))
        if self.char_ngrams:
            blocks.append(("char", "chars", WordCharTfidf(
                ngram_range=tuple(self.char_ngrams), min_df=min(self.min_df_char, n_docs),
                max_features=self.max_features_char, sublinear_tf=self.sublinear_tf, dtype=np.float32)))
        if self.title_ngrams:
            blocks.append(("title", "title", TfidfVectorizer(
                analyzer="word", ngram_range=tuple(self.title_ngrams), token_pattern=r"(?u)\b\w+\b",
                min_df=min(self.min_df_word, n_docs), **common)))
        if not blocks:
            raise ValueError("TfidfFeatures needs at least one of word_ngrams, char_ngrams, title_ngrams")
        return blocks

    def fit(self, X, y=None):
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        sources = self._sources(X)
        self.blocks_ = self._blocks(len(sources["text"]))
        mats = [vec.fit_transform(sources[src]) for _, src, vec in self.blocks_]
        return sp.hstack(mats, format="csr", dtype=np.float32)

    def transform(self, X):
        check_is_fitted(self, "blocks_")
        sources = self._sources(X)
        return sp.hstack([vec.transform(sources[src]) for _, src, vec in self.blocks_], format="csr",
                         dtype=np.float32)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "blocks_")
        return np.concatenate([[f"{name}__{f}" for f in vec.get_feature_names_out()]
                               for name, _, vec in self.blocks_]).astype(object)
