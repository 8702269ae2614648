"""The words read on a listing's photo in its explanation, for a model that reads them
(``Classifier(ocr=...)``, :mod:`prodcat.model.ocr_channel`).

Such a model reads the photo's words at the head of the description, behind a marker
(``texte photo : WORDS |``), so the exact word contributions (:mod:`prodcat.explain.text`) cover
them like any other word. Here they are told apart from what the seller typed: a word read on
the photo gets ``field`` ``"photo"`` (its ``span`` points into the words read), the marker around
them ``field`` ``"marker"`` (the model adds it to every listing whose photo has words, so its
weight belongs to the photo's share); both have ``source`` ``"photo"``, the listing's words
``source`` ``"listing"``. The description's own words keep their positions and spans in the
description as the seller wrote it.

:func:`photo_words` gives the words as the engine read them, each with its box on the photo and
its weight for the answer: what the seller page draws.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from prodcat.text.cleaning import clean_text


def listing_ocr_text(model, listing: dict) -> str | None:
    """The words ``model`` reads on ``listing``'s photo (``""`` for none), or None when the model
    does not read photos' words."""
    from prodcat.image.loading import is_missing
    from prodcat.model.ocr_channel import ocr_texts

    record = getattr(model, "ocr_", None)
    if not record:
        return None
    if is_missing(listing.get("image")):
        return ""
    frame = pd.DataFrame({"image": [listing.get("image")]})
    return str(ocr_texts(frame, record["engine"], cache=getattr(model, "ocr_cache_", True))[0])


def with_photo_words(listing: dict, ocr_text: str) -> dict:
    """``listing`` with its photo's words at the head of its description, as the model reads it."""
    from prodcat.model.ocr_channel import marked_words

    return {**listing, "description": marked_words(ocr_text) + str(listing.get("description") or "")}


def mark_photo_tokens(tokens: list, ocr_text: str, description: str, strip_accents: bool) -> bool:
    """Relabel, in place, the tokens of the marked description (:func:`with_photo_words`): the
    photo's words and their marker as above, the description's own words renumbered with spans
    into ``description``. False (tokens left as they were) when the head of the description is
    not the photo's words as cleaned, which only tags spanning the marker can cause."""
    from prodcat.explain.text import _attach_spans
    from prodcat.model.ocr_channel import MARKER, marked_words

    prefix = clean_text(marked_words(ocr_text), strip_accents=strip_accents).split()
    n_marker = len(clean_text(MARKER, strip_accents=strip_accents).split())
    described = [t for t in tokens if t.field == "description"]
    head = described[:len(prefix)]
    if [t.text for t in head] != prefix[:len(head)]:
        return False
    markers = 0
    for i, tok in enumerate(head):
        tok.span = None
        if n_marker <= i < len(prefix) - 1:
            tok.field, tok.position = "photo", i - n_marker
        else:
            tok.field, tok.position = "marker", markers
            markers += 1
    for i, tok in enumerate(described[len(prefix):]):
        tok.position, tok.span = i, None
    _attach_spans(tokens, "description", description, strip_accents)
    _attach_spans(tokens, "photo", ocr_text, strip_accents)
    return True


def photo_words(model, photo: Any, text=None, explained: str | None = None) -> dict[str, Any] | None:
    """The words ``model`` read on ``photo`` as its OCR engine gave them, for drawing them on it;
    None for a model that does not read photos' words or a listing without a photo.

    Returns ``engine``, ``status`` (why there are no words, see :class:`~prodcat.ocr.OcrResult`),
    ``text``, ``size`` (the ``[width, height]`` of the photo as read: upright, at most the
    engine's ``max_side``, the frame of the boxes) and ``words``: per word its ``text``,
    ``confidence``, ``box`` (``[left, top, right, bottom]``) and ``weight``, its contribution to
    the answer's top class in ``text``'s unit (the :class:`TextExplanation` of the same listing,
    which read the photo's words ``explained``; None when there is none, or its words cannot be
    matched to the engine's).
    """
    from prodcat.image.loading import is_missing
    from prodcat.model import ocr_channel

    record = getattr(model, "ocr_", None)
    if not record or is_missing(photo):
        return None
    frame = pd.DataFrame({"image": [photo]})
    result = ocr_channel.ocr_results(frame, record["engine"], cache=getattr(model, "ocr_cache_", True))[0]
    size = None
    if result.words:
        image, _ = ocr_channel.engine_for(record["engine"]).prepare(photo)
        size = list(image.size) if image is not None else None
    same = explained is None or explained == result.text.strip()
    weights = _word_weights(result.words, result.text, text if same else None)
    return {"engine": result.engine, "status": result.status, "text": result.text, "size": size,
            "unit": getattr(text, "unit", None),
            "words": [{"text": w, "confidence": c, "box": list(b), "weight": v}
                      for w, c, b, v in zip(result.words, result.confidences, result.boxes, weights,
                                            strict=True)]}


def _word_weights(words, read: str, text) -> list[float | None]:
    """Each engine word's contribution to class 0 of ``text``: the sum over the photo tokens
    whose span falls inside it (a word the cleaning split gives several tokens)."""
    none: list[float | None] = [None] * len(words)
    if text is None or not text.classes:
        return none
    photo = [(t.span, float(w)) for t, w in zip(text.tokens, text.classes[0].tokens, strict=True)
             if t.field == "photo"]
    if not photo or any(span is None for span, _ in photo):
        return none
    # The explained words were the engine's text, stripped; spans are offsets into that.
    shift = len(read) - len(read.lstrip())
    starts, at = [], 0
    for w in words:
        at = read.find(w, at)
        if at < 0:
            return none
        starts.append((at - shift, at - shift + len(w)))
        at += len(w)
    out: list[float | None] = [0.0] * len(words)
    for (start, _), weight in photo:
        owner = next((i for i, (a, b) in enumerate(starts) if a <= start < b), None)
        if owner is None:
            return none
        out[owner] += weight  # type: ignore[operator]
    return out
