"""Write an evaluation as metrics.json, two figures, report.md and a self-contained report.html.

Figures are drawn on ``Figure`` objects with the Agg canvas rather than through pyplot, so a
report can be written from any thread and never changes the caller's matplotlib backend.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

_NAME_WIDTH = 28

_CV_NAMES = {
    "weighted_f1": "Weighted F1",
    "macro_f1": "Macro F1",
    "accuracy": "Accuracy",
    "top3_accuracy": "Top-3 accuracy",
    "ece": "ECE",
    "log_loss": "Log loss",
}


# --------------------------------------------------------------------------------------------
# formatting helpers


def _num(x: object, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{float(x):.{digits}f}"


def _pct(x: object) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{100 * float(x):.1f}%"


def _truncate(text: str, width: int = _NAME_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _md_escape(text: object) -> str:
    """Make arbitrary text (a category name) inert inside Markdown and table cells."""
    s = " ".join(str(text).split())
    return re.sub(r"([\\`*_\[\]<>|#!])", r"\\\1", s)


def _label(code: str, name: str | None) -> str:
    if not name or name == code:
        return code
    return f"{_truncate(name)} ({code})"


def _table(header: list[str], rows: list[list[str]], align: str) -> str:
    """Markdown table; ``align`` has one of ``l``/``r`` per column."""
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _json_default(obj: object):
    # Callers may add numpy values (CV fold scores, timings) next to compute_metrics' output.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to metrics.json")


# --------------------------------------------------------------------------------------------
# figures


def _plot_confusion(metrics: Mapping, path: Path) -> bool:
    conf = metrics.get("confusion") or {}
    labels = list(conf.get("labels") or [])
    if not labels:
        return False
    cm = np.asarray(conf["matrix"], dtype=float).reshape(len(labels), len(labels))
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    per_class = metrics.get("per_class") or {}
    ticks = [_label(c, (per_class.get(c) or {}).get("name")) for c in labels]

    k = len(labels)
    # About a quarter inch per class at 60 classes keeps 7-pt tick labels legible; the margins
    # are sized from the longest label instead of by a layout engine, which would draw the
    # figure twice (slow with hundreds of tick labels).
    font = 9 if k <= 20 else 8 if k <= 40 else 7
    cell = 0.45 if k <= 20 else 0.3 if k <= 40 else 0.24
    side = max(4.0, cell * k)
    margin = max(len(t) for t in ticks) * font * 0.6 / 72 + 0.6
    top, right = 0.6, 1.3
    width, height = margin + side + right, margin + side + top
    fig = _figure(figsize=(width, height))
    ax = fig.add_axes((margin / width, margin / height, side / width, side / height))
    cax = fig.add_axes(((margin + side + 0.25) / width, margin / height, 0.2 / width,
                        side / height))
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
    ax.set_xticks(range(k), labels=ticks, rotation=90, fontsize=font)
    ax.set_yticks(range(k), labels=ticks, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (share of each true class)")
    if k <= 25:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=font - 1,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, cax=cax)
    fig.savefig(path, dpi=100)
    return True


def _figure(**options):
    """A Matplotlib figure drawn by Agg. Imported here, not at module level: loading a model
    imports this package (its automation thresholds), and Matplotlib alone cost a fifth of a
    fresh process's model load."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**options)
    FigureCanvasAgg(fig)
    return fig


def _plot_reliability(metrics: Mapping, path: Path) -> bool:
    bins = [b for b in metrics.get("reliability") or [] if b.get("count")]
    if not bins:
        return False
    fig = _figure(figsize=(6.0, 7.0), layout="constrained")
    ax, hist = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    lower = np.array([b["lower"] for b in bins])
    width = np.array([b["upper"] - b["lower"] for b in bins])
    acc = np.array([b["accuracy"] for b in bins])
    mean_conf = np.array([b["mean_confidence"] for b in bins])
    counts = np.array([b["count"] for b in bins])
    ax.bar(lower, acc, width=width, align="edge", color="#4c72b0", edgecolor="white",
           label="accuracy")
    ax.plot(mean_conf, acc, "o", color="#dd8452", markersize=4, label="mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"Reliability of top-1 confidence (ECE = {_num(metrics.get('ece'))})")
    hist.bar(lower, counts, width=width, align="edge", color="#8c8c8c", edgecolor="white")
    hist.set_xlabel("top-1 confidence")
    hist.set_ylabel("listings")
    fig.savefig(path, dpi=100)
    return True


# --------------------------------------------------------------------------------------------
# markdown


def _headline(m: Mapping) -> str:
    rows = [
        ["Listings (n)", str(m.get("n", "–"))],
        ["Weighted F1", _num(m.get("weighted_f1"))],
        ["Macro F1", _num(m.get("macro_f1"))],
        ["Accuracy", _pct(m.get("accuracy"))],
        ["Top-3 accuracy", _pct(m.get("top3_accuracy"))],
        ["ECE", _num(m.get("ece"))],
        ["Log loss", _num(m.get("log_loss"))],
    ]
    parent = m.get("parent")
    if parent:  # one level up the taxonomy: a wrong kind of book is still a book
        rows += [[f"Parent category weighted F1 ({parent['n_parents']} parents)", _num(parent["weighted_f1"])],
                 ["Parent category accuracy", _pct(parent["accuracy"])]]
    return _table(["Metric", "Value"], rows, "lr")


def _coverage(m: Mapping) -> str:
    rows = [
        [_pct(c["threshold"]).replace(".0%", "%"), _pct(c["coverage"]), str(c["n_automated"]),
         _pct(c["accuracy"])]
        for c in m.get("coverage") or []
    ]
    intro = ("Listings whose top-1 probability reaches the threshold could be categorised "
             "automatically; the rest would go to a person.")
    return intro + "\n\n" + _table(["Threshold", "Coverage", "Automated", "Accuracy"], rows, "rrrr")


def _cross_validation(cv: Mapping) -> str:
    scores = [s for s in cv.get("fold_scores") or [] if isinstance(s, Mapping)]
    keys: list[str] = []
    for s in scores:
        keys += [k for k, v in s.items() if k not in keys and k not in ("fold", "seed")
                 and isinstance(v, (int, float)) and not isinstance(v, bool)]
    rows = []
    for k in keys:
        vals = np.array([float(s[k]) for s in scores if s.get(k) is not None], dtype=float)
        if len(vals):
            rows.append([_CV_NAMES.get(k, _md_escape(k)), _num(vals.mean()), _num(vals.std()),
                         f"{_num(vals.mean())} ± {_num(vals.std())}"])
    folds = cv.get("folds", len(scores))
    intro = f"{folds}-fold cross-validation; std is over folds."
    return intro + "\n\n" + _table(["Metric", "Mean", "Std", "Mean ± std"], rows, "lrrr")


def _per_class(m: Mapping) -> str:
    pc = m.get("per_class") or {}
    # Classes absent from the evaluation data go last: their zero F1 says nothing.
    order = sorted(pc, key=lambda c: (pc[c].get("support", 0) == 0, pc[c].get("f1", 0.0), c))
    rows = [
        [_md_escape(c), _md_escape(pc[c].get("name") or c), _md_escape(pc[c].get("parent") or ""),
         _num(pc[c].get("precision")), _num(pc[c].get("recall")), _num(pc[c].get("f1")),
         str(pc[c].get("support", 0))]
        for c in order
    ]
    header = ["Code", "Name", "Parent", "Precision", "Recall", "F1", "Support"]
    return "Sorted by F1, worst first.\n\n" + _table(header, rows, "lllrrrr")


def _unseen(m: Mapping) -> str | None:
    un = m.get("unseen_labels") or {}
    if not un.get("count"):
        return None
    n = m.get("n") or 0
    pc = m.get("per_class") or {}
    share = f" ({_pct(un['count'] / n)})" if n else ""
    rows = [[_md_escape(c), _md_escape((pc.get(c) or {}).get("name") or c), str(k)]
            for c, k in (un.get("labels") or {}).items()]
    noun, verb = ("listing", "carries") if un["count"] == 1 else ("listings", "carry")
    intro = (f"{un['count']} {noun}{share} {verb} a category the model was never trained on; "
             "they count as errors in every metric except log loss.")
    return intro + "\n\n" + _table(["Code", "Name", "Listings"], rows, "llr")


def _markdown(metrics: Mapping, title: str, images: Mapping[str, str],
              extra: list[tuple[str, str]]) -> str:
    parts = [f"# {_md_escape(title)}", _headline(metrics),
             "## Accuracy vs coverage", _coverage(metrics)]
    if isinstance(metrics.get("cv"), Mapping):
        parts += ["## Cross-validation", _cross_validation(metrics["cv"])]
    if "reliability" in images:
        parts += ["## Calibration", f"![Reliability diagram]({images['reliability']})"]
    parts += ["## Per-class results", _per_class(metrics)]
    unseen = _unseen(metrics)
    if unseen:
        parts += ["## Unseen labels", unseen]
    if "confusion" in images:
        parts += ["## Confusion matrix",
                  "Each row is normalised to sum to 1 over the predictions for that true class.",
                  f"![Confusion matrix]({images['confusion']})"]
    for heading, body in extra:
        parts += [f"## {_md_escape(heading)}", body.strip()]
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# a small Markdown -> HTML converter, enough for what this module and its callers write


_SEP_RE = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
         ".svg": "image/svg+xml", ".webp": "image/webp"}


def _safe_href(url: str) -> str:
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", url) and not re.match(r"^(https?|mailto):", url, re.I):
        return "#"
    return url


def _inline(text: str, image_src: Callable[[str], str]) -> str:
    stash: list[str] = []

    def keep(fragment: str) -> str:
        stash.append(fragment)
        return f"\x00{len(stash) - 1}\x00"

    raw: dict[str, str] = {}
    text = text.replace("\x00", "")  # reserved for placeholders

    def escaped(m: re.Match) -> str:
        token = keep(html.escape(m.group(1)))
        raw[token] = m.group(0)
        return token

    # Backslash escapes first, so an escaped backtick cannot open a code span; inside a code
    # span they are put back verbatim, as Markdown does.
    text = re.sub(r"\\([!-/:-@\[-`{-~])", escaped, text)
    text = re.sub(
        r"`([^`]+)`",
        lambda m: keep("<code>" + html.escape(
            re.sub("\x00\\d+\x00", lambda t: raw[t.group(0)], m.group(1))) + "</code>"),
        text,
    )
    text = re.sub(
        r"!\[([^\]]*)\]\(([^)\s]+)\)",
        lambda m: keep(f'<img src="{html.escape(image_src(m.group(2)), quote=True)}" '
                       f'alt="{html.escape(m.group(1), quote=True)}">'),
        text,
    )
    text = re.sub(
        r"\[([^\]]+)\]\(([^)\s]+)\)",
        lambda m: keep(f'<a href="{html.escape(_safe_href(m.group(2)), quote=True)}">'
                       f"{html.escape(m.group(1), quote=False)}</a>"),
        text,
    )
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])", r"<em>\1</em>", text)
    # A link label may hold placeholders of its own, so restore until none are left.
    while "\x00" in text:
        text = re.sub("\x00(\\d+)\x00", lambda m: stash[int(m.group(1))], text)
    return text


def _cells(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    return [c.strip() for c in re.split(r"(?<!\\)\|", s)]


def _html_table(header: str, sep: str, body: list[str], image_src: Callable[[str], str]) -> str:
    aligns = []
    for c in _cells(sep):
        right, left = c.endswith(":"), c.startswith(":")
        aligns.append("center" if left and right else "right" if right else "")

    def row(tag: str, line: str) -> str:
        cells = []
        for k, text in enumerate(_cells(line)):
            style = f' style="text-align:{aligns[k]}"' if k < len(aligns) and aligns[k] else ""
            cells.append(f"<{tag}{style}>{_inline(text, image_src)}</{tag}>")
        return "<tr>" + "".join(cells) + "</tr>"

    rows = "\n".join(row("td", line) for line in body)
    return f"<table>\n<thead>{row('th', header)}</thead>\n<tbody>\n{rows}\n</tbody>\n</table>"


def markdown_to_html(md: str, image_src: Callable[[str], str] = lambda s: s) -> str:
    """Convert headings, paragraphs, lists, pipe tables, code fences and inline marks."""
    out: list[str] = []
    lines = md.splitlines()
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append(f"<p>{_inline(' '.join(para), image_src)}</p>")
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            flush()
            i += 1
        elif stripped.startswith("```"):
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            out.append(f"<pre><code>{html.escape(chr(10).join(lines[i + 1:j]))}</code></pre>")
            i = j + 1
        elif m := re.match(r"^(#{1,6})\s+(.*?)(?:\s+#+)?\s*$", stripped):
            flush()
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2), image_src)}</h{level}>")
            i += 1
        elif "|" in stripped and i + 1 < len(lines) and _SEP_RE.match(lines[i + 1]) \
                and "-" in lines[i + 1]:
            flush()
            j = i + 2
            while j < len(lines) and lines[j].strip() and "|" in lines[j]:
                j += 1
            out.append(_html_table(lines[i], lines[i + 1], lines[i + 2:j], image_src))
            i = j
        elif re.match(r"^([-*+]|\d+[.)])\s+", stripped):
            flush()
            tag = "ol" if stripped[0].isdigit() else "ul"
            items = []
            while i < len(lines) and (m := re.match(r"^\s*([-*+]|\d+[.)])\s+(.*)$", lines[i])):
                items.append(f"<li>{_inline(m.group(2), image_src)}</li>")
                i += 1
            out.append(f"<{tag}>\n" + "\n".join(items) + f"\n</{tag}>")
        else:
            para.append(stripped)
            i += 1
    flush()
    return "\n".join(out)


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: .3em .7em; }
th { background: #f4f4f4; }
tbody tr:nth-child(even) { background: #fafafa; }
img { max-width: 100%; height: auto; }
code, pre { background: #f4f4f4; border-radius: 3px; }
pre { padding: .8em; overflow-x: auto; }
"""


def _html_page(md: str, title: str, out_dir: Path) -> str:
    def embed(src: str) -> str:
        path = out_dir / src
        mime = _MIME.get(path.suffix.lower())
        if mime is None or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", src) or not path.is_file():
            return src
        return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")

    body = markdown_to_html(md, embed)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )


# --------------------------------------------------------------------------------------------


def write_report(
    metrics: dict,
    out_dir: str | Path,
    *,
    title: str = "prodcat evaluation",
    extra_sections: list[tuple[str, str]] | None = None,
) -> dict[str, Path]:
    """Write metrics.json, confusion_matrix.png, reliability.png, report.md and report.html.

    ``extra_sections`` are ``(heading, markdown body)`` pairs appended to the report. Returns
    the paths written, keyed ``metrics_json``, ``confusion_matrix``, ``reliability``,
    ``report_md`` and ``report_html`` (a figure is skipped when its data is missing).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    path = out / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False, default=_json_default) + "\n",
                    encoding="utf-8")
    written["metrics_json"] = path

    images: dict[str, str] = {}
    path = out / "confusion_matrix.png"
    if _plot_confusion(metrics, path):
        written["confusion_matrix"] = path
        images["confusion"] = path.name
    path = out / "reliability.png"
    if _plot_reliability(metrics, path):
        written["reliability"] = path
        images["reliability"] = path.name

    md = _markdown(metrics, title, images, list(extra_sections or []))
    path = out / "report.md"
    path.write_text(md, encoding="utf-8")
    written["report_md"] = path

    path = out / "report.html"
    path.write_text(_html_page(md, title, out), encoding="utf-8")
    written["report_html"] = path
    return written
