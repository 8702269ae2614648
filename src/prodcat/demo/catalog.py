"""A small demo catalogue, generated in code, laid out like the Rakuten France challenge download.

Every row, word list and picture here is our own: titles and descriptions are assembled from
per-category vocabularies (French and English; the data file ``listings.json``, read by
:mod:`prodcat.demo.vocabulary`) with templates, and photos are simple shapes drawn with PIL
(:mod:`prodcat.demo.drawing`). The result is deterministic for a given seed, byte for byte, and reads with
``prodcat.data.read_catalog(path, format="rakuten")``::

    out/
      X_train_update.csv        ,designation,description,productid,imageid
      Y_train_CVw08PX.csv       ,prdtypecode
      categories.csv            prdtypecode,name,parent
      images/image_train/image_{imageid}_product_{productid}.jpg   (about 88% of listings)

The text is learnable but noisy: neighbouring categories (books and magazines, video games and
consoles, pool toys and toys...) share words and brands, some titles borrow a neighbour's words,
about a third of the descriptions are empty and some carry HTML noise (tags, ``&eacute;``,
double-escaped ``&amp;eacute;``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from prodcat.demo.drawing import draw_image
from prodcat.demo.vocabulary import (
    BY_CODE,
    CATEGORIES,
    GENERIC_SENTENCES,
    GENERIC_WORDS,
    MONTHS,
    PLATFORMS,
    Category,
    pick,
)

__all__ = ["DEMO_CATEGORIES", "DEMO_EXAMPLE", "DEMO_VERSION", "demo_catalog_path",
           "write_demo_catalog"]

#: Bumped whenever the generator's output changes, so cached copies are rebuilt.
DEMO_VERSION = 1
_MARKER = ".prodcat-demo-complete"

#: A typical French listing, for printing one prediction at the end of the demo (a book, code 10).
DEMO_EXAMPLE = {
    "title": "Roman policier - édition de poche, très bon état",
    "description": "Un polar haletant de 320 pages qui se lit d'une traite. "
                   "Couverture souple légèrement usée, aucune annotation.",
}

# Generation knobs (tuned so that a TF-IDF + logistic regression reaches ~0.9 accuracy).
_P_EMPTY_DESCRIPTION = 0.35
_P_HTML = 0.15 / (1 - _P_EMPTY_DESCRIPTION)  # share of the non-empty descriptions
_P_IMAGE = 0.88
_P_FRENCH = 0.65
_P_STRIP_ACCENTS = 0.15  # French sellers who type without accents
_P_UPPER_TITLE = 0.04
_P_SLOT_FROM_NEIGHBOUR = 0.10  # a title word taken from a neighbouring category
_P_CROSSOVER = 0.04  # the title's main noun itself comes from a neighbour (a true ambiguity)

_JPEG_QUALITY = 85

#: The demo's categories: code → (name, parent).
DEMO_CATEGORIES = {c.code: (c.name, c.parent) for c in CATEGORIES}

_ENTITIES = {"é": "&eacute;", "è": "&egrave;", "ê": "&ecirc;", "à": "&agrave;", "ç": "&ccedil;",
             "ô": "&ocirc;", "û": "&ucirc;", "î": "&icirc;", "É": "&Eacute;", "°": "&deg;"}
_STRIP = str.maketrans("éèêëàâäçôöûùüîïÉÈÊÀÇØ", "eeeeaaacoouuuiiEEEACO")


# ---------------------------------------------------------------------------------------------
# Text


def _fill(template: str, rng: np.random.Generator, lang: str) -> str:
    if "{" not in template:
        return template
    values = {
        "n": int(rng.integers(8, 400)), "m": int(rng.integers(20, 200)),
        "k": int(rng.integers(2, 9)), "year": int(rng.integers(1985, 2024)),
        "month": pick(rng, MONTHS[lang]), "platform": pick(rng, PLATFORMS),
        "pegi": pick(rng, (3, 7, 12, 16, 18)), "storage": pick(rng, (32, 64, 500, 825, 1000)),
        "litres": pick(rng, (5, 10, 20, 300, 1200, 3800)), "cl": pick(rng, (25, 30, 35, 45)),
        "ml": pick(rng, (250, 300, 350, 450)), "kg": pick(rng, (80, 100, 120, 150)),
        "pieces": pick(rng, (50, 100, 250, 500, 1000)), "w": pick(rng, (4, 6, 9, 12, 40, 60)),
    }
    return template.format(**values)


def _slot_source(rng: np.random.Generator, cat: Category) -> Category:
    if cat.neighbours and rng.random() < _P_SLOT_FROM_NEIGHBOUR:
        return BY_CODE[pick(rng, cat.neighbours)]
    return cat


def _title(rng: np.random.Generator, cat: Category, lang: str) -> str:
    noun_cat = BY_CODE[pick(rng, cat.neighbours)] if rng.random() < _P_CROSSOVER else cat
    noun = pick(rng, noun_cat.nouns[lang])
    adj = pick(rng, _slot_source(rng, cat).adjectives[lang]) if rng.random() < 0.7 else ""
    brand = pick(rng, _slot_source(rng, cat).brands) if rng.random() < 0.55 else ""
    extra = pick(rng, _slot_source(rng, cat).extras[lang]) if rng.random() < 0.45 else ""
    number = (_fill(pick(rng, _slot_source(rng, cat).numbers), rng, lang)
              if rng.random() < 0.45 else "")
    generic = pick(rng, GENERIC_WORDS[lang]) if rng.random() < 0.3 else ""
    form = int(rng.integers(5))
    if form == 0:
        parts = [brand, noun, adj, extra, number, generic]
    elif form == 1:
        parts = [noun, adj, "-", brand, number, extra, generic]
    elif form == 2:
        parts = [generic.capitalize() if generic else "", noun, adj, brand, "-", extra, number]
    elif form == 3 and lang == "en":
        parts = [brand, adj, noun, "(" + number + ")" if number else "", extra, generic]
    else:
        parts = [noun, brand, adj, number, "|" if extra else "", extra, generic]
    text = " ".join(p for p in parts if p)
    text = text.strip(" -|").replace("- -", "-").replace("| -", "-")
    text = " ".join(text.split())
    text = text[:1].upper() + text[1:]
    if rng.random() < _P_UPPER_TITLE:
        text = text.upper()
    return text


def _description(rng: np.random.Generator, cat: Category, lang: str, title: str) -> str:
    if rng.random() < _P_EMPTY_DESCRIPTION:
        return ""
    if rng.random() < 0.08:  # a description in the other language
        lang = "en" if lang == "fr" else "fr"
    sentences = []
    if rng.random() < 0.15:
        sentences.append(title + ".")
    for _ in range(int(rng.integers(1, 4))):
        sentences.append(_fill(pick(rng, _slot_source(rng, cat).sentences[lang]), rng, lang))
    if rng.random() < 0.5:
        sentences.insert(int(rng.integers(len(sentences) + 1)),
                         _fill(pick(rng, GENERIC_SENTENCES[lang]), rng, lang))
    if rng.random() < _P_HTML:
        return _html_noise(rng, sentences)
    return " ".join(dict.fromkeys(sentences))


def _html_noise(rng: np.random.Generator, sentences: list[str]) -> str:
    sentences = list(dict.fromkeys(sentences))
    if rng.random() < 0.5:
        i = int(rng.integers(len(sentences)))
        sentences[i] = f"<b>{sentences[i]}</b>"
    sep = pick(rng, ("<br>", "<br />", "<br/><br/>", " "))
    text = sep.join(sentences)
    if rng.random() < 0.4:
        text = f"<p>{text}</p>"
    style = rng.random()
    if style < 0.8:  # entities, sometimes double-escaped as seller feeds do
        double = style < 0.3
        text = text.replace("&", "&amp;")
        for char, entity in _ENTITIES.items():
            text = text.replace(char, entity.replace("&", "&amp;") if double else entity)
    return text


def _strip_accents(text: str) -> str:
    return text.translate(_STRIP)


# ---------------------------------------------------------------------------------------------
# The catalogue


def _class_counts(n: int) -> list[int]:
    shares = np.array([c.share for c in CATEGORIES], dtype=float)
    exact = shares / shares.sum() * n
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def write_demo_catalog(out_dir: str | Path, *, n_listings: int = 480, seed: int = 0,
                       image_size: int = 128) -> Path:
    """Write the demo catalogue into ``out_dir`` (created if needed) and return its path.

    The folder reads with ``read_catalog(out_dir, format="rakuten")``. The same arguments give
    the same bytes. Existing ``image_*.jpg`` files in ``out_dir/images/image_train`` are
    replaced.
    """
    n = int(n_listings)
    if n < len(CATEGORIES):
        raise ValueError(f"n_listings must be at least {len(CATEGORIES)}, got {n_listings}")
    if int(image_size) < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    out = Path(out_dir).expanduser()
    image_dir = out / "images" / "image_train"
    image_dir.mkdir(parents=True, exist_ok=True)
    for old in image_dir.glob("image_*.jpg"):
        old.unlink()

    rng = np.random.default_rng([seed, 0])
    labels = np.repeat([c.code for c in CATEGORIES], _class_counts(n))
    labels = labels[rng.permutation(n)]
    product_ids = rng.choice(4_200_000_000, size=n, replace=False) + 100_000_000
    image_ids = rng.choice(500_000_000, size=n, replace=False) + 900_000_000
    has_image = rng.random(n) < _P_IMAGE

    titles, descriptions = [], []
    for code in labels:
        cat = BY_CODE[int(code)]
        lang = "fr" if rng.random() < _P_FRENCH else "en"
        title = _title(rng, cat, lang)
        description = _description(rng, cat, lang, title)
        if lang == "fr" and rng.random() < _P_STRIP_ACCENTS:
            title, description = _strip_accents(title), _strip_accents(description)
        titles.append(title)
        descriptions.append(description)

    x = pd.DataFrame({"designation": titles, "description": descriptions,
                      "productid": product_ids.astype(np.int64),
                      "imageid": image_ids.astype(np.int64)})
    y = pd.DataFrame({"prdtypecode": labels.astype(np.int64)})
    categories = pd.DataFrame({"prdtypecode": [c.code for c in CATEGORIES],
                               "name": [c.name for c in CATEGORIES],
                               "parent": [c.parent for c in CATEGORIES]})
    csv = {"encoding": "utf-8", "lineterminator": "\n"}
    x.to_csv(out / "X_train_update.csv", **csv)
    y.to_csv(out / "Y_train_CVw08PX.csv", **csv)
    categories.to_csv(out / "categories.csv", index=False, **csv)

    for i in np.flatnonzero(has_image):
        img = draw_image(np.random.default_rng([seed, 1, int(i)]), BY_CODE[int(labels[i])],
                          int(image_size))
        img.save(image_dir / f"image_{image_ids[i]}_product_{product_ids[i]}.jpg", "JPEG",
                 quality=_JPEG_QUALITY, optimize=False, progressive=False)
    return out


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("PRODCAT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prodcat"


def demo_catalog_path(cache_dir: str | Path | None = None) -> Path:
    """The demo catalogue's folder, written once under the cache root and reused afterwards.

    The cache root is ``cache_dir`` if given, else ``$PRODCAT_CACHE_DIR``, else
    ``~/.cache/prodcat``; the catalogue lives in ``<root>/demo-v1``. A marker file written last
    tells a complete copy from an interrupted one.
    """
    root = _cache_root(cache_dir)
    target = root / f"demo-v{DEMO_VERSION}"
    if (target / _MARKER).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-tmp-", dir=root))
    try:
        write_demo_catalog(tmp)
        (tmp / _MARKER).write_text(f"prodcat demo catalogue v{DEMO_VERSION}\n", encoding="utf-8")
        if target.exists() and not (target / _MARKER).is_file():
            shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / _MARKER).is_file():  # not another process finishing first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
