"""Text cleaning: what marketplace descriptions need before n-grams are counted."""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

_TAG = re.compile(r"<[^>]{0,2000}>")
_SPACE = re.compile(r"\s+")
# U+034F, the combining grapheme joiner, has combining class 0: unicodedata keeps it.
_LATIN_ACCENTS = re.compile("[\u0300-\u034e\u0350-\u036f]+")


def clean_text(text: object, *, lowercase: bool = True, strip_accents: bool = True) -> str:
    """Unescape HTML (twice: sellers' feeds are often double-escaped), drop tags, normalise.

    Accents are stripped by default because sellers type French with and without them
    (``télécommande`` / ``telecommande``), and the two spellings should count as one word.
    """
    if text is None or (isinstance(text, float) and text != text):
        return ""
    s = str(text)
    if "&" in s:
        s = html.unescape(html.unescape(s))
    if "<" in s:
        s = _TAG.sub(" ", s)
    s = unicodedata.normalize("NFKC", s)
    if strip_accents:
        s = strip_combining(unicodedata.normalize("NFKD", s))
    if lowercase:
        s = s.lower()
    return _SPACE.sub(" ", s).strip()


def strip_combining(s: str) -> str:
    """``s`` without its combining characters (accents once NFKD has split them off)."""
    if s.isascii():
        return s
    # Latin accents (U+0300–U+036F) by one regex pass, then any other combining mark one
    # character at a time: twice as fast on French text, and the same result.
    s = _LATIN_ACCENTS.sub("", s)
    return s if s.isascii() else "".join(c for c in s if not unicodedata.combining(c))


def listing_texts(
    titles: Iterable[object],
    descriptions: Iterable[object],
    *,
    max_description_chars: int | None = 1000,
    strip_accents: bool = True,
) -> list[str]:
    """One cleaned text per listing: the title, then the start of the description.

    Descriptions are cut after ``max_description_chars`` cleaned characters: the first sentences
    carry the category, and the tail of a 9,000-character description only costs time and memory.
    """
    return listing_text_views(titles, descriptions, (max_description_chars,), strip_accents=strip_accents)[0]


def listing_text_views(titles: Iterable[object], descriptions: Iterable[object],
                       limits: Sequence[int | None], *, strip_accents: bool = True) -> list[list[str]]:
    """:func:`listing_texts` for each description limit in ``limits``, each field cleaned once
    (word and character n-grams read different lengths of the same cleaned description)."""
    views: list[list[str]] = [[] for _ in limits]
    for title, desc in zip(titles, descriptions, strict=True):
        t = clean_text(title, strip_accents=strip_accents)
        d = clean_text(desc, strip_accents=strip_accents)
        for view, limit in zip(views, limits, strict=True):
            view.append(f"{t} {d if limit is None else d[:limit]}".strip())
    return views


def frame_texts(X, max_description_chars: int | None = 1000, strip_accents: bool = True) -> list[str]:
    """:func:`listing_texts` over a Catalog-like frame (or a list of titles)."""
    return frame_text_views(X, (max_description_chars,), strip_accents=strip_accents)[0]


def frame_text_views(X, limits: Sequence[int | None], *, strip_accents: bool = True) -> list[list[str]]:
    """:func:`listing_text_views` over a Catalog-like frame (or a list of titles)."""
    if isinstance(X, pd.DataFrame):
        titles = X["title"] if "title" in X.columns else [""] * len(X)
        descs = X["description"] if "description" in X.columns else [""] * len(X)
    else:
        titles = np.asarray(X, dtype=object).ravel()
        descs = [""] * len(titles)
    return listing_text_views(titles, descs, limits, strip_accents=strip_accents)


#: Characters that show nothing: C0/C1 controls, format characters (soft hyphen, zero-width
#: space and joiners, direction marks, word joiner, byte-order mark...), Hangul fillers, the
#: blank Braille pattern and variation selectors. Written as a regex character-class body of
#: literal characters and ranges, which Python's ``re`` and Rust's ``regex`` (pydantic) read alike.
INVISIBLE_CHARS = ("\x00-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
                   "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0")
#: A regex matching one character that shows something.
VISIBLE_PATTERN = f"[^\\s{INVISIBLE_CHARS}]"
_VISIBLE = re.compile(VISIBLE_PATTERN)


def is_blank(text: object) -> bool:
    """True for None, NaN and text made only of spaces and invisible characters (a title of
    zero-width spaces is as empty as no title)."""
    if text is None or (isinstance(text, float) and text != text):
        return True
    return _VISIBLE.search(str(text)) is None
