"""The OCR channel of a :class:`~prodcat.model.Classifier` (``ocr=``): the words read on the
listings' photos (:mod:`prodcat.ocr`), given to the text model as a marked block of the listing.

A listing whose photo carries words gets them at the head of its description, behind a marker
(:data:`MARKER`: ``texte photo : WORDS |``), for the training listings and the listings to
classify alike; the text model (every member of the default ensemble: word, character and
TF-IDF n-grams) learns them with the rest of the listing's vocabulary. At the head, so that no
``max_description_chars`` cut drops them. Listings without a photo, or whose photo has no words,
are unchanged.

Tried and dropped (nested 5-fold CV on the Rakuten listings with a photo, ``benchmarks/
quality.py --ocr``, README): a separate TF-IDF model of the OCR text, fused as a third block of
late/stacked fusion (-1.2 points of weighted F1 on the listings with a photo, where the words in
the description gave +0.8), and the listing-text model reading the words as a title (its block
scored worse than uniform and got weight 0).

OCR results are cached (by engine id and the photo's bytes, :class:`~prodcat.ocr.OcrCache`, in
the embedding cache's file): cross-validation and refits read each photo once. Without the disk
cache (the API and web app, for uploads) the last :data:`RECENT_PHOTOS` photos' results are kept
in memory, so a photo classified and then explained is read once. Engines are created once per
process (RapidOCR's networks take seconds to load).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from prodcat.errors import BundleError, ConfigError
from prodcat.ocr import (
    DEFAULT_ENGINE,
    ENGINES,
    OcrCache,
    OcrEngine,
    OcrResult,
    create_engine,
    engine_status,
    list_engines,
)
from prodcat.ocr.reading import ocr_text_for
from prodcat.recent import RecentItems

#: ``Classifier(ocr=...)``'s choices besides None.
OCR_CHOICES = frozenset({"auto", "none", *list_engines()})
#: What precedes a photo's words in the description the text model reads.
MARKER = "texte photo :"
#: What follows them (before the seller's own description).
SEPARATOR = "|"
#: Photos whose results the in-memory store keeps when the disk cache is off.
RECENT_PHOTOS = 32

def installed_engines() -> list[str]:
    """Registered engines that can run here, the default first."""
    status = engine_status()
    names = sorted(status, key=lambda n: (n != DEFAULT_ENGINE, n))
    return [n for n in names if status[n] == "ok"]


def resolve_ocr(setting: str | None) -> str | None:
    """The engine ``Classifier(ocr=setting)`` uses: None for none; ``"auto"`` the default engine
    if it is installed, else another installed one, else None; an engine name itself, which
    must be installed (a :class:`ConfigError` says what to install)."""
    if setting is None or setting == "none":
        return None
    if setting == "auto":
        found = installed_engines()
        return found[0] if found else None
    status = ENGINES.get(setting).status()
    if status != "ok":
        raise ConfigError(f"ocr={setting!r}: {status}")
    return setting


@lru_cache(maxsize=4)
def engine_for(name: str) -> OcrEngine:
    """One engine per name and process (loaded on first read)."""
    return create_engine(name)


def engine_record(name: str) -> dict:
    """What the manifest and ``ocr_`` record of an engine: name, version, cache id."""
    engine = engine_for(name)
    return {"engine": name, "version": engine.version, "engine_id": engine.engine_id}


class RecentOcrResults(OcrCache):
    """The last ``size`` photos' results in memory, in place of the disk cache: the uploads of
    the API and web app are not written to disk, but the same photo classified and then
    explained (the seller page does both) is read once."""

    def __init__(self, size: int = RECENT_PHOTOS):
        self._items: RecentItems[OcrResult] = RecentItems(size)

    def get_many(self, engine_id: str, digests: Sequence[str]) -> dict[str, OcrResult]:
        return {d: r for (_, d), r in self._items.get_many((engine_id, d) for d in digests).items()}

    def put_many(self, engine_id: str, items: Iterable[tuple[str, OcrResult]]) -> int:
        kept = [(d, r) for d, r in items if r.cacheable]
        self._items.put_many(((engine_id, d), r) for d, r in kept)
        return len(kept)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:  # an empty store is still a store (read_photos tests truth)
        return True

    def close(self) -> None:
        pass


_RECENT = RecentOcrResults()


def ocr_results(X: pd.DataFrame, name: str, *, progress: bool = False, cache: bool = True) -> list[OcrResult]:
    """Each listing's :class:`~prodcat.ocr.OcrResult` (words and boxes; empty without a photo);
    ``cache``: read and write the default OCR cache, else only the in-memory recent results (the
    API switches the disk cache off for uploads)."""
    from prodcat.ocr import read_photos

    images = X["image"].tolist() if "image" in X else [None] * len(X)
    return read_photos(images, engine=engine_for(name), cache=True if cache else _RECENT,
                       progress=progress)


def ocr_texts(X: pd.DataFrame, name: str, *, progress: bool = False, cache: bool = True) -> np.ndarray:
    """Each listing's OCR text (``""`` without a photo, for a bad one or one without words);
    ``cache`` as in :func:`ocr_results`."""
    if "image" not in X or not X["image"].notna().any():
        return np.full(len(X), "", dtype=object)
    texts = ocr_text_for(X, engine_for(name), cache=True if cache else _RECENT, progress=progress)
    return texts.fillna("").astype(str).str.strip().to_numpy(dtype=object)


def has_photo(X: pd.DataFrame) -> np.ndarray:
    """Which listings of ``X`` name a photo (usable or not: OCR tells)."""
    from prodcat.image.loading import is_missing

    if "image" not in X:
        return np.zeros(len(X), dtype=bool)
    return np.array([not is_missing(v) for v in X["image"]], dtype=bool)


def marked_words(text) -> str:
    """What a photo's words (``text``) put at the head of the description: ``""`` for none,
    else the words on one line between :data:`MARKER` and :data:`SEPARATOR`."""
    return "" if not text else f"{MARKER} {' '.join(str(text).split())} {SEPARATOR} "


def with_ocr_words(X: pd.DataFrame, texts) -> pd.DataFrame:
    """``X`` with each photo's words (``texts``) at the head of its description, behind
    :data:`MARKER` (one line; listings without words unchanged)."""
    return X.assign(description=[marked_words(t) + d for t, d in zip(texts, X["description"], strict=True)])


def words_alone(text_model, classes: np.ndarray, texts) -> np.ndarray:
    """The OCR channel alone: the text model's answer for the photo's words only (the marked
    block without title or rest of description); uniform where no words were read."""
    texts = np.asarray(texts, dtype=object)
    out = np.full((len(texts), len(classes)), 1.0 / len(classes))
    has = np.array([bool(t) for t in texts], dtype=bool)
    if has.any():
        blank = pd.DataFrame({"title": [""] * int(has.sum()), "description": [""] * int(has.sum()),
                              "image": [None] * int(has.sum())})
        proba = text_model.predict_proba(with_ocr_words(blank, texts[has]))
        cols = np.searchsorted(classes.astype(str), np.asarray(text_model.classes_).astype(str))
        out[has] = 0.0
        out[np.ix_(np.flatnonzero(has), cols)] = proba
    return out


class OcrWords:
    """The photos' words of one fit: engine name, the training listings' texts, and the
    training frame with the words in it."""

    def __init__(self, name: str, texts: np.ndarray, X: pd.DataFrame):
        self.name, self.texts, self.X = name, texts, with_ocr_words(X, texts)
        self.n_with_words = int(sum(bool(t) for t in texts))


def read_training_words(setting, X: pd.DataFrame, *, min_rows: int) -> OcrWords | None:
    """The photos' words ``Classifier(ocr=setting)`` trains with, or None (with a warning saying
    why) when OCR is off, no engine is installed (``"auto"``) or fewer than ``min_rows``
    training photos carry words."""
    if setting is None or setting == "none":
        return None
    name = resolve_ocr(setting)
    if name is None:
        warnings.warn("ocr='auto': no OCR engine is installed (pip install -e '.[ocr]'); "
                      "training without OCR", stacklevel=3)
        return None
    words = OcrWords(name, ocr_texts(X, name, progress=len(X) >= 5000), X)
    if words.n_with_words < max(min_rows, 1):
        warnings.warn(f"OCR left out: words were read on {words.n_with_words} labelled photos "
                      f"(need {min_rows})", stacklevel=3)
        return None
    return words


def auto_decision(oof_without: np.ndarray, oof_with: np.ndarray, y_idx: np.ndarray,
                  has_photo: np.ndarray, splits) -> dict:
    """Whether ``ocr="auto"`` keeps the photos' words, from the text model's out-of-fold
    probabilities without and with them (rows in the same order, columns in class order).

    The gain of each inner fold (``splits``' test sets) is the drop of the out-of-fold log loss
    on that fold's listings with a photo (positive: the words help). The words are kept only
    when all three hold:

    1. the out-of-fold log loss over all the listings is lower with them (the refit moves the
       answers of listings without words too);
    2. the gain is positive on more than half of the inner folds;
    3. the mean gain exceeds the fold spread (the folds' standard deviation, so a gain one
       lucky fold carries is not enough).

    A lower log loss alone let noise decide: on the Rakuten sample that rule kept the words in 3
    of 5 outer folds and gained +0.02 points of weighted F1 on the listings with a photo. The
    spread is measured, not assumed, because OCR's effect varies by catalogue (+0.8 points
    on Rakuten's photo listings with folds from −5.5 to +7.6, −0.45 on Flipkart's).
    Returns the ``gains`` per fold, ``mean``, ``spread``, ``positive_folds``, ``folds``, the
    overall ``log_loss`` without and with, ``keep`` and, when not kept, ``reason``.
    """
    from prodcat.fusion.fusers import log_loss_of

    has_photo = np.asarray(has_photo, dtype=bool)
    gains = []
    for _, test in splits:
        rows = np.asarray(test)[has_photo[np.asarray(test)]]
        if len(rows):
            gains.append(log_loss_of(oof_without[rows], y_idx[rows]) - log_loss_of(oof_with[rows], y_idx[rows]))
    overall = {"without": log_loss_of(oof_without, y_idx), "with": log_loss_of(oof_with, y_idx)}
    g = np.asarray(gains, dtype=float)
    mean = float(g.mean()) if g.size else 0.0
    spread = float(g.std(ddof=1)) if g.size > 1 else float("inf")
    positive = int((g > 0).sum())
    if overall["with"] >= overall["without"]:
        reason = (f"the out-of-fold log loss is not lower with the words ({overall['with']:.4f} "
                  f"vs {overall['without']:.4f})")
    elif positive * 2 <= g.size:
        reason = f"the words helped the listings with a photo on {positive} of {g.size} inner folds"
    elif mean <= spread:
        reason = (f"their mean gain on the listings with a photo ({mean:+.4f} log loss) does not "
                  f"exceed the folds' spread ({spread:.4f})")
    else:
        reason = None
    return {"gains": [round(float(x), 6) for x in g], "mean": round(mean, 6),
            "spread": round(spread, 6) if np.isfinite(spread) else None, "positive_folds": positive,
            "folds": int(g.size), "log_loss": overall, "keep": reason is None,
            **({"reason": reason} if reason else {})}


def check_bundle_ocr(path, manifest: dict) -> None:
    """A bundle whose model reads the photos' words loads only where its engine is installed
    (its answers would change without it); another engine version only warns."""
    record = manifest.get("ocr")
    if not record:
        return
    name = str(record.get("engine"))
    if name not in ENGINES:
        raise BundleError(f"bundle {path} reads the photos' text with the OCR engine {name!r}, "
                          f"which this prodcat does not know ({', '.join(list_engines())})")
    status = ENGINES.get(name).status()
    if status != "ok":
        raise BundleError(f"bundle {path} reads the photos' text with {name} "
                          f"({record.get('version')}), which is not installed here: {status}. "
                          "Install it, or retrain with `prodcat train --ocr none`")
    installed = engine_for(name).version
    if record.get("version") and installed != record["version"]:
        from prodcat.model.bundle import BundleVersionWarning

        warnings.warn(f"bundle {path} was trained with {record['version']}, this install reads "
                      f"photos with {installed}; it loads, but the words read may differ",
                      BundleVersionWarning, stacklevel=3)

