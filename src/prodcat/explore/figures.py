"""Figures of an exploration, drawn on matplotlib ``Figure`` objects (Agg, no pyplot state).

:func:`make_figures` returns ``{name: Figure}`` so that the HTML report saves them as PNG and a
web page can show the same objects. A figure whose data is absent (no labels, no images, no
optional dependency) is simply not in the dict; the report explains why.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from prodcat.explore.languages import NOT_A_LANGUAGE

#: Per-class figures show at most this many classes (the largest); summary.json has them all.
MAX_CLASSES_SHOWN = 60
#: Word clouds drawn (largest classes first).
MAX_CLOUDS = 30
_BLUE, _ORANGE, _GREY = "#4c72b0", "#dd8452", "#8c8c8c"
# boxplot's ``vert`` is deprecated from matplotlib 3.10 on, whose ``orientation`` 3.7 lacks.
_HORIZONTAL = ({"orientation": "horizontal"}
               if tuple(int(p) for p in matplotlib.__version__.split(".")[:2]) >= (3, 10)
               else {"vert": False})


def class_label(code: str, names: Mapping[str, str], width: int = 40) -> str:
    name = names.get(code) or code
    if name == code or len(code) > 12:
        # A long code is itself text (Flipkart's "Home Furnishing >> Bed Linen"): show it alone,
        # cut from the left so that the leaf category stays readable.
        return code if len(code) <= width else "…" + code[-(width - 1):]
    # Shorten the name, never the code: the code is what users look up.
    room = max(8, width - len(code) - 3)
    short = name if len(name) <= room else name[: room - 1] + "…"
    return f"{short} ({code})"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _shown_codes(exp: Mapping[str, Any]) -> list[str]:
    return list(exp["_raw"]["codes"])[:MAX_CLASSES_SHOWN]


def _class_height(k: int) -> float:
    # About a quarter inch per class keeps 8-pt labels apart.
    return max(2.5, 0.25 * k + 1.2)


def plot_class_distribution(exp: Mapping[str, Any]) -> Figure | None:
    dist = exp["class_distribution"]
    codes = _shown_codes(exp)
    if not codes:
        return None
    names = exp["_raw"]["names"]
    counts = np.array([dist["counts"][c] for c in codes])
    fig = _figure(8.0, _class_height(len(codes)))
    ax = fig.add_subplot()
    y = np.arange(len(codes))
    ax.barh(y, counts, color=_BLUE)
    ax.set_yticks(y, labels=[class_label(c, names) for c in codes], fontsize=8)
    ax.invert_yaxis()
    for yi, v in zip(y, counts, strict=True):
        ax.text(v, yi, f" {v:,}", va="center", fontsize=7)
    ax.set_xlim(0, counts.max() * 1.15)
    ax.set_xlabel("listings")
    ax.set_title(f"Listings per class (imbalance largest/smallest = 1:{dist['imbalance_ratio']:.1f})")
    return fig


def plot_missing_descriptions(exp: Mapping[str, Any]) -> Figure | None:
    md = exp["missing_descriptions"]
    codes = _shown_codes(exp)
    if not codes:
        return None
    names = exp["_raw"]["names"]
    share = np.array([md["per_class"][c]["share"] for c in codes]) * 100
    fig = _figure(8.0, _class_height(len(codes)))
    ax = fig.add_subplot()
    y = np.arange(len(codes))
    ax.barh(y, share, color=_ORANGE)
    ax.axvline(md["share"] * 100, color="black", linestyle="--", linewidth=1,
               label=f"all listings: {md['share']:.0%}")
    ax.set_yticks(y, labels=[class_label(c, names) for c in codes], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of listings without a description")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Missing descriptions per class")
    return fig


def plot_text_lengths(exp: Mapping[str, Any]) -> Figure | None:
    raw = exp["_raw"]
    labels, tl, dl = raw["labels"], raw["title_chars"], raw["description_chars"]
    codes = _shown_codes(exp)
    groups = [(c, labels == c) for c in codes] if codes else [("all listings", np.ones(len(tl), bool))]
    names = raw["names"]
    has_desc = bool((dl > 0).any())
    fig = _figure(11.0 if has_desc else 6.5, _class_height(len(groups)))
    if has_desc:
        ax_t, ax_d = fig.subplots(1, 2, sharey=True)
    else:
        ax_t, ax_d = fig.add_subplot(), None
    ticks = [class_label(c, names) for c, _ in groups]
    box = {**_HORIZONTAL, "showfliers": False, "widths": 0.6, "patch_artist": True,
           "medianprops": {"color": "black"}}
    boxes = [(ax_t.boxplot([tl[m] for _, m in groups], **box), _BLUE)]
    if ax_d is not None:
        # Log scale: descriptions run from 20 to 10,000 characters; empty ones are left out
        # (a class without any gets an empty row).
        boxes.append((ax_d.boxplot([dl[m][dl[m] > 0] if (dl[m] > 0).any() else [np.nan]
                                    for _, m in groups], **box), _ORANGE))
        ax_d.set_xscale("log")
        ax_d.set_xlabel("description length (characters, log; empty ones left out)")
        ax_d.set_title("Description length")
    for b, colour in boxes:
        for patch in b["boxes"]:
            patch.set_facecolor(colour)
            patch.set_alpha(0.6)
    ax_t.set_yticks(np.arange(1, len(groups) + 1), labels=ticks, fontsize=8)
    ax_t.invert_yaxis()
    ax_t.set_xlabel("title length (characters)")
    ax_t.set_title("Title length" if has_desc else "Title length (no listing has a description)")
    return fig


def plot_languages(exp: Mapping[str, Any]) -> Figure | None:
    lang = exp.get("languages") or {}
    if not lang.get("available"):
        return None
    overall = lang["overall"]
    top = [k for k in overall if k not in NOT_A_LANGUAGE][:8]
    codes = _shown_codes(exp)
    names = exp["_raw"]["names"]
    k = len(codes)
    fig = _figure(12.0, max(3.5, _class_height(k)) if k else 3.5)
    if k:
        ax_all, ax_cls = fig.subplots(1, 2, width_ratios=[1, 2.2])
    else:
        ax_all, ax_cls = fig.add_subplot(), None
    shown = list(overall.items())[:15]
    y = np.arange(len(shown))
    ax_all.barh(y, [v for _, v in shown], color=_BLUE)
    ax_all.set_yticks(y, labels=[f"{lang['names'].get(c, c)} ({c})" for c, _ in shown], fontsize=8)
    # Always 15 slots from the top: two languages should not make two giant bars.
    ax_all.set_ylim(max(len(shown), 15) - 0.5, -0.5)
    ax_all.set_xscale("log")
    ax_all.set_xlabel("listings (log)")
    ax_all.set_title(f"Languages: {lang['distinct']} detected")
    if ax_cls is not None:
        cmap = _palette(len(top) + 1)
        left = np.zeros(k)
        for j, code in enumerate([*top, "other"]):
            vals = []
            for c in codes:
                per = lang["per_class"][c]
                total = sum(per.values()) or 1
                v = (sum(n for lc, n in per.items() if lc not in top) if code == "other"
                     else per.get(code, 0))
                vals.append(100 * v / total)
            ax_cls.barh(np.arange(k), vals, left=left, color=cmap[j],
                        label=lang["names"].get(code, code))
            left += np.array(vals)
        ax_cls.set_yticks(np.arange(k), labels=[class_label(c, names) for c in codes], fontsize=8)
        ax_cls.invert_yaxis()
        ax_cls.set_xlim(0, 100)
        ax_cls.set_xlabel("% of the class's listings")
        ax_cls.set_title("Languages per class")
        ax_cls.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _palette(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n - 1)] + [(0.75, 0.75, 0.75, 1.0)]


def plot_word_clouds(exp: Mapping[str, Any], seed: int = 0) -> Figure | None:
    try:
        from wordcloud import WordCloud
    except ImportError:
        return None
    clouds = exp["_raw"].get("cloud_words") or {}
    codes = [c for c in exp["_raw"]["codes"] if clouds.get(c)][:MAX_CLOUDS] or (
        ["__all__"] if clouds.get("__all__") else [])
    if not codes:
        return None
    names = exp["_raw"]["names"]
    cols = min(4, len(codes))
    rows = -(-len(codes) // cols)
    # No layout engine: the axes carry no ticks, and constrained layout would draw the whole
    # grid of pictures twice.
    fig = Figure(figsize=(3.2 * cols, 2.3 * rows))
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    top = 1 - 0.3 / (2.3 * rows)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=top, wspace=0.04,
                        hspace=0.35 / 2.3 + 0.05)
    for ax, c in zip(axes, codes, strict=False):
        wc = WordCloud(width=360, height=230, background_color="white", random_state=seed,
                       max_words=50, prefer_horizontal=0.9, colormap="Dark2")
        ax.imshow(wc.generate_from_frequencies(clouds[c]).to_array(), interpolation="bilinear")
        ax.set_title(class_label(c, names, 40) if c != "__all__" else "all listings", fontsize=9)
    for ax in axes:
        ax.axis("off")
    return fig


def plot_zipf(exp: Mapping[str, Any]) -> Figure | None:
    freq = exp["_raw"].get("zipf_frequencies")
    if freq is None or len(freq) == 0:
        return None
    w = exp["words"]
    ranks = np.arange(1, len(freq) + 1)
    fig = _figure(6.5, 4.5)
    ax = fig.add_subplot()
    ax.loglog(ranks, freq, color=_BLUE, linewidth=1.5, label="vocabulary")
    fit = exp["_raw"].get("zipf_fit")
    if fit is not None:
        s, intercept = fit
        ax.loglog(ranks, np.exp(intercept) * ranks ** s, "--", color=_GREY, linewidth=1,
                  label=f"least-squares fit, slope {s:.2f} (Zipf's law: -1)")
    ax.set_xlabel("rank of the word")
    ax.set_ylabel("occurrences")
    ax.set_title(f"Zipf curve: {w['vocabulary_size']:,} words, {w['tokens']:,} occurrences, "
                 f"{w['hapax_share']:.0%} seen once", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plot_image_sizes(exp: Mapping[str, Any]) -> Figure | None:
    raw = exp["_raw"]
    if not exp["images"].get("available") or len(raw.get("image_width", [])) == 0:
        return None
    w, h, b = raw["image_width"], raw["image_height"], raw["white_border"]
    fig = _figure(11.0, 4.0)
    ax_s, ax_b = fig.subplots(1, 2)
    # Many photos share one size: transparency shows the piles, and the title names the
    # commonest size, which a single dot would otherwise hide.
    ax_s.scatter(w, h, s=14, alpha=0.3, color=_BLUE, edgecolors="none")
    ax_s.set_xlim(0, max(w.max(), h.max()) * 1.1)
    ax_s.set_ylim(0, max(w.max(), h.max()) * 1.1)
    ax_s.set_aspect("equal", adjustable="box")
    ax_s.set_xlabel("width (px)")
    ax_s.set_ylabel("height (px)")
    top_size, top_n = next(iter(exp["images"]["sizes"].items()))
    ax_s.set_title(f"Image sizes ({len(w):,} decoded; {top_n / len(w):.0%} are {top_size})")
    ax_b.hist(b * 100, bins=np.linspace(0, 100, 21), color=_ORANGE, edgecolor="white")
    ax_b.set_xlabel("% of the image area in white borders")
    ax_b.set_ylabel("images")
    ax_b.set_title(f"White borders (mean {b.mean():.0%})")
    return fig


def plot_image_colours(exp: Mapping[str, Any]) -> Figure | None:
    ims = exp["images"]
    if not ims.get("available"):
        return None
    names = exp["_raw"]["names"]
    codes = [c for c in _shown_codes(exp) if (ims["per_class"].get(c) or {}).get("decoded")]
    if not codes:
        return None
    k = len(codes)
    fig = _figure(9.0, _class_height(k))
    ax = fig.add_subplot()
    y = np.arange(k)
    borders = [100 * ims["per_class"][c]["white_border_mean"] for c in codes]
    colours = [tuple(v / 255 for v in ims["per_class"][c]["mean_rgb"]) for c in codes]
    # The bar is painted in the class's mean colour: one glance shows both numbers.
    ax.barh(y, borders, color=colours, edgecolor="black", linewidth=0.5)
    for yi, c, v in zip(y, codes, borders, strict=True):
        ax.text(v, yi, f" {v:.0f}%  (n={ims['per_class'][c]['decoded']})", va="center", fontsize=7)
    ax.set_yticks(y, labels=[class_label(c, names) for c in codes], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 115)
    ax.set_xlabel("mean % of the image area in white borders\n"
                  "(bar colour: mean colour of the images inside their borders)")
    ax.set_title("White borders and mean colour per class")
    return fig


def plot_dendrogram(exp: Mapping[str, Any]) -> Figure | None:
    raw = exp["_raw"]
    Z = raw.get("linkage")
    if Z is None:
        return None
    from scipy.cluster.hierarchy import dendrogram

    codes = raw["linkage_codes"]
    names = raw["names"]
    fig = _figure(9.0, _class_height(len(codes)))
    ax = fig.add_subplot()
    dendrogram(Z, labels=[class_label(c, names, 40) for c in codes], orientation="left", ax=ax,
               leaf_font_size=8, color_threshold=0.7 * float(Z[:, 2].max()),
               above_threshold_color=_GREY)
    ax.set_xlabel("cosine distance between TF-IDF centroids (average linkage)")
    ax.set_title("Class similarity: classes joined early are the ones a model will confuse")
    return fig


FIGURES = {
    "class_distribution": plot_class_distribution,
    "missing_descriptions": plot_missing_descriptions,
    "text_lengths": plot_text_lengths,
    "languages": plot_languages,
    "word_clouds": plot_word_clouds,
    "zipf": plot_zipf,
    "image_sizes": plot_image_sizes,
    "image_colours": plot_image_colours,
    "dendrogram": plot_dendrogram,
}


def make_figures(exploration: Mapping[str, Any], failed: dict[str, str] | None = None) -> dict[str, Figure]:
    """Every figure the exploration has data for, keyed by name (see :data:`FIGURES`).

    A figure that raises is left out with a ``RuntimeWarning``; ``failed`` (when given) receives
    ``{name: error}`` for each.
    """
    failed = {} if failed is None else failed
    seed = int((exploration.get("parameters") or {}).get("seed", 0))
    out: dict[str, Figure] = {}
    for name, plot in FIGURES.items():
        try:
            fig = plot(exploration, seed=seed) if name == "word_clouds" else plot(exploration)
        except Exception as exc:
            # One figure that cannot be drawn on odd data must not cost the whole report: the
            # warning names it (the CLI prints it) and the report says it is missing.
            warnings.warn(f"figure {name} could not be drawn: {type(exc).__name__}: {exc}",
                          RuntimeWarning, stacklevel=2)
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        if fig is not None:
            out[name] = fig
    return out
