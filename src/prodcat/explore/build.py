"""Compute the exploration of a catalogue: :func:`build_exploration` (keys: see ``prodcat.explore``).

One pass cleans every title and description once; every section reads those cleaned strings.
Heavy work is vectorised (one ``CountVectorizer`` matrix gives the per-class words, the Zipf curve
and the TF-IDF centroids: :mod:`prodcat.explore.words`), image statistics run on a random sample, and only files whose byte size
collides with another's are hashed, so 85,000 listings take a few minutes at most on one core.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from prodcat.data.catalog import Catalog
from prodcat.errors import DataError
from prodcat.explore import images as img
from prodcat.explore.languages import NOT_A_LANGUAGE, language_name, load_detector
from prodcat.explore.words import (
    CLOUD_WORDS,
    DESCRIPTION_CHARS,
    MAX_SIMILARITY_CLASSES,
    TOKEN_PATTERN,
    TOP_WORDS,
    words_and_similarity,
)
from prodcat.text.cleaning import clean_text

__all__ = ["CLOUD_WORDS", "DESCRIPTION_CHARS", "EXAMPLES", "MAX_SIMILARITY_CLASSES",
           "SCHEMA_VERSION", "THUMBS_PER_CLASS", "TOKEN_PATTERN", "TOP_WORDS", "build_exploration",
           "summary_dict"]

SCHEMA_VERSION = 1
#: Duplicate / conflict groups listed as examples.
EXAMPLES = 5
#: Sample thumbnails kept per class for the report's image grid.
THUMBS_PER_CLASS = 6

_HTML = re.compile(r"<\s*/?\s*[a-zA-Z][^>]{0,200}>|&(?:#\d{1,7}|#x[0-9a-fA-F]{1,6}|[a-zA-Z]{2,8});")


def build_exploration(
    catalog: Catalog,
    *,
    image_sample: int = 2000,
    seed: int = 0,
    top_words: int = TOP_WORDS,
    examples: int = EXAMPLES,
    image_max_pixels: int = img.MAX_PIXELS,
    progress: bool = True,
) -> dict[str, Any]:
    """Explore ``catalog`` and return the summary (JSON-ready) plus ``_raw`` data for the figures.

    ``image_sample`` listings with an image are decoded (0 skips image statistics); ``seed`` makes
    the sample reproducible. Sections whose optional dependency is missing are replaced by
    ``{"available": False, "reason": ...}`` and listed in ``skipped``. See :mod:`prodcat.explore`
    for every key.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    notes: list[str] = []
    skipped: dict[str, str] = {}

    def bar(iterable: Iterable, desc: str, total: int | None = None) -> Iterable:
        from tqdm.auto import tqdm

        total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        return tqdm(iterable, desc=desc, total=total, unit="it", file=sys.stderr, leave=False,
                    mininterval=0.5, disable=not progress or (total is not None and total < 2000))

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 3)
        return now

    frame = catalog.frame
    n = len(frame)
    if n == 0:
        raise DataError(f"{catalog.source or 'the catalogue'} has no listings to explore")
    # Unlabelled rows may hold None or NaN depending on how the frame was built: make them None.
    labelled = frame["label"].notna().to_numpy()
    labels = np.where(labelled, frame["label"].astype(object).astype(str), None).astype(object)
    counts = Counter(labels[labelled].tolist())
    # Largest class first; ties by code so the order never depends on row order.
    codes = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))]
    tax = catalog.taxonomy
    if not codes:
        notes.append("the catalogue has no labels: per-class sections are left out")

    t = time.perf_counter()
    raw_titles = frame["title"].tolist()
    raw_descs = frame["description"].tolist()
    titles = [clean_text(s, strip_accents=False) for s in bar(raw_titles, "cleaning titles")]
    descs = [clean_text(s, strip_accents=False) for s in bar(raw_descs, "cleaning descriptions")]
    images_col = [p if isinstance(p, str) and p else None for p in frame["image"].tolist()]
    t = lap("cleaning", t)

    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "source": catalog.source,
        "format": catalog.format,
        "read_report": catalog.report.to_dict(),
        "parameters": {"image_sample": int(image_sample), "seed": int(seed), "top_words": int(top_words),
                       "description_chars_read": DESCRIPTION_CHARS},
    }
    out["size"] = {
        "listings": n,
        "labelled": int(labelled.sum()),
        "unlabelled": int(n - labelled.sum()),
        "classes": len(codes),
        "with_image": int(sum(p is not None for p in images_col)),
        "with_description": int(sum(bool(d) for d in descs)),
    }
    out["classes"] = [
        {"code": c, "name": tax.name(c), "parent": tax.parent(c), "count": counts[c],
         "share": counts[c] / int(labelled.sum())}
        for c in codes
    ]
    out["class_distribution"] = _class_distribution(codes, counts, tax)
    out["parents"] = _parents(codes, counts, tax)

    # -- text: missing descriptions, lengths, HTML ------------------------------------------------
    title_len = np.fromiter((len(s) for s in titles), dtype=np.int64, count=n)
    desc_len = np.fromiter((len(s) for s in descs), dtype=np.int64, count=n)
    missing = desc_len == 0
    class_rows = _class_rows(labels, labelled, codes)
    out["missing_descriptions"] = {
        "count": int(missing.sum()),
        "share": float(missing.mean()) if n else 0.0,
        "per_class": {c: {"count": int(missing[r].sum()), "share": float(missing[r].mean())}
                      for c, r in class_rows.items()},
    }
    out["text_lengths"] = {
        "unit": "characters of cleaned text (HTML removed, spaces collapsed)",
        "title": _stats(title_len),
        "description": _stats(desc_len[~missing]),
        "per_class": {c: {"title": _stats(title_len[r]), "description": _stats(desc_len[r][~missing[r]])}
                      for c, r in class_rows.items()},
    }
    html_rows = np.fromiter(
        (bool(_HTML.search(str(a or ""))) or bool(_HTML.search(str(b or "")))
         for a, b in zip(raw_titles, raw_descs, strict=True)), dtype=bool, count=n)
    out["html"] = {"listings_with_html": int(html_rows.sum()),
                   "share": float(html_rows.mean()) if n else 0.0}
    t = lap("text", t)

    # -- duplicates and label conflicts ---------------------------------------------------------
    ids = frame["id"].astype(str).tolist()
    image_keys = img.content_keys(images_col, progress=lambda it: bar(it, "hashing images"))
    text_keys = [f"{a}\x1f{b}" if a or b else None for a, b in zip(titles, descs, strict=True)]
    shown = [f"{a} | {b}" if b else a for a, b in zip(titles, descs, strict=True)]
    image_names = [p.rsplit("/", 1)[-1] if p else None for p in images_col]
    out["duplicates"] = {
        "note": ("titles and descriptions are compared after cleaning (case, HTML and spacing "
                 "ignored); images by file content; empty values are never duplicates"),
        "titles": _duplicates([s or None for s in titles], ids, titles, labels, examples),
        "descriptions": _duplicates([s or None for s in descs], ids, descs, labels, examples),
        "listings": _duplicates(text_keys, ids, shown, labels, examples),
        "images": _duplicates(image_keys, ids, image_names, labels, examples),
    }
    out["label_conflicts"] = {
        "note": ("a product filed under two or more categories: labelled listings with the same "
                 "cleaned title and description (by_listing), the same title (by_title) or the "
                 "same image file content (by_image)"),
        "by_listing": _conflicts(text_keys, labels, ids, shown, examples),
        "by_title": _conflicts([s or None for s in titles], labels, ids, titles, examples),
        "by_image": _conflicts(image_keys, labels, ids, image_names, examples),
    }
    t = lap("duplicates", t)

    # -- languages --------------------------------------------------------------------------------
    raw: dict[str, Any] = {"codes": codes, "labels": labels, "title_chars": title_len,
                           "description_chars": desc_len, "names": {c: tax.name(c) for c in codes}}
    detector, reason = load_detector()
    if detector is None:
        out["languages"] = {"available": False, "reason": reason}
        skipped["languages"] = str(reason)
    else:
        texts = (f"{a} {b[:400]}".strip() for a, b in zip(titles, descs, strict=True))
        langs = np.array([detector.detect(s) for s in bar(texts, "languages", total=n)], dtype=object)
        out["languages"] = _languages(langs, class_rows, detector.name)
        raw["languages"] = langs
    t = lap("languages", t)

    # -- words, Zipf, class similarity ------------------------------------------------------------
    docs = [f"{a} {b[:DESCRIPTION_CHARS]}" for a, b in zip(titles, descs, strict=True)]
    words, similarity = words_and_similarity(docs, labels, codes, class_rows, top_words, raw, notes)
    out["words"] = words
    out["similarity"] = similarity
    if similarity.get("available") is False:
        skipped["similarity"] = similarity["reason"]
    t = lap("words", t)

    # -- images -----------------------------------------------------------------------------------
    out["images"] = _images(images_col, labels, codes, ids, catalog.report.images_missing,
                            image_sample, seed, image_max_pixels, raw, bar)
    if out["images"].get("available") is False:
        skipped["images"] = out["images"]["reason"]
    t = lap("images", t)

    try:
        import wordcloud  # noqa: F401 - only checks the figure can be drawn later
    except ImportError:
        skipped["word_clouds"] = "word clouds need the wordcloud package (pip install 'prodcat[explore]')"

    out["notes"] = notes
    out["skipped"] = skipped
    timings["total"] = round(time.perf_counter() - t_start, 3)
    out["timings_s"] = timings
    out["_raw"] = raw
    return out


def summary_dict(exploration: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON part of an exploration: everything but the in-memory ``_raw`` figure data."""
    return {k: v for k, v in exploration.items() if not k.startswith("_")}


# ------------------------------------------------------------------------------------------------
# sections


def _class_rows(labels: np.ndarray, labelled: np.ndarray, codes: list[str]) -> dict[str, np.ndarray]:
    """Row positions of each class, in ``codes`` order (one groupby, not one scan per class)."""
    if not codes:
        return {}
    positions = np.flatnonzero(labelled)
    groups = pd.Series(labels[labelled]).groupby(labels[labelled]).indices
    return {c: positions[groups[c]] for c in codes}


def _stats(values: np.ndarray) -> dict[str, float | int]:
    if len(values) == 0:
        return {"n": 0, "mean": None, "median": None, "p90": None, "max": None}
    return {"n": int(len(values)), "mean": round(float(values.mean()), 2),
            "median": float(np.median(values)), "p90": float(np.percentile(values, 90)),
            "max": int(values.max())}


def _class_distribution(codes: list[str], counts: Counter, tax) -> dict[str, Any]:
    if not codes:
        return {"counts": {}, "largest": None, "smallest": None, "imbalance_ratio": None}
    big, small = codes[0], codes[-1]
    return {
        "counts": {c: counts[c] for c in codes},
        "largest": {"code": big, "name": tax.name(big), "count": counts[big]},
        "smallest": {"code": small, "name": tax.name(small), "count": counts[small]},
        # largest / smallest class: the "1:13" of the seed reports.
        "imbalance_ratio": round(counts[big] / counts[small], 4),
    }


def _parents(codes: list[str], counts: Counter, tax) -> dict[str, Any]:
    rows: Counter = Counter()
    members: dict[str, list[str]] = {}
    for c in codes:
        parent = tax.parent(c) or "(no parent)"
        rows[parent] += counts[c]
        members.setdefault(parent, []).append(c)
    has_parents = any(tax.parent(c) for c in codes)
    ordered = sorted(rows.items(), key=lambda kv: (-kv[1], kv[0]))
    return {"available": has_parents, "rows": dict(ordered) if has_parents else {},
            "classes": {p: members[p] for p, _ in ordered} if has_parents else {}}


def _truncate(text: object, width: int = 120) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= width else s[: width - 1] + "…"


def _duplicates(keys: Sequence[str | None], ids: Sequence[str], shown: Sequence[str],
                labels: np.ndarray, examples: int) -> dict[str, Any]:
    """Rows whose key occurs twice or more: ``rows`` (all copies), ``groups``, ``extra_copies``."""
    s = pd.Series(keys, dtype=object).dropna()
    sizes = s.value_counts()
    sizes = sizes[sizes >= 2]
    rows = int(sizes.sum())
    out: dict[str, Any] = {"rows": rows, "groups": int(len(sizes)), "extra_copies": rows - len(sizes),
                           "share": rows / len(keys) if len(keys) else 0.0, "examples": []}
    if len(sizes):
        dup = s[s.isin(sizes.index)]
        # Largest groups first, then by first appearance: stable across runs.
        first = pd.Series(dup[~dup.duplicated()].index, index=dup[~dup.duplicated()].to_numpy())
        order = sorted(sizes.index, key=lambda k: (-sizes[k], first[k]))[:examples]
        for key in order:
            idx = dup.index[dup == key].tolist()
            out["examples"].append({
                "text": _truncate(shown[idx[0]]),
                "count": len(idx),
                "ids": [ids[i] for i in idx[:10]],
                "labels": dict(Counter(str(labels[i]) for i in idx if labels[i] is not None)),
            })
    return out


def _conflicts(keys: Sequence[str | None], labels: np.ndarray, ids: Sequence[str],
               shown: Sequence[str], examples: int) -> dict[str, Any]:
    """Keys carried by labelled rows with two or more different labels."""
    df = pd.DataFrame({"key": pd.Series(keys, dtype=object), "label": pd.Series(labels, dtype=object)})
    df = df.dropna()
    if df.empty:
        return {"groups": 0, "rows": 0, "examples": []}
    nlab = df.groupby("key")["label"].nunique()
    bad = nlab[nlab >= 2].index
    rows = df[df["key"].isin(bad)]
    sizes = rows.groupby("key").size()
    firsts = rows[~rows["key"].duplicated()]
    first = pd.Series(firsts.index, index=firsts["key"].to_numpy())
    order = sorted(bad, key=lambda k: (-sizes[k], first[k]))[:examples]
    ex = []
    for key in order:
        idx = rows.index[rows["key"] == key].tolist()
        ex.append({"text": _truncate(shown[idx[0]]), "count": len(idx),
                   "labels": dict(Counter(str(labels[i]) for i in idx)), "ids": [ids[i] for i in idx[:10]]})
    return {"groups": int(len(bad)), "rows": int(len(rows)), "examples": ex}


def _languages(langs: np.ndarray, class_rows: Mapping[str, np.ndarray], detector: str) -> dict[str, Any]:
    def ordered(values: Iterable[str]) -> dict[str, int]:
        return dict(sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0])))

    overall = ordered(langs.tolist())
    judged = {k: v for k, v in overall.items() if k not in NOT_A_LANGUAGE}
    total = sum(judged.values())
    main = next(iter(judged), None)
    return {
        "available": True,
        "detector": detector,
        "note": ("title + first 400 characters of the description, per listing; 'und' = no words, "
                 "'zxx' = no linguistic content; a short title alone is often misjudged, so "
                 "rare languages are partly detector noise"),
        "overall": overall,
        "names": {k: language_name(k) for k in overall},
        "distinct": len(judged),
        "main": main,
        "main_share": judged[main] / total if main else None,
        "per_class": {c: ordered(langs[r].tolist()) for c, r in class_rows.items()},
    }


def _images(paths: list[str | None], labels: np.ndarray, codes: list[str], ids: list[str],
            reader_missing: int, sample: int, seed: int, max_pixels: int, raw: dict[str, Any],
            bar: Callable) -> dict[str, Any]:
    with_image = np.flatnonzero(np.array([p is not None for p in paths], dtype=bool))
    base = {"listings_with_image": int(len(with_image)),
            "listings_without_image": int(len(paths) - len(with_image)),
            "missing_files": int(reader_missing)}
    if sample <= 0:
        return {**base, "available": False, "reason": "image statistics switched off (--image-sample 0)"}
    if len(with_image) == 0:
        return {**base, "available": False, "reason": "no listing has an image file"}
    rng = np.random.default_rng(seed)
    chosen = with_image if len(with_image) <= sample else np.sort(
        rng.choice(with_image, size=sample, replace=False))
    statuses: Counter = Counter()
    formats: Counter = Counter()
    modes: Counter = Counter()
    sizes: Counter = Counter()
    widths, heights, file_kb, borders = [], [], [], []
    per_class: dict[str, dict[str, list]] = {c: {"border": [], "rgb": []} for c in codes}
    per_class_sampled: Counter = Counter()
    thumbs: dict[str, list] = {}
    errors: list[dict[str, str]] = []
    for i in bar(chosen, "images"):
        info = img.inspect_image(paths[i], max_pixels=max_pixels)
        statuses[info.status] += 1
        lab = labels[i]
        group = lab if lab is not None else "__unlabelled__"
        per_class_sampled[group] += 1
        if info.status != img.OK:
            if len(errors) < 10:
                errors.append({"id": ids[i], "file": str(paths[i]).rsplit("/", 1)[-1],
                               "status": info.status, "reason": info.reason})
            continue
        formats[info.format or "?"] += 1
        modes[info.mode or "?"] += 1
        sizes[f"{info.width}x{info.height}"] += 1
        widths.append(info.width)
        heights.append(info.height)
        file_kb.append((info.file_bytes or 0) / 1024)
        borders.append(info.white_border)
        if lab is not None:
            per_class[lab]["border"].append(info.white_border)
            per_class[lab]["rgb"].append(info.mean_rgb)
        if len(thumbs.setdefault(group, [])) < THUMBS_PER_CLASS:
            thumbs[group].append(info.thumbnail)
    raw["thumbnails"] = thumbs
    raw["image_width"] = np.asarray(widths)
    raw["image_height"] = np.asarray(heights)
    raw["white_border"] = np.asarray(borders, dtype=float)
    b = raw["white_border"]
    decoded = statuses[img.OK]
    return {
        **base,
        "available": True,
        "missing_files": int(reader_missing + statuses[img.MISSING]),
        "sample_size": int(sample),
        "sampled": int(len(chosen)),
        "decoded": int(decoded),
        "corrupt": int(statuses[img.CORRUPT]),
        "too_large": int(statuses[img.TOO_LARGE]),
        "vanished": int(statuses[img.MISSING]),
        "formats": dict(formats.most_common()),
        "modes": dict(modes.most_common()),
        "with_alpha": int(sum(v for m, v in modes.items() if m in ("RGBA", "LA", "PA", "La", "RGBa"))),
        "cmyk": int(modes.get("CMYK", 0)),
        "sizes": dict(sizes.most_common(10)),
        "width": _stats(np.asarray(widths)),
        "height": _stats(np.asarray(heights)),
        "file_kb": _stats(np.round(np.asarray(file_kb), 1)),
        "white_border": {
            "definition": (f"share of the image area in near-white (all channels >= {img.WHITE_LEVEL}) "
                           "bands along the edges, measured at 128 px"),
            "mean": round(float(b.mean()), 4) if decoded else None,
            "median": round(float(np.median(b)), 4) if decoded else None,
            "share_of_images_with_border": round(float((b >= 0.05).mean()), 4) if decoded else None,
        },
        "per_class": {
            c: {"sampled": int(per_class_sampled[c]), "decoded": len(per_class[c]["border"]),
                "white_border_mean": (round(float(np.mean(per_class[c]["border"])), 4)
                                      if per_class[c]["border"] else None),
                "mean_rgb": ([round(float(v), 1) for v in np.mean(per_class[c]["rgb"], axis=0)]
                             if per_class[c]["rgb"] else None)}
            for c in codes
        },
        "errors": errors,
    }
