"""Word 1–2-gram TF-IDF of new listings, counted with less Python per word than scikit-learn.

``TfidfVectorizer.transform`` builds every document's unigram and bigram strings, then counts
them in a dictionary per document before the sparse matrix is assembled. Here each document's
known n-grams become column ids in one list comprehension and the sparse matrix sums the
repeats: the same matrix (``tests/test_text_fast_paths.py``), about a quarter less time, which is
a few percent of a batch prediction. Only the vectorizers prodcat fits (word analyzer, no
lowercasing, preprocessing, stop words or custom tokenizer, n-grams up to 2) take this path;
any other goes through scikit-learn's own ``transform``.
"""

from __future__ import annotations

import re

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer


def _takes_fast_path(vectorizer: object) -> bool:
    return (type(vectorizer) is TfidfVectorizer and vectorizer.analyzer == "word"
            and vectorizer.input == "content" and not vectorizer.lowercase
            and vectorizer.preprocessor is None and vectorizer.tokenizer is None
            and vectorizer.strip_accents is None and vectorizer.stop_words is None
            and not vectorizer.binary and tuple(vectorizer.ngram_range) in ((1, 1), (1, 2))
            and re.compile(vectorizer.token_pattern).groups == 0
            and hasattr(vectorizer, "_tfidf") and hasattr(vectorizer, "vocabulary_"))


def transform_block(vectorizer, docs: list[str]) -> sp.csr_matrix:
    """``vectorizer.transform(docs)``, by the fast path when ``vectorizer`` allows it."""
    if not _takes_fast_path(vectorizer) or not all(isinstance(d, str) for d in docs):
        return vectorizer.transform(docs)
    findall = re.compile(vectorizer.token_pattern).findall
    column = vectorizer.vocabulary_.get
    bigrams = vectorizer.ngram_range[1] == 2
    indptr, indices = [0], []
    for doc in docs:
        tokens = findall(doc)
        indices += [j for t in tokens if (j := column(t)) is not None]
        if bigrams:
            pairs = zip(tokens, tokens[1:], strict=False)  # each token and the next
            indices += [j for a, b in pairs if (j := column(f"{a} {b}")) is not None]
        indptr.append(len(indices))
    counts = sp.csr_matrix((np.ones(len(indices), dtype=vectorizer.dtype),
                            np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64)),
                           shape=(len(docs), len(vectorizer.vocabulary_)))
    counts.sum_duplicates()
    return vectorizer._tfidf.transform(counts, copy=False)
