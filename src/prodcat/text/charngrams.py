"""Character n-grams within word boundaries, counted once per distinct word.

scikit-learn's ``TfidfVectorizer(analyzer="char_wb")`` slices every word of every document in
Python; on 85k listings that alone took most of a minute here. A ``char_wb`` n-gram never crosses
a word boundary, so a document's n-gram counts are the sum of its words' n-gram counts:
``counts = (documents × words) @ (words × n-grams)``. Words repeat a lot (a catalogue of 85k
listings has a few hundred thousand distinct words against tens of millions of word occurrences),
so slicing each distinct word once and letting a sparse product do the rest gives the same matrix,
column for column, several times faster.

A fitted transformer also remembers the columns of the words it has sliced (up to
:data:`REMEMBERED_WORDS` of them, forgotten all at once beyond): batches of one catalogue repeat
most of their words, and a batch's character n-grams then cost a lookup per distinct word
instead of a slice and a lookup per n-gram (about 0.04 ms less per listing, a tenth of the
text model's n-gram work). The memory is not part of the model: it is never saved.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.utils.validation import check_is_fitted

#: Distinct words whose columns a fitted :class:`WordCharTfidf` keeps between transforms
#: (about 300 bytes a word: 15 MB at most).
REMEMBERED_WORDS = 50_000


def split_words(doc: str) -> list[str]:
    """The words ``char_wb`` pads and slices: runs of non-whitespace."""
    return doc.split()


def word_char_ngrams(word: str, min_n: int, max_n: int) -> list[str]:
    """The ``char_wb`` n-grams of one word, in scikit-learn's order and multiplicity."""
    w = f" {word} "
    w_len = len(w)
    grams = []
    for n in range(min_n, max_n + 1):
        offset = 0
        grams.append(w[offset:offset + n])
        while offset + n < w_len:
            offset += 1
            grams.append(w[offset:offset + n])
        if offset == 0:  # the padded word is shorter than n: one n-gram, as scikit-learn does
            break
    return grams


def _count_matrix(indices: np.ndarray, indptr: np.ndarray, n_columns: int) -> sp.csr_matrix:
    """CSR counts from each row's column ids (repeats summed)."""
    m = sp.csr_matrix((np.ones(len(indices), dtype=np.int32), indices, indptr),
                      shape=(len(indptr) - 1, n_columns))
    m.sum_duplicates()
    return m


class WordCharTfidf(TransformerMixin, BaseEstimator):
    """Drop-in for ``TfidfVectorizer(analyzer="char_wb", lowercase=False, ...)`` on cleaned text."""

    def __init__(self, ngram_range=(3, 5), min_df=1, max_features=None, sublinear_tf=True,
                 dtype=np.float32):
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf
        self.dtype = dtype

    def _new_word_matrix(self, words, vocabulary: dict[str, int]) -> sp.csr_matrix:
        """(words × n-grams) counts while fitting: unseen n-grams are added to ``vocabulary``."""
        min_n, max_n = self.ngram_range
        indptr, indices = [0], []
        for word in words:
            for g in word_char_ngrams(word, min_n, max_n):
                j = vocabulary.get(g)
                if j is None:
                    j = vocabulary[g] = len(vocabulary)
                indices.append(j)
            indptr.append(len(indices))
        return _count_matrix(np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64),
                             len(vocabulary))

    def _known_word_matrix(self, words) -> sp.csr_matrix:
        """(words × n-grams) counts of a fitted transformer (n-grams outside its vocabulary
        dropped), through the remembered words' columns."""
        memory = self.__dict__.get("_word_columns")
        if memory is None or len(memory) > REMEMBERED_WORDS:
            memory = self._word_columns = {}
        min_n, max_n = self.ngram_range
        vocabulary = self.vocabulary_
        rows = []
        for word in words:
            columns = memory.get(word)
            if columns is None:
                columns = memory[word] = np.array(
                    [j for g in word_char_ngrams(word, min_n, max_n) if (j := vocabulary.get(g)) is not None],
                    dtype=np.int64)
            rows.append(columns)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)), out=indptr[1:])
        indices = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        return _count_matrix(indices, indptr, len(vocabulary))

    def _counts(self, docs, word_matrix, n_columns: int) -> sp.csr_matrix:
        """(documents × n-grams) counts: documents' words times ``word_matrix(words)``."""
        words = CountVectorizer(analyzer=split_words, dtype=np.int32)
        try:
            doc_words = words.fit_transform(docs)
        except ValueError:  # no words at all in this batch
            return sp.csr_matrix((len(docs), n_columns), dtype=np.int32)
        return (doc_words @ word_matrix(words.get_feature_names_out())).tocsr()

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_word_columns", None)  # a cache of this process, not part of the model
        return state

    def fit(self, raw_documents, y=None):
        self.fit_transform(raw_documents)
        return self

    def fit_transform(self, raw_documents, y=None):
        docs = list(raw_documents)
        vocabulary: dict[str, int] = {}
        self._word_columns = None  # columns change with the vocabulary
        counts = self._counts(docs, lambda words: self._new_word_matrix(words, vocabulary), 0)
        keep = np.ones(counts.shape[1], dtype=bool)
        if self.min_df > 1:
            keep &= np.bincount(counts.indices, minlength=counts.shape[1]) >= self.min_df
        if self.max_features is not None and keep.sum() > self.max_features:
            totals = np.asarray(counts.sum(axis=0)).ravel()
            totals[~keep] = -1
            keep = np.zeros_like(keep)
            keep[np.argsort(-totals, kind="stable")[: self.max_features]] = True
        # Alphabetical columns, as TfidfVectorizer has them, so the two are interchangeable.
        grams = np.array(list(vocabulary), dtype=object)
        kept = np.flatnonzero(keep)
        kept = kept[np.argsort(grams[kept], kind="stable")]
        if kept.size == 0:
            raise ValueError("no character n-grams left after min_df; lower min_df")
        self.vocabulary_ = {grams[j]: i for i, j in enumerate(kept)}
        counts = counts[:, kept]
        self._tfidf = TfidfTransformer(sublinear_tf=self.sublinear_tf)
        return self._tfidf.fit_transform(counts).astype(self.dtype)

    def transform(self, raw_documents):
        check_is_fitted(self, "vocabulary_")
        counts = self._counts(list(raw_documents), self._known_word_matrix, len(self.vocabulary_))
        return self._tfidf.transform(counts).astype(self.dtype)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "vocabulary_")
        names = np.empty(len(self.vocabulary_), dtype=object)
        for g, i in self.vocabulary_.items():
            names[i] = g
        return names
