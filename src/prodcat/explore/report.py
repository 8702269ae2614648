"""Write an exploration as ``summary.json``, ``figures/`` and a self-contained ``report.html``.

The page is Markdown converted by the evaluation report's converter (same look, same escaping),
with every figure and sample thumbnail embedded as a ``data:`` URI, so the file opens offline and
can be mailed on its own.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prodcat.evaluation.report import _CSS, _json_default, _md_escape, markdown_to_html
from prodcat.explore.build import summary_dict
from prodcat.explore.figures import MAX_CLASSES_SHOWN, class_label, make_figures

_PHOTO_FIGURES = frozenset({"word_clouds"})
_EXTRA_CSS = """
td img { max-width: 96px; max-height: 96px; margin: 1px; vertical-align: middle; }
"""


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _n(x: object) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.0f}" if x.is_integer() else f"{x:,.1f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _table(header: list[str], rows: list[list[str]], align: str) -> str:
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _cls(code: str, exp: Mapping[str, Any]) -> str:
    return _md_escape(class_label(code, exp["_raw"]["names"], 48))


def _labels_cell(labels: Mapping[str, int], exp: Mapping[str, Any]) -> str:
    return ", ".join(f"{_cls(c, exp)} ×{k}" for c, k in labels.items())


def _overview(exp: Mapping[str, Any]) -> str:
    size, dist = exp["size"], exp["class_distribution"]
    dup, conf = exp["duplicates"], exp["label_conflicts"]
    lang, ims = exp.get("languages") or {}, exp["images"]
    rows = [
        ["Listings", _n(size["listings"])],
        ["Labelled / unlabelled", f"{_n(size['labelled'])} / {_n(size['unlabelled'])}"],
        ["Classes", _n(size["classes"])],
    ]
    if dist["imbalance_ratio"] is not None:
        rows.append(["Imbalance (largest / smallest class)",
                     f"1:{dist['imbalance_ratio']:.1f} ({dist['largest']['count']:,} vs "
                     f"{dist['smallest']['count']:,})"])
    rows += [
        ["Missing descriptions", _pct(exp["missing_descriptions"]["share"])],
        ["Listings with HTML markup or entities", _pct(exp["html"]["share"])],
        ["Listings sharing their title with another", f"{_n(dup['titles']['rows'])} "
         f"({_pct(dup['titles']['share'])})"],
        ["Listings sharing their image file content", _n(dup["images"]["rows"])],
        ["Products filed under 2+ categories (same title and description)",
         f"{_n(conf['by_listing']['groups'])} ({_n(conf['by_listing']['rows'])} listings)"],
    ]
    if lang.get("available"):
        main = lang["main"]
        rows.append(["Languages detected", f"{lang['distinct']} (main: {lang['names'].get(main, main)} "
                     f"{_pct(lang['main_share'], 0)})"])
    rows.append(["Listings with an image file", _n(size["with_image"])])
    rows.append(["Image files named by the data but missing", _n(ims["missing_files"])])
    if ims.get("available"):
        rows.append(["Image sample: decoded / corrupt / too large",
                     f"{ims['decoded']:,} / {ims['corrupt']:,} / {ims['too_large']:,}"])
        if ims["white_border"]["mean"] is not None:
            rows.append(["Mean white-border share of images", _pct(ims["white_border"]["mean"])])
    return _table(["", "Value"], [[_md_escape(a), _md_escape(b)] for a, b in rows], "lr")


def _notes(exp: Mapping[str, Any]) -> str | None:
    items = [_md_escape(n) for n in exp.get("notes") or []]
    skipped = exp.get("skipped") or {}
    items += [f"Section left out, {_md_escape(k)}: {_md_escape(v)}" for k, v in skipped.items()]
    return "\n".join(f"- {i}" for i in items) if items else None


def _classes_table(exp: Mapping[str, Any]) -> str:
    lang = exp.get("languages") or {}
    md = exp["missing_descriptions"]["per_class"]
    tl = exp["text_lengths"]["per_class"]
    header = ["Code", "Name", "Parent", "Listings", "Share", "No description", "Median title chars"]
    if lang.get("available"):
        header.append("Main language")
    rows = []
    for c in exp["classes"]:
        row = [_md_escape(c["code"]), _md_escape(c["name"]), _md_escape(c["parent"] or ""),
               _n(c["count"]), _pct(c["share"]), _pct(md[c["code"]]["share"], 0),
               _n(tl[c["code"]]["title"]["median"])]
        if lang.get("available"):
            per = lang["per_class"][c["code"]]
            top = next(iter(per), None)
            row.append(f"{_md_escape(lang['names'].get(top, top))} {_pct(per[top] / sum(per.values()), 0)}"
                       if top else "–")
        rows.append(row)
    return _table(header, rows, "lllrrrr" + ("l" if lang.get("available") else ""))


def _duplicates_section(exp: Mapping[str, Any]) -> list[str]:
    dup = exp["duplicates"]
    kinds = [("titles", "Identical titles"), ("descriptions", "Identical descriptions"),
             ("listings", "Identical title and description"), ("images", "Identical image files")]
    rows = [[label, _n(dup[k]["rows"]), _n(dup[k]["groups"]), _n(dup[k]["extra_copies"]),
             _pct(dup[k]["share"])] for k, label in kinds]
    parts = [_md_escape(dup["note"]) + ".",
             _table(["Kind", "Listings", "Groups", "Extra copies", "Share"], rows, "lrrrr")]
    for k, label in kinds:
        ex = dup[k]["examples"]
        if ex:
            parts.append(f"**{label}, largest groups**")
            parts.append(_table(["Copies", "Text" if k != "images" else "File", "Labels", "Ids"], [
                [str(e["count"]), _md_escape(e["text"]), _labels_cell(e["labels"], exp),
                 _md_escape(", ".join(e["ids"][:5]))] for e in ex], "rlll"))
    return parts


def _conflicts_section(exp: Mapping[str, Any]) -> list[str]:
    conf = exp["label_conflicts"]
    kinds = [("by_listing", "Same title and description"), ("by_title", "Same title"),
             ("by_image", "Same image file")]
    parts = [_md_escape(conf["note"]) + ".",
             _table(["Same product by", "Products", "Listings"],
                    [[label, _n(conf[k]["groups"]), _n(conf[k]["rows"])] for k, label in kinds], "lrr")]
    for k, label in kinds:
        ex = conf[k]["examples"]
        if ex:
            parts.append(f"**{label}: examples**")
            parts.append(_table(["Listings", "Product", "Categories"], [
                [str(e["count"]), _md_escape(e["text"]), _labels_cell(e["labels"], exp)] for e in ex],
                "rll"))
    return parts


def _words_table(exp: Mapping[str, Any], k: int = 10) -> str:
    w = exp["words"]
    rows = [[_cls(c, exp), _md_escape(", ".join(word for word, _ in words[:k]))]
            for c, words in w["per_class"].items()]
    if not rows:
        rows = [["all listings", _md_escape(", ".join(word for word, _ in w["overall"][:k]))]]
    return _table(["Class", f"Most frequent words (top {k}, by listings containing them)"], rows, "ll")


def _image_section(exp: Mapping[str, Any], figs: Mapping[str, str], thumbs: dict[str, str]) -> list[str]:
    ims = exp["images"]
    parts = []
    if not ims.get("available"):
        parts.append(_md_escape(f"No image statistics: {ims['reason']}. "
                                f"{ims['listings_with_image']:,} listings have an image file, "
                                f"{ims['missing_files']:,} image files named by the data are missing."))
        return parts
    rows = [
        ["Listings with an image file", _n(ims["listings_with_image"])],
        ["Image files named but missing", _n(ims["missing_files"])],
        ["Sampled (seeded random sample)", f"{ims['sampled']:,} of at most {ims['sample_size']:,}"],
        ["Decoded", _n(ims["decoded"])],
        ["Corrupt or not an image", _n(ims["corrupt"])],
        ["Too large to decode", _n(ims["too_large"])],
        ["Formats", _md_escape(", ".join(f"{k} {v}" for k, v in ims["formats"].items()))],
        ["Colour modes", _md_escape(", ".join(f"{k} {v}" for k, v in ims["modes"].items()))],
        ["Most common sizes", _md_escape(", ".join(f"{k} ×{v}" for k, v in list(ims["sizes"].items())[:5]))],
        ["Median file size", f"{_n(ims['file_kb']['median'])} KB"],
        ["White-border share: mean / median", f"{_pct(ims['white_border']['mean'])} / "
         f"{_pct(ims['white_border']['median'])}"],
        ["Images with at least 5% white border", _pct(ims["white_border"]["share_of_images_with_border"])],
    ]
    parts.append(_table(["", "Value"], rows, "lr"))
    parts.append(_md_escape(ims["white_border"]["definition"]) + ".")
    for name in ("image_sizes", "image_colours"):
        if name in figs:
            parts.append(f"![{name}]({figs[name]})")
    grid = exp["_raw"].get("thumbnails") or {}
    order = [c for c in exp["_raw"]["codes"] if c in grid][:MAX_CLASSES_SHOWN]
    order += [g for g in grid if g == "__unlabelled__"]
    if order:
        parts.append("**Sample images per class** (from the seeded sample)")
        rows = []
        for g in order:
            cells = []
            for im in grid[g]:
                key = f"thumb-{len(thumbs)}"
                thumbs[key] = _data_uri_jpeg(im)
                cells.append(f"![]({key})")
            rows.append([_cls(g, exp) if g != "__unlabelled__" else "unlabelled", " ".join(cells)])
        parts.append(_table(["Class", "Images"], rows, "ll"))
    if ims["errors"]:
        parts.append("**Images that could not be used** (first ones)")
        parts.append(_table(["Id", "File", "Status", "Reason"], [
            [_md_escape(e["id"]), _md_escape(e["file"]), e["status"], _md_escape(e["reason"])]
            for e in ims["errors"]], "llll"))
    return parts


def _data_uri_jpeg(image: Any) -> str:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _markdown(exp: Mapping[str, Any], title: str, figs: Mapping[str, str],
              thumbs: dict[str, str], failed: Mapping[str, str]) -> str:
    def fig(name: str) -> list[str]:
        return [f"![{name}]({figs[name]})"] if name in figs else []

    parts = [f"# {_md_escape(title)}",
             _md_escape(f"Source: {exp['source'] or 'in-memory catalogue'} "
                        f"({exp['format'] or 'unknown format'}). Generated "
                        f"{time.strftime('%Y-%m-%d %H:%M')} in {exp['timings_s']['total']:.1f} s."),
             "## Overview", _overview(exp)]
    notes = _notes(exp)
    if failed:
        notes = "\n".join([notes or "", *(f"- Figure {_md_escape(k)} could not be drawn: {_md_escape(v)}"
                                          for k, v in failed.items())]).strip()
    if notes:
        parts += ["**Notes**", notes]
    if exp["classes"]:
        parts += ["## Classes", *fig("class_distribution"), _classes_table(exp)]
        par = exp["parents"]
        if par["available"]:
            parts += ["## Rows per parent category", _table(
                ["Parent", "Listings", "Classes"],
                [[_md_escape(p), _n(v), _md_escape(", ".join(par["classes"][p]))]
                 for p, v in par["rows"].items()], "lrl")]
    md = exp["missing_descriptions"]
    tl = exp["text_lengths"]
    parts += ["## Text",
              _md_escape(f"{md['count']:,} listings ({_pct(md['share'])}) have no description once HTML "
                         f"is removed; {exp['html']['listings_with_html']:,} ({_pct(exp['html']['share'])}) "
                         f"carry HTML tags or entities. Median title {_n(tl['title']['median'])} characters; "
                         f"median description {_n(tl['description']['median'])} characters "
                         f"(90th percentile {_n(tl['description']['p90'])})."),
              *fig("missing_descriptions"), *fig("text_lengths")]
    parts += ["## Duplicates", *_duplicates_section(exp)]
    parts += ["## Label conflicts", *_conflicts_section(exp)]
    lang = exp.get("languages") or {}
    parts.append("## Languages")
    if lang.get("available"):
        top = list(lang["overall"].items())[:15]
        parts += [_md_escape(f"Detector: {lang['detector']} (offline); {lang['note']}."), *fig("languages"),
                  _table(["Language", "Code", "Listings"],
                         [[_md_escape(lang["names"].get(c, c)), c, _n(v)] for c, v in top],
                         "llr")]
    else:
        parts.append(_md_escape(f"Left out: {lang.get('reason')}."))
    w = exp["words"]
    parts.append("## Words")
    if w.get("available"):
        parts += [_md_escape(w["note"]) + "."]
        if "word_clouds" in figs:
            parts += fig("word_clouds")
        elif "word_clouds" in (exp.get("skipped") or {}):
            parts.append(_md_escape(f"Word clouds left out: {exp['skipped']['word_clouds']}."))
        parts += [_words_table(exp), *fig("zipf")]
    else:
        parts.append(_md_escape(f"Left out: {w.get('reason')}."))
    parts += ["## Images", *_image_section(exp, figs, thumbs)]
    sim = exp["similarity"]
    parts.append("## Class similarity")
    if sim.get("available"):
        parts += [_md_escape(sim["method"]) + ".", *fig("dendrogram"),
                  "**Most similar pairs of classes**",
                  _table(["Class", "Class", "Cosine similarity"],
                         [[_cls(p["a"], exp), _cls(p["b"], exp), f"{p['cosine']:.3f}"]
                          for p in sim["closest_pairs"]], "llr")]
    else:
        parts.append(_md_escape(f"Left out: {sim.get('reason')}."))
    parts += ["## Timings", _table(["Step", "Seconds"],
                                   [[_md_escape(k), f"{v:.2f}"] for k, v in exp["timings_s"].items()], "lr")]
    return "\n\n".join(parts) + "\n"


def write_exploration_report(
    exploration: Mapping[str, Any],
    out_dir: str | Path,
    *,
    title: str | None = None,
    dpi: int = 90,
) -> dict[str, Path]:
    """Write ``summary.json``, ``figures/<name>.png`` (word clouds: ``.jpg``) and ``report.html``.

    Returns the paths keyed ``summary_json``, ``report_html`` and ``figure_<name>``.
    """
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    path = out / "summary.json"
    path.write_text(json.dumps(summary_dict(exploration), indent=2, ensure_ascii=False,
                               default=_json_default) + "\n", encoding="utf-8")
    written["summary_json"] = path

    uris: dict[str, str] = {}
    figs: dict[str, str] = {}
    failed: dict[str, str] = {}
    for name, fig in make_figures(exploration, failed).items():
        # Word clouds are pictures, not line art: as PNG they weigh megabytes.
        fmt = "jpeg" if name in _PHOTO_FIGURES else "png"
        path = out / "figures" / f"{name}.{'jpg' if fmt == 'jpeg' else 'png'}"
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi, **({"pil_kwargs": {"quality": 85}} if fmt == "jpeg" else {}))
        path.write_bytes(buf.getvalue())
        written[f"figure_{name}"] = path
        figs[name] = f"fig-{name}"
        uris[figs[name]] = f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode("ascii")

    source = exploration.get("source") or ""
    title = title or f"prodcat data exploration: {Path(source).name or 'catalogue'}"
    md = _markdown(exploration, title, figs, uris, failed)
    # Only our own keys become src attributes: anything else would be a broken (or external) link.
    body = markdown_to_html(md, lambda key: uris.get(key, ""))
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}{_EXTRA_CSS}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    written["report_html"] = path
    return written
