"""What the review page computes, kept free of Streamlit so it can be tested directly: the
taxonomy search, one decision and the next claim, the text/photo agreement line, the numbers."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from prodcat.review import ReviewStore

#: What each queue reason means to a reviewer.
REASONS = {"low_confidence": "the model is unsure",
           "modalities_disagree": "text and photo disagree",
           "suspected_label_error": "the label it came with looks wrong (audit)",
           "feedback": "a correction was proposed"}


def _fold(text: str) -> str:
    """Lower case without accents: what the search compares."""
    return "".join(c for c in unicodedata.normalize("NFKD", str(text or "").lower())
                   if not unicodedata.combining(c))


def category_label(category: dict) -> str:
    parent = f" — {category['parent']}" if category.get("parent") else ""
    return f"{category['name']} ({category['code']}){parent}"


def search_categories(categories: Sequence[dict], query: str, limit: int = 50) -> list[dict]:
    """The categories whose name, parent or code contain every word of ``query`` (case and
    accents ignored): names that start with the query first, then names that contain it, then
    matches on the parent alone; all of them, by parent and name, for an empty query."""
    words = _fold(query).split()
    rows = []
    for c in categories:
        name, parent, code = _fold(c.get("name")), _fold(c.get("parent")), _fold(c.get("code"))
        if not all(w in name or w in parent or w == code or code.startswith(w) for w in words):
            continue
        q = " ".join(words)
        rank = (0 if not words or name.startswith(q) or code == q else
                1 if all(w in name for w in words) else 2)
        rows.append((rank, parent, name, c))
    rows.sort(key=lambda r: r[:3])
    return [r[3] for r in rows[:limit]]


def photo_bytes(store: ReviewStore, item: dict) -> bytes | None:
    """The item's photo from the store's folder, or None (no photo, or its file is gone)."""
    sha = item.get("photo_sha256")
    if not sha:
        return None
    try:
        return store.photo_path(sha).read_bytes()
    except OSError:
        return None


def agreement(result: dict | None) -> str:
    """Whether text and photo chose the same category, from a classification's ``modalities``."""
    if not result:
        return "No answer to compare text and photo with."
    mods = result.get("modalities") or {}
    text, image = mods.get("text"), mods.get("image")
    if "image" not in mods:
        return "This model reads text only: no photo opinion."
    if not image:
        return "No usable photo: the text decided alone."
    if not text:
        return f"No text: the photo decided ({image[0]['name']})."
    if text[0]["code"] == image[0]["code"]:
        return f"Text and photo agree: **{text[0]['name']}**."
    return (f"Text and photo **disagree**: the text says {text[0]['name']} "
            f"({100 * text[0]['probability']:.0f} %), the photo {image[0]['name']} "
            f"({100 * image[0]['probability']:.0f} %).")


def claim(store: ReviewStore, reviewer: str, *, order: str = "uncertain",
          exclude: Iterable[int] = ()) -> dict[str, Any] | None:
    """The next item for ``reviewer`` (claimed under a lease), skipping ``exclude``."""
    return store.claim_next(reviewer, order=order, exclude=list(exclude))


def decide_and_next(store: ReviewStore, item: dict, label: str, reviewer: str, *,
                    comment: str | None = None, order: str = "uncertain",
                    exclude: Iterable[int] = ()) -> tuple[dict, dict | None, dict]:
    """What one click on the review page does: decide ``item`` under its claim, claim the next
    one, read the numbers again. ``(decision, next item or None, stats)``; a refused decision
    (already decided, held by someone else) raises the store's :class:`ReviewError`."""
    token = (item.get("claim") or {}).get("token")
    decision = store.decide(item["id"], label, reviewer, comment=comment or None, claim=token)
    nxt = claim(store, reviewer, order=order, exclude=exclude)
    return decision, nxt, store.stats()


def headline(stats: dict) -> list[tuple[str, str, str]]:
    """(label, value, help) of the numbers the review page shows above the item."""
    precision = stats.get("model_precision_on_reviewed")
    judged = stats.get("reviewed_with_model_answer", 0)
    return [
        ("Queue", f"{stats.get('open', 0):,}",
         f"items waiting for a decision ({stats.get('claimed', 0)} held by reviewers now)"),
        ("Reviewed today", f"{stats.get('decided_today', 0):,}",
         f"decisions since midnight UTC ({stats.get('decided', 0):,} in all)"),
        ("Model precision (reviewed)", "–" if precision is None else f"{100 * precision:.1f} %",
         f"share of the {judged} reviewed items with a model answer whose decision was the "
         "model's top-1"),
    ]
