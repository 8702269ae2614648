"""Advice to sellers: the words that would make an unsure listing's category clear.

When the model hesitates between a few categories, the seller can settle it by naming the
product better (the seed reports' "recommandations aux vendeurs"). The words to suggest are the
strongest words of each top candidate that the listing lacks, and that speak for that candidate
more than for its rivals.

A word's strength comes from the linear text model's coefficients: it is the score the word
alone, as a one-word title, adds to each class — through every sparse block of the features
(word n-grams, its character n-grams, the title block), in the head's unit (the Platt sigmoid's
log-odds for a calibrated head; summed with the members' weights for an ensemble of such heads).
A sentence embedding's share is left out: it belongs to the listing as a whole, not to a word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from prodcat.explain.text import linear_head
from prodcat.text.cleaning import clean_text

#: Words too common to be advice, whatever weight a small training set gave them.
_STOP = """
a an and are as at be by for from has in is it of on or the to with your you our new set pack
au aux avec ce ces dans de des du en et il la le les leur lot ou par pas pour plus sa se ses son
sur un une vos votre nos notre tres neuf neuve
"""
STOP_WORDS = frozenset(_STOP.split())
_WORD = re.compile(r"(?u)\b\w+\b")


def _usable(word: str) -> bool:
    return len(word) >= 3 and not word.isdigit() and any(c.isalpha() for c in word) and word not in STOP_WORDS


def _members(text_model) -> list[tuple[Any, float]]:
    """The linear TF-IDF models behind ``text_model`` with their weights: itself, or an
    ensemble's TF-IDF members (members on an embedding alone have no words to suggest)."""
    members = getattr(text_model, "members_", None)
    if members is None:
        return [(text_model, 1.0)] if hasattr(text_model, "features_") else []
    weights = getattr(text_model, "weights_", {})
    return [(m, float(weights.get(name, 1.0))) for name, m in members.items()
            if hasattr(m, "features_") and float(weights.get(name, 1.0)) > 0]


def _sparse_rows(features, words: list[str]) -> sp.csr_matrix:
    """Each word as a one-word listing (its title) through the features' sparse blocks."""
    import pandas as pd

    X = pd.DataFrame({"title": words, "description": [""] * len(words)})
    sources = features._sources(X)
    return sp.hstack([vec.transform(sources[src]) for _, src, vec in features.blocks_], format="csr")


@dataclass
class WordAdvisor:
    """Per word, what it adds to each class's score; build with :meth:`from_model`."""

    words: np.ndarray  # [n_words] cleaned words, as the model reads them
    classes: np.ndarray  # [n_classes] class codes (str)
    weights: np.ndarray  # [n_words, n_classes]
    unit: str
    strip_accents: bool = True

    @classmethod
    def from_model(cls, model, per_class: int = 300) -> WordAdvisor | None:
        """From a Classifier (its text side) or a text model; None when no part of it is a
        linear model over words. ``per_class``: how many of each class's strongest words (by
        their word-block coefficient) are weighed in full, so a large vocabulary stays cheap."""
        text_model = getattr(model, "text_", model)
        if text_model is None:
            return None
        classes = np.asarray(text_model.classes_).astype(str)
        parts = []
        units = set()
        strip_accents = True
        for member, weight in _members(text_model):
            head = linear_head(member)
            if head is None:
                continue
            features = member.features_
            strip_accents = features.strip_accents
            member_classes = np.asarray(member.classes_).astype(str)
            candidates: set[str] = set()
            offset = 0
            for _, _, vec in features.blocks_:
                vocab = vec.vocabulary_
                width = len(vocab)
                if getattr(vec, "analyzer", None) == "word":
                    terms = np.array(list(vocab), dtype=object)
                    index = np.fromiter(vocab.values(), dtype=np.int64, count=width)
                    keep = np.array([" " not in t and _usable(t) for t in terms], dtype=bool)
                    terms, index = terms[keep], index[keep]
                    if len(terms):
                        block = head.coef[:, offset + index]  # [classes × terms]
                        top = np.argsort(-block, axis=1)[:, :per_class]
                        for row in range(block.shape[0]):
                            candidates.update(terms[top[row]][block[row, top[row]] > 0])
                offset += width
            if not candidates:
                continue
            words = sorted(candidates)
            X = _sparse_rows(features, words)
            scores = np.asarray(X @ head.coef[:, :X.shape[1]].T)  # [words × member classes]
            if head.platt is not None:
                scores = scores * head.platt[0][None, :]
            units.add(head.unit)
            full = np.zeros((len(words), len(classes)))
            cols = np.searchsorted(classes, member_classes)
            full[:, cols] = scores
            parts.append((words, weight * full))
        if not parts:
            return None
        vocabulary = sorted({w for words, _ in parts for w in words})
        at = {w: i for i, w in enumerate(vocabulary)}
        weights = np.zeros((len(vocabulary), len(classes)))
        for words, w in parts:
            weights[[at[x] for x in words]] += w
        unit = units.pop() if len(units) == 1 and len(parts) == 1 else "weighted log-odds of the members"
        return cls(np.array(vocabulary, dtype=object), classes, weights, unit, strip_accents)

    def listing_words(self, title: str, description: str = "") -> set[str]:
        """The words of a listing, cleaned as the model reads them."""
        text = clean_text(f"{title or ''} {description or ''}", strip_accents=self.strip_accents)
        return set(_WORD.findall(text))

    def class_words(self, code: str, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` words weighing most for the class ``code``."""
        col = self._column(code)
        if col is None:
            return []
        order = np.argsort(-self.weights[:, col], kind="stable")[:n]
        return [(str(self.words[i]), float(self.weights[i, col])) for i in order if self.weights[i, col] > 0]

    def _column(self, code: str) -> int | None:
        hit = np.flatnonzero(self.classes == str(code))
        return int(hit[0]) if len(hit) else None

    def suggest(self, title: str, description: str, codes: list[str], n: int = 6) -> list[dict[str, Any]]:
        """For each class of ``codes`` (the top candidates, best first): up to ``n`` words the
        listing lacks that speak for it more than for any other of ``codes``, best first.

        Each word comes with its ``weight`` for the class and its ``margin`` over the strongest
        rival among ``codes`` (in :attr:`unit`). Classes the text model does not know get no words.
        """
        have = self.listing_words(title, description)
        cols = [self._column(c) for c in codes]
        known = [c for c in cols if c is not None]
        lacking = np.array([w not in have for w in self.words], dtype=bool)
        out = []
        for code, col in zip(codes, cols, strict=True):
            if col is None:
                out.append({"code": str(code), "words": []})
                continue
            own = self.weights[:, col]
            rivals = [c for c in known if c != col]
            margin = own - self.weights[:, rivals].max(axis=1) if rivals else own
            ok = np.flatnonzero(lacking & (own > 0) & (margin > 0))
            best = ok[np.argsort(-margin[ok], kind="stable")[:n]]
            out.append({"code": str(code), "words": [
                {"word": str(self.words[i]), "weight": round(float(own[i]), 4),
                 "margin": round(float(margin[i]), 4)} for i in best]})
        return out


def seller_advice(advisor: WordAdvisor | None, title: str, description: str, top_k: list[dict],
                  n: int = 5) -> list[dict[str, Any]]:
    """What the seller page shows for an unsure answer: per top candidate (``top_k`` entries
    with ``code``, ``name``), the words to add; candidates without any are left out."""
    if advisor is None or not top_k:
        return []
    tips = advisor.suggest(title, description, [str(c["code"]) for c in top_k], n)
    return [{**{k: c.get(k) for k in ("code", "name", "parent", "probability")}, "words": t["words"]}
            for c, t in zip(top_k, tips, strict=True) if t["words"]]
