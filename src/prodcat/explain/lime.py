"""LIME over a listing's cleaned words, for text heads that are not linear (a local linear
approximation, and the explanation says so)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from prodcat.errors import ConfigError
from prodcat.explain.text import _token_features, listing_tokens

#: Joins title and description in the strings LIME perturbs; a separator, so never removed.
_FIELD_MARK = " \u00b6 "
_LIME_SPLIT = r"\s*\u00b6\s*|\s+"


def lime_weights(text_model, listing: dict, targets: list[int], samples: int = 500, seed: int = 0):
    """LIME over the listing's cleaned words, for any text model.

    Title and description are perturbed together (a word removed everywhere it appears); the
    perturbed texts are classified as listings again. Returns ``(tokens, weights [targets ×
    tokens], intercepts, local R²)``; a word's weight is shared by its occurrences.
    """
    try:
        from lime.lime_text import LimeTextExplainer
    except ImportError as exc:
        raise ConfigError("LIME needs the 'explain' extra: pip install 'prodcat[explain]'") from exc
    import pandas as pd

    if samples < 10:
        raise ConfigError("LIME needs at least 10 samples")
    features = _token_features(text_model)
    title, description = str(listing.get("title") or ""), str(listing.get("description") or "")
    tokens = listing_tokens(title, description, features)
    title_text = " ".join(t.text for t in tokens if t.field == "title")
    desc_text = " ".join(t.text for t in tokens if t.field == "description")

    def classify(texts: list[str]) -> np.ndarray:
        parts = [t.split("\u00b6", 1) + [""] for t in texts]
        X = pd.DataFrame({"title": [p[0].strip() for p in parts], "description": [p[1].strip() for p in parts]})
        return text_model.predict_proba(X)

    explainer = LimeTextExplainer(split_expression=_LIME_SPLIT, bow=True, random_state=seed)
    explanation = explainer.explain_instance(f"{title_text}{_FIELD_MARK}{desc_text}", classify,
                                             labels=targets, num_features=max(1, len(tokens)),
                                             num_samples=samples)
    vocab = explanation.domain_mapper.indexed_string
    weights = np.zeros((len(targets), len(tokens)))
    for i, target in enumerate(targets):
        per_word = {vocab.word(idx): w for idx, w in explanation.local_exp[target]}
        counts: dict[str, int] = defaultdict(int)
        for t in tokens:
            counts[t.text] += 1
        for n, t in enumerate(tokens):
            weights[i, n] = per_word.get(t.text, 0.0) / counts[t.text]
    intercepts = np.array([explanation.intercept[t] for t in targets])
    scores = [float(explanation.score[t]) if isinstance(explanation.score, dict) else float(explanation.score)
              for t in targets]
    return tokens, weights, intercepts, scores
