"""Writing an audit: ``label_issues.csv``, ``audit.json`` and one self-contained ``audit.html``
(inline style, no script, no external file: it can be mailed or attached to a ticket)."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from prodcat.audit.core import AuditResult

_STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 2em;width:100%}th,td{border-bottom:1px solid #ddd;
padding:3px 6px;text-align:left;vertical-align:top}th{background:#f4f4f4}td.n{text-align:right}
.k{display:inline-block;margin-right:2em}.k b{font-size:1.6em;display:block}"""


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f'<td class="n">{v:.4g}</td>' if isinstance(v, float) else f"<td>{escape(str(v))}</td>" for v in row)
        + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cat(c: dict) -> str:
    return f"{c['name']} ({c['code']})" if c["name"] != c["code"] else c["code"]


def audit_html(result: AuditResult, top: int = 50) -> str:
    s = result.summary
    kpis = "".join(f'<span class="k"><b>{escape(str(v))}</b>{escape(k)}</span>' for k, v in (
        ("listings", s["listings"]), ("suspected label errors", s["label_issues"]),
        ("share", f"{s['label_issue_share']:.1%}"), ("out-of-fold accuracy", f"{s['out_of_fold_accuracy']:.1%}"),
        ("conflicting near-duplicates", s["conflicting_duplicate_pairs"])))
    suspects = result.issues[result.issues["is_label_issue"]].head(top)
    issues = _table(["id", "title", "given", "suggested", "label quality"],
                    [[r.id, r.title, f"{r.given_name} ({r.given_label})", f"{r.suggested_name} ({r.suggested_label})",
                      float(r.label_quality)] for r in suspects.itertuples()])
    pairs = _table(["category A", "parent A", "category B", "parent B", "listings between", "joint probability"],
                   [[_cat(p["a"]), p["a"]["parent"] or "", _cat(p["b"]), p["b"]["parent"] or "",
                     p["overlapping_listings"], float(p["joint_probability"])] for p in result.confused_pairs])
    dups = _table(["similarity", "id A", "title A", "label A", "id B", "title B", "label B"],
                  [[float(d["similarity"]), d["id_a"], d["title_a"], d["label_a"], d["id_b"], d["title_b"],
                    d["label_b"]] for d in result.duplicates[:top]])
    classes = _table(["category", "parent", "listings", "label issues", "label noise", "label quality"],
                     [[_cat(c), c["parent"] or "", c["listings"], c["label_issues"], float(c["label_noise"]),
                       float(c["label_quality"])] for c in result.per_class])
    return (f"<!doctype html><html lang=en><meta charset=utf-8><title>prodcat label audit</title>"
            f"<style>{_STYLE}</style><h1>Label audit</h1><p>{escape(str(s.get('source', '')))} — "
            f"{escape(s['method'])}, {s['folds']} folds.</p>{kpis}"
            f"<h2>Suspected label errors (worst first, {len(suspects)} of {s['label_issues']})</h2>{issues}"
            f"<h2>Categories most often confused (merge or split candidates)</h2>{pairs}"
            f"<h2>Near-duplicate listings with different labels</h2>{dups}"
            f"<h2>Label quality per category (worst first)</h2>{classes}</html>")


def write_audit(result: AuditResult, out: str | Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "label_issues.csv", "json": out / "audit.json", "html": out / "audit.html"}
    result.issues.to_csv(paths["csv"], index=False)
    paths["json"].write_text(json.dumps(result.to_json(), ensure_ascii=False, indent=2), encoding="utf-8")
    paths["html"].write_text(audit_html(result), encoding="utf-8")
    return paths


def queue_suspects(result: AuditResult, catalog, store, *, limit: int = 500, model_id: str | None = None) -> int:
    """Queue up to ``limit`` suspected label errors, worst first (reason ``suspected_label_error``,
    with the given label and the out-of-fold top-3); already waiting listings are not queued twice."""
    from prodcat.review import NewItem

    suspects = result.issues[result.issues["is_label_issue"]].head(limit)
    frame = catalog.labelled().frame.reset_index(drop=True)
    row_of = {str(i): n for n, i in enumerate(frame["id"].astype(str))}
    new = []
    for r in suspects.itertuples():
        n = row_of[r.id]
        row = frame.iloc[n]
        p = result.proba[n]
        top = [{"code": str(result.classes[k]), "name": catalog.taxonomy.name(result.classes[k]),
                "parent": catalog.taxonomy.parent(result.classes[k]), "probability": float(p[k])}
               for k in p.argsort()[::-1][:3]]
        photo = None
        if isinstance(row.get("image"), str) and row["image"]:
            try:
                photo = Path(row["image"]).read_bytes()
            except OSError:
                photo = None
        new.append(NewItem("suspected_label_error", title=str(row["title"] or ""),
                           description=str(row["description"] or ""), listing_id=r.id, photo=photo,
                           model_id=model_id, top_k=top, given_label=str(r.given_label), source="audit"))
    store.add(new, skip_open_duplicates=True)
    return len(new)
