"""The demo catalogue's words and sentences, read from ``listings.json`` beside this module.

The vocabulary is data (per category, French and English nouns, adjectives, extras and
sentences; brands and number formats shared by both languages) so that it can be read and
edited as such; the code that assembles listings and draws photos lives in
:mod:`prodcat.demo.catalog` and :mod:`prodcat.demo.drawing`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

RESOURCE = "listings.json"


@dataclass(frozen=True)
class Category:
    code: int
    name: str
    parent: str
    share: float
    neighbours: tuple[int, ...]
    # Per language ("fr", "en"): nouns, adjectives, extras; brands and number formats are shared.
    nouns: dict[str, tuple[str, ...]]
    adjectives: dict[str, tuple[str, ...]]
    extras: dict[str, tuple[str, ...]]
    brands: tuple[str, ...]
    numbers: tuple[str, ...]
    sentences: dict[str, tuple[str, ...]]


def pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _per_language(value: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    return {lang: tuple(words) for lang, words in value.items()}


def _category(raw: dict[str, Any]) -> Category:
    return Category(
        code=int(raw["code"]), name=raw["name"], parent=raw["parent"], share=float(raw["share"]),
        neighbours=tuple(int(c) for c in raw["neighbours"]),
        nouns=_per_language(raw["nouns"]), adjectives=_per_language(raw["adjectives"]),
        extras=_per_language(raw["extras"]), brands=tuple(raw["brands"]),
        numbers=tuple(raw["numbers"]), sentences=_per_language(raw["sentences"]),
    )


_DATA = json.loads(resources.files(__package__).joinpath(RESOURCE).read_text(encoding="utf-8"))

CATEGORIES: tuple[Category, ...] = tuple(_category(c) for c in _DATA["categories"])
BY_CODE = {c.code: c for c in CATEGORIES}
PLATFORMS: tuple[str, ...] = tuple(_DATA["platforms"])
MONTHS = _per_language(_DATA["months"])
GENERIC_WORDS = _per_language(_DATA["generic_words"])
GENERIC_SENTENCES = _per_language(_DATA["generic_sentences"])
