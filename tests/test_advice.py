"""Seller advice (prodcat.explain.advice): the words that would make an unsure category clear."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from prodcat.explain import explain_text
from prodcat.explain.advice import STOP_WORDS, WordAdvisor, seller_advice


@pytest.fixture(scope="module")
def advisor(trained):
    adv = WordAdvisor.from_model(trained[0])
    assert adv is not None
    return adv


def test_each_class_strongest_words_are_its_own_vocabulary(advisor):
    # conftest.RAKUTEN_CLASSES: each class has its own words (accents stripped as the model reads them).
    own = {"1160": {"carte", "pokemon", "holo", "rare", "booster", "dresseur", "magic", "deck", "edition",
                    "foil"},
           "2583": {"piscine", "pompe", "filtre", "bache", "spa", "chlore", "skimmer", "hors", "sol",
                    "liner", "epuisette"}}
    for code, words in own.items():
        top = advisor.class_words(code, 5)
        assert len(top) == 5 and all(w > 0 for _, w in top)
        assert {w for w, _ in top} <= words, top
    assert advisor.class_words("nope") == []
    assert not (set(advisor.words) & STOP_WORDS)
    assert all(len(w) >= 3 and not w.isdigit() for w in advisor.words)


def test_a_word_weight_is_what_the_explanation_gives_it_alone(trained, advisor):
    """The advisor's weight of a word is exactly its contribution to each class as a one-word
    title, as the (exact, linear) text explanation computes it."""
    model = trained[0]
    codes = [str(c) for c in model.text_.classes_]
    for word in ("pokemon", "piscine", "stylo", "drone"):
        expl = explain_text(model, {"title": word, "description": ""}, targets=codes)
        assert expl.method == "linear"
        alone = np.array([c.tokens.sum() for c in expl.classes])
        row = advisor.weights[list(advisor.words).index(word)]
        np.testing.assert_allclose(row, alone, rtol=1e-6, atol=1e-8)


def test_suggestions_are_missing_words_that_separate_the_candidates(advisor):
    tips = advisor.suggest("Carte lot neuf", "", ["1160", "1300", "2522"], n=4)
    assert [t["code"] for t in tips] == ["1160", "1300", "2522"]
    for tip in tips:
        words = [w["word"] for w in tip["words"]]
        assert len(words) == 4 and "carte" not in words and "lot" not in words
        margins = [w["margin"] for w in tip["words"]]
        assert margins == sorted(margins, reverse=True) and all(m > 0 for m in margins)
        assert all(w["weight"] > 0 for w in tip["words"])
    assert {w["word"] for w in tips[0]["words"]} <= {"pokemon", "holo", "rare", "booster", "dresseur",
                                                      "magic", "deck", "edition", "foil"}
    # A word of the listing in any spelling (accents, case) counts as present.
    tips = advisor.suggest("POKÉMON", "un Booster", ["1160"], n=20)
    assert not {"pokemon", "booster"} & {w["word"] for w in tips[0]["words"]}
    # Unknown class codes get no words.
    assert advisor.suggest("x", "", ["9999"]) == [{"code": "9999", "words": []}]


def test_seller_advice_names_the_candidates(advisor):
    top = [{"code": "1160", "name": "Cartes", "parent": "Jeux", "probability": 0.5},
           {"code": "9999", "name": "Inconnue", "parent": None, "probability": 0.3}]
    out = seller_advice(advisor, "lot", "", top, n=3)
    assert [c["code"] for c in out] == ["1160"]  # a candidate without words is left out
    assert out[0]["name"] == "Cartes" and out[0]["probability"] == 0.5 and len(out[0]["words"]) == 3
    assert seller_advice(None, "lot", "", top) == []
    assert seller_advice(advisor, "lot", "", []) == []


def test_no_linear_word_model_no_advisor():
    assert WordAdvisor.from_model(SimpleNamespace(text_=None)) is None
    # An ensemble whose members read an embedding only: no words to suggest.
    dense_only = SimpleNamespace(classes_=np.array(["a", "b"]), members_={"use": SimpleNamespace()},
                                 weights_={"use": 1.0})
    assert WordAdvisor.from_model(dense_only) is None
