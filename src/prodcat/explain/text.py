"""Which words made the text model choose a category.

For a linear head (the default linear SVM, logistic regression, SGD) the class score is a sum
over features, ``score_c = b_c + Σ_j z_j · w_cj``, so each feature's share is exact. Features are
folded back onto the words of the listing they came from:

- a word or title n-gram is shared equally by its words (and equally by its occurrences);
- a character n-gram is shared by the words it was cut from, in proportion to how many times
  each word contains it;
- a sentence embedding (``dense``) belongs to the listing as a whole and is reported apart;
- a model that reads the photo's words (``Classifier(ocr=...)``) reads them at the head of the
  description: they are explained like the listing's words and marked as the photo's
  (:mod:`prodcat.explain.photo_words`: ``field`` ``"photo"``, ``source`` ``"photo"``).

So the word contributions, the embedding's share and the bias add up to the class score
exactly (:attr:`TextExplanation.score`, tested against the head's ``decision_function``). With a
Platt-calibrated head the unit is the log-odds of that class's sigmoid (``-a · score - b``);
otherwise it is the head's own decision score. Other heads are explained by LIME
(:func:`prodcat.explain.lime.lime_weights`), whose weights are a local linear approximation and say so.
"""

from __future__ import annotations

import bisect
import re
import string
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV

from prodcat.errors import ConfigError
from prodcat.text.charngrams import WordCharTfidf, word_char_ngrams
from prodcat.text.cleaning import clean_text

_WORD = re.compile(r"(?u)\b\w+\b")
_PUNCTUATION = string.punctuation + "«»“”‘’…–—·•"


@dataclass
class Token:
    """One whitespace-separated word of the cleaned listing text."""

    text: str
    #: "title" or "description"; "photo" for a word read on the photo, "marker" for the marker
    #: the model puts around those words (:mod:`prodcat.explain.photo_words`).
    field: str
    position: int  # index among the words of its field
    #: ``(start, end)`` of the original word in the field's raw text (a photo word: in the words
    #: read on the photo), when cleaning kept the words aligned (HTML tags spanning spaces do
    #: not); None otherwise.
    span: tuple[int, int] | None = None

    @property
    def source(self) -> str:
        """Where the word comes from: ``"listing"`` (what the seller typed) or ``"photo"``."""
        return "photo" if self.field in ("photo", "marker") else "listing"

    @property
    def word(self) -> str:
        """The word without the punctuation glued to it (``souple,`` → ``souple``)."""
        return self.text.strip(_PUNCTUATION) or self.text


@dataclass
class LinearHead:
    """The linear part of a text head, in the text model's class order."""

    coef: np.ndarray  # [n_model_classes, n_features], rows in the text model's class order
    intercept: np.ndarray
    #: Per class ``(scale, offset)`` turning a score into the calibrated sigmoid's log-odds
    #: (``scale · score + offset``); None when the unit is the raw decision score.
    platt: tuple[np.ndarray, np.ndarray] | None
    unit: str


def linear_head(text_model) -> LinearHead | None:
    """The coefficients behind ``text_model``'s answers, or None when its head is not linear."""
    sig = getattr(text_model, "sigmoids_", None)
    n = len(text_model.classes_)
    if sig is not None:
        estimator, columns, a, b = sig
        coef, intercept = _rows(estimator, n, columns)
        scale = np.zeros(n)
        offset = np.zeros(n)
        scale[columns], offset[columns] = -a, -b
        return LinearHead(coef, intercept, (scale, offset), "log-odds")
    head = text_model.head_
    if isinstance(head, CalibratedClassifierCV):
        if head.ensemble:
            return None
        head = head.calibrated_classifiers_[0].estimator
        unit = "decision score"
    else:
        unit = "logit" if hasattr(head, "predict_log_proba") else "decision score"
    if not hasattr(head, "coef_"):
        return None
    columns = np.searchsorted(text_model.classes_, head.classes_)
    coef, intercept = _rows(head, n, columns)
    return LinearHead(coef, intercept, None, unit)


def _rows(estimator, n_classes: int, columns: np.ndarray):
    coef = np.asarray(estimator.coef_)
    intercept = np.asarray(estimator.intercept_, dtype=np.float64)
    if coef.shape[0] == 1 and len(estimator.classes_) == 2:  # binary: one row scores class 1
        coef = np.vstack([-coef[0], coef[0]])
        intercept = np.array([-intercept[0], intercept[0]])
        columns = np.searchsorted(np.asarray(estimator.classes_), estimator.classes_)
    full = np.zeros((n_classes, coef.shape[1]), dtype=np.float64)
    full_b = np.zeros(n_classes)
    full[columns], full_b[columns] = coef, intercept
    return full, full_b


@dataclass
class ClassWords:
    """Contributions to one class: per word occurrence, the listing-level embedding, the bias."""

    code: str
    probability: float
    tokens: np.ndarray  # one value per Token
    dense: float
    bias: float

    @property
    def score(self) -> float:
        """Bias + embedding + every word: the class's score in the explanation's unit."""
        return float(self.bias + self.dense + self.tokens.sum())


@dataclass
class TextExplanation:
    tokens: list[Token]
    classes: list[ClassWords]
    unit: str
    method: str  # "linear" (exact) or "lime" (local approximation)
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def word_weights(self, k: int = 0, source: str | None = None) -> dict[str, float]:
        """Distinct words → summed contribution to class ``k`` (of :attr:`classes`); ``source``
        ``"listing"`` or ``"photo"``: that source's words only. The marker around the photo's
        words is no word of either (its weight is in :meth:`source_weights`)."""
        out: dict[str, float] = defaultdict(float)
        for tok, w in zip(self.tokens, self.classes[k].tokens, strict=True):
            if tok.field != "marker" and source in (None, tok.source):
                out[tok.word] += float(w)
        return dict(out)

    def source_weights(self, k: int = 0) -> dict[str, float]:
        """Class ``k``'s word contributions summed by source (``listing``, ``photo``, the marker
        included): with ``dense`` and ``bias`` they add up to :attr:`ClassWords.score`."""
        out = {"listing": 0.0, "photo": 0.0}
        for tok, w in zip(self.tokens, self.classes[k].tokens, strict=True):
            out[tok.source] += float(w)
        return out

    def top_words(self, k: int = 0, n: int = 10, sign: int = 0,
                  source: str | None = None) -> list[tuple[str, float]]:
        """The ``n`` words weighing most for class ``k``: ``sign`` +1 for, -1 against, 0 either;
        ``source`` as in :meth:`word_weights`."""
        return [(w, v) for w, v, _ in self._ranked(k, n, sign, [source])]

    def top_words_by_source(self, k: int = 0, n: int = 10, sign: int = 0) -> list[tuple[str, float, str]]:
        """Like :meth:`top_words`, a word read on the photo ranked apart from the same word in
        the listing: ``(word, weight, source)``."""
        return self._ranked(k, n, sign, ["listing", "photo"])

    def _ranked(self, k: int, n: int, sign: int, sources: list[str | None]) -> list[tuple[str, float, str]]:
        items = [(w, v, src or "listing") for src in sources for w, v in self.word_weights(k, src).items()
                 if v * sign >= 0 and v != 0]
        key = (lambda x: -x[1]) if sign > 0 else (lambda x: x[1]) if sign < 0 else (lambda x: -abs(x[1]))
        return sorted(items, key=key)[:n]

    def to_dict(self, n_words: int = 10, decimals: int = 4) -> dict[str, Any]:
        r = lambda v: round(float(v), decimals)  # noqa: E731
        return {
            "method": self.method, "unit": self.unit, "seconds": r(self.seconds),
            "tokens": [{"text": t.text, "field": t.field, "source": t.source, "position": t.position,
                        "span": list(t.span) if t.span else None} for t in self.tokens],
            "classes": [{
                "code": c.code, "probability": r(c.probability), "bias": r(c.bias),
                "dense": r(c.dense), "score": r(c.score),
                "sources": {k: r(v) for k, v in self.source_weights(i).items()},
                "token_weights": [r(v) for v in c.tokens],
                "top_words": [{"word": w, "weight": r(v), "source": src}
                              for w, v, src in self.top_words_by_source(i, n_words)],
            } for i, c in enumerate(self.classes)],
            **({"details": self.details} if self.details else {}),
        }


# --- the listing's words -------------------------------------------------------------------------


def listing_without(tokens: list[Token], words: set[str] | frozenset[str]) -> dict[str, str]:
    """The listing as the model reads it (cleaned words) with every occurrence of ``words``
    (:attr:`Token.word` forms) removed: what deletion tests of faithfulness classify. The
    photo's words (a deleted word is deleted there too) and their marker stay at the head of
    the description, where the model reads them."""
    kept = [t for t in tokens if t.word not in words or t.field == "marker"]
    return {"title": " ".join(t.text for t in kept if t.field == "title"),
            "description": " ".join(t.text for t in kept if t.field != "title")}


def listing_tokens(title: str, description: str, features) -> list[Token]:
    """The words the features saw, in order: the title's, then the kept description's."""
    title_words = clean_text(title, strip_accents=features.strip_accents).split()
    desc = clean_text(description, strip_accents=features.strip_accents)
    # The longest description any block reads; the others read a prefix of the same words.
    limits = [features.max_description_chars]
    if features.char_ngrams and features.char_description_chars is not None:
        limits.append(features.char_description_chars)
    if None not in limits:
        desc = desc[:max(limits)]
    tokens = [Token(w, "title", i) for i, w in enumerate(title_words)]
    tokens += [Token(w, "description", i) for i, w in enumerate(desc.split())]
    _attach_spans(tokens, "title", title, features.strip_accents)
    _attach_spans(tokens, "description", description, features.strip_accents)
    return tokens


def _attach_spans(tokens: list[Token], field_name: str, raw: str, strip_accents: bool) -> None:
    """Where each cleaned word sits in the raw field, when cleaning word by word agrees."""
    mine = [t for t in tokens if t.field == field_name]
    if not mine or not raw:
        return
    pieces = [(w, (m.start(), m.end())) for m in re.finditer(r"\S+", raw)
              for w in clean_text(m.group(), strip_accents=strip_accents).split()]
    if [w for w, _ in pieces[:len(mine)]] != [t.text for t in mine]:
        return  # tags or entities spanning spaces: no reliable spans
    for tok, (_, span) in zip(mine, pieces, strict=False):
        tok.span = span


# --- exact contributions of a linear head --------------------------------------------------------


def _word_ngram_occurrences(doc: str, vocabulary: dict[str, int], ngram_range, token_of_char) -> dict:
    """Feature index → [(token index, share)] for the word n-grams of ``doc``."""
    words = [(m.group(), token_of_char(m.start())) for m in _WORD.finditer(doc)]
    occ: dict[int, list[tuple[int, float]]] = defaultdict(list)
    lo, hi = ngram_range
    for n in range(lo, hi + 1):
        for i in range(len(words) - n + 1):
            j = vocabulary.get(" ".join(w for w, _ in words[i:i + n]))
            if j is not None:
                occ[j].extend((t, 1.0 / n) for _, t in words[i:i + n])
    return occ


def _char_ngram_occurrences(doc: str, vectorizer: WordCharTfidf) -> dict:
    """Feature index → [(token index, share)] for the character n-grams of ``doc``'s words."""
    occ: dict[int, list[tuple[int, float]]] = defaultdict(list)
    lo, hi = vectorizer.ngram_range
    for t, word in enumerate(doc.split()):
        for g in word_char_ngrams(word, lo, hi):
            j = vectorizer.vocabulary_.get(g)
            if j is not None:
                occ[j].append((t, 1.0))
    return occ


def _token_locator(doc: str, first_token: int = 0):
    starts = [m.start() for m in re.finditer(r"\S+", doc)]
    return lambda char: first_token + bisect.bisect_right(starts, char) - 1


def linear_contributions(text_model, listing: dict, targets: list[int],
                         head: LinearHead | None = None) -> tuple[list[Token], np.ndarray, np.ndarray, np.ndarray]:
    """Exact per-word contributions of ``listing``'s words to the scores of classes ``targets``.

    Returns ``(tokens, contributions [targets × tokens], dense [targets], bias [targets])`` in the
    head's score unit (multiply by the Platt scale for log-odds).
    """
    import pandas as pd

    head = head or linear_head(text_model)
    if head is None:
        raise ConfigError("this text head is not linear: use LIME (method='lime')")
    features = text_model.features_
    title, description = str(listing.get("title") or ""), str(listing.get("description") or "")
    X = pd.DataFrame({"title": [title], "description": [description]})
    sources = {k: v[0] for k, v in features._sources(X).items()}
    tokens = listing_tokens(title, description, features)
    contrib = np.zeros((len(targets), len(tokens)))
    coef = head.coef[targets]
    offset = 0
    for _, source, vec in features.blocks_:
        doc = sources[source]
        z = vec.transform([doc]).tocsr()
        width = len(vec.vocabulary_)
        if z.nnz:
            if isinstance(vec, WordCharTfidf):
                occ = _char_ngram_occurrences(doc, vec)
            else:
                occ = _word_ngram_occurrences(doc, vec.vocabulary_, vec.ngram_range, _token_locator(doc))
            # Every source starts with the title, so a word's index in any of them is its index
            # in ``tokens``.
            for j, value in zip(z.indices, z.data, strict=True):
                shares = occ[int(j)]
                total = sum(s for _, s in shares)
                c = value * coef[:, offset + j]
                for t, s in shares:
                    contrib[:, t] += c * (s / total)
        offset += width
    dense = np.zeros(len(targets))
    if getattr(features, "dense_encoder_", None) is not None:
        block = features._dense_block(X, fitting=False).toarray()[0]
        dense = coef[:, offset:offset + block.size] @ block
    return tokens, contrib, dense, head.intercept[targets].copy()


def explain_text(model, listing: dict, k: int = 3, method: str = "auto", proba: np.ndarray | None = None,
                 lime_samples: int = 500, seed: int = 0, targets: list[str] | None = None,
                 ocr_text: str | None = None) -> TextExplanation:
    """Why the text model gives one ``listing`` its top-``k`` classes (or the class codes
    ``targets``, e.g. the fused model's answer) the probabilities it does.

    ``model`` is a Classifier (its text model is explained) or a TextClassifier. ``method``:
    ``"linear"`` (exact, linear heads), ``"lime"`` (any head; ``lime_samples`` perturbed copies),
    ``"auto"`` (linear when possible). ``proba``: the text probabilities if already computed.
    ``ocr_text``: for a Classifier that reads the photo's words, those words (None: read with its
    engine); they are explained with the listing's and marked as the photo's.
    """
    from prodcat.explain.photo_words import listing_ocr_text, mark_photo_tokens, with_photo_words

    if ocr_text is None:
        ocr_text = listing_ocr_text(model, listing)
    if not ocr_text:
        return _explain_words(model, listing, k, method, proba, lime_samples, seed, targets)
    explanation = _explain_words(model, with_photo_words(listing, ocr_text), k, method, proba,
                                 lime_samples, seed, targets)
    features = _token_features(getattr(model, "text_", model))
    if not mark_photo_tokens(explanation.tokens, ocr_text, str(listing.get("description") or ""),
                             features.strip_accents):
        explanation.details["photo_words"] = "not told apart from the description's"
    return explanation


def _explain_words(model, listing: dict, k: int, method: str, proba: np.ndarray | None,
                   lime_samples: int, seed: int, targets: list[str] | None) -> TextExplanation:
    import pandas as pd

    text_model = getattr(model, "text_", model)
    started = time.perf_counter()
    if proba is None:
        X = pd.DataFrame({"title": [listing.get("title") or ""],
                          "description": [listing.get("description") or ""]})
        proba = text_model.predict_proba(X)[0]
    known = np.asarray(text_model.classes_).astype(str)
    if targets is None:
        targets = [int(i) for i in np.argsort(-proba, kind="stable")[:k]]
    else:
        targets = [int(np.flatnonzero(known == str(c))[0]) for c in targets if str(c) in known]
    codes = [str(c) for c in known[targets]]
    if getattr(text_model, "members_", None) is not None and method in ("auto", "linear"):
        pooled = ensemble_contributions(text_model, listing, codes)
        if pooled is not None:
            tokens, contrib, dense, bias = pooled
            classes = [ClassWords(c, float(proba[t]), contrib[i], float(dense[i]), float(bias[i]))
                       for i, (c, t) in enumerate(zip(codes, targets, strict=True))]
            return TextExplanation(tokens, classes, "weighted log-odds of the ensemble's members",
                                   "linear", time.perf_counter() - started,
                                   {"members": dict(text_model.weights_)})
        if method == "linear":
            raise ConfigError("this ensemble has members that are not linear: use method='lime'")
    head = linear_head(text_model) if method in ("auto", "linear") else None
    if method == "linear" and head is None:
        raise ConfigError("this text head is not linear: use method='lime'")
    if method not in ("auto", "linear", "lime"):
        raise ConfigError(f"unknown text explanation method {method!r}: auto, linear or lime")
    if head is not None:
        tokens, contrib, dense, bias = linear_contributions(text_model, listing, targets, head)
        unit = head.unit
        if head.platt is not None:
            scale, offset = head.platt[0][targets], head.platt[1][targets]
            contrib, dense, bias = contrib * scale[:, None], dense * scale, bias * scale + offset
        classes = [ClassWords(c, float(proba[t]), contrib[i], float(dense[i]), float(bias[i]))
                   for i, (c, t) in enumerate(zip(codes, targets, strict=True))]
        return TextExplanation(tokens, classes, unit, "linear", time.perf_counter() - started)
    from prodcat.explain.lime import lime_weights

    tokens, weights, intercepts, scores = lime_weights(text_model, listing, targets, lime_samples, seed)
    classes = [ClassWords(c, float(proba[t]), weights[i], 0.0, float(intercepts[i]))
               for i, (c, t) in enumerate(zip(codes, targets, strict=True))]
    return TextExplanation(tokens, classes, "probability (LIME local model)", "lime",
                           time.perf_counter() - started,
                           {"lime_samples": lime_samples, "local_r2": [round(s, 4) for s in scores]})


def ensemble_contributions(ensemble, listing: dict, codes: list[str]):
    """Exact word contributions to ``Σ_m w_m · score_m`` of a log-linear text ensemble, whose
    pooled log-probability is ``Σ_m w_m · log P_m`` up to normalisation: each member's score is
    its Platt log-odds (TF-IDF members, exact per word) or its logit (a member on a sentence
    embedding alone, which belongs to the listing as a whole: reported as ``dense``).

    Returns ``(tokens, contributions, dense, bias)`` like :func:`linear_contributions`, or None
    when a member is neither, or the TF-IDF members read the listing's words differently.
    """
    tokens, contrib, dense, bias = None, None, np.zeros(len(codes)), np.zeros(len(codes))
    for name, member in ensemble.members_.items():
        w = ensemble.weights_[name]
        known = np.asarray(member.classes_).astype(str)
        rows = [int(np.flatnonzero(known == c)[0]) if c in known else -1 for c in codes]
        if hasattr(member, "features_"):
            head = linear_head(member)
            if head is None or head.platt is None or -1 in rows:
                return None
            toks, c, d, b = linear_contributions(member, listing, rows, head)
            if tokens is None:
                tokens, contrib = toks, np.zeros((len(codes), len(toks)))
            elif [t.text for t in toks] != [t.text for t in tokens]:
                return None
            scale, offset = head.platt[0][rows], head.platt[1][rows]
            contrib += w * c * scale[:, None]
            dense += w * d * scale
            bias += w * (b * scale + offset)
        elif hasattr(member, "encoder_") and -1 not in rows:  # a head on the embedding alone
            import pandas as pd

            X = pd.DataFrame({"title": [listing.get("title") or ""],
                              "description": [listing.get("description") or ""]})
            z = member.head_.decision_function(member.transform(X))[0]
            dense += w * (z[rows] - member.head_.intercept_[rows])
            bias += w * member.head_.intercept_[rows]
        else:
            return None
    if tokens is None:
        return None
    return tokens, contrib, dense, bias


def _token_features(text_model):
    """The TF-IDF features whose cleaning defines the listing's words: the model's own, or an
    ensemble's first TF-IDF member's."""
    features = getattr(text_model, "features_", None)
    if features is not None:
        return features
    for member in getattr(text_model, "members_", {}).values():
        if hasattr(member, "features_"):
            return member.features_
    raise ConfigError("this text model has no TF-IDF features to read the listing's words with")
