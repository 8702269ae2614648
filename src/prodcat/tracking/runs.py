"""``prodcat runs``: list tracked runs as a table and compare a few side by side."""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from prodcat.errors import ConfigError, ProdcatError
from prodcat.tracking import values as V
from prodcat.tracking.tracker import (
    DEFAULT_EXPERIMENT,
    KIND_TAG,
    TrackingUnavailable,
    display_uri,
    one_line,
    open_client,
    quiet_mlflow,
    sqlite_path,
)

#: Metrics shown in the table after the one runs are sorted by.
TABLE_METRICS = ("weighted_f1", "macro_f1", "accuracy", "ece")
#: Parameters shown in the table: (column, parameter names tried in turn).
TABLE_PARAMS = (("head", ("text.head",)), ("image", ("image.encoder", "image")), ("fusion", ("fusion",)))
#: Tags kept in ``--json`` output and shown by ``--compare``.
SHOWN_TAGS = (KIND_TAG, "data.name", "data.source", "data.fingerprint", "data.n_listings", "fusion.method",
              "model.path", "model.train_run_id", "mlflow.source.git.commit", "prodcat.version")


class TrackingError(ProdcatError):
    """The tracking store cannot be read, or a run asked for is not in it."""


class NoRuns(Exception):
    """Nothing to list: no store yet, no such experiment, or no runs (a message, not an error)."""


def connect(uri: str, experiment: str = DEFAULT_EXPERIMENT):
    """``(client, experiment id)`` of an existing store and experiment; never creates either."""
    try:
        client = open_client(uri, create=False)
    except TrackingUnavailable as exc:
        raise ConfigError(f"prodcat runs needs the 'track' extra: pip install 'prodcat[track]' ({exc})") from None
    except FileNotFoundError:
        raise NoRuns(f"no tracking store at {sqlite_path(uri)} yet: `prodcat train` and `prodcat evaluate` "
                     "record runs there (or give --tracking-uri)") from None
    except Exception as exc:
        raise TrackingError(f"cannot open the tracking store {display_uri(uri)}: {one_line(exc)}") from None
    try:
        with quiet_mlflow():
            exp = client.get_experiment_by_name(experiment)
            if exp is None:
                names = sorted(e.name for e in client.search_experiments())
    except Exception as exc:
        raise TrackingError(f"cannot read the tracking store {display_uri(uri)}: {one_line(exc)}") from None
    if exp is None:
        known = f" (experiments there: {', '.join(names)})" if names else ""
        raise NoRuns(f"no experiment {experiment!r} in {display_uri(uri)}{known}")
    return client, exp.experiment_id


def run_record(run) -> dict[str, Any]:
    """A run as plain data: id, times, status, kind, data name, params, metrics, main tags."""
    info, data = run.info, run.data
    tags = data.tags
    return {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "start_time": _iso(info.start_time),
        "end_time": _iso(info.end_time),
        "status": info.status,
        "kind": tags.get(KIND_TAG),
        "data": tags.get("data.name"),
        "params": dict(sorted(data.params.items())),
        "metrics": dict(sorted(data.metrics.items())),
        "tags": {k: tags[k] for k in SHOWN_TAGS if k in tags},
    }


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc).isoformat(timespec="seconds")


def list_runs(client, experiment_id: str, *, kind: str | None = None, limit: int = 20,
              metric: str = "weighted_f1") -> list[dict[str, Any]]:
    """The ``limit`` most recent runs (of ``kind``), best ``metric`` first (lowest for losses,
    ECE and times); runs without the metric come last, most recent first."""
    filter_string = f"tags.`{KIND_TAG}` = '{kind}'" if kind else ""
    try:
        with quiet_mlflow():
            runs = client.search_runs([experiment_id], filter_string, max_results=limit,
                                      order_by=["attributes.start_time DESC"])
    except Exception as exc:
        raise TrackingError(f"cannot search runs: {one_line(exc)}") from None
    records = [run_record(r) for r in runs]
    sign = 1.0 if lower_is_better(metric) else -1.0

    def key(rec):
        v = rec["metrics"].get(metric)
        return (0, sign * v) if v is not None and not math.isnan(v) else (1, 0.0)

    return sorted(records, key=key)  # stable: ties and runs without the metric stay newest first


def lower_is_better(metric: str) -> bool:
    return any(word in metric for word in V.LOWER_IS_BETTER)


def find_runs(client, experiment_id: str, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Runs by full id or by a unique prefix of it (as ``prodcat runs`` prints them)."""
    out = []
    recent = None
    for rid in ids:
        rid = rid.strip()
        run = None
        if len(rid) == 32:
            try:
                with quiet_mlflow():
                    run = client.get_run(rid)
            except Exception:
                run = None
        if run is None:
            if recent is None:
                try:
                    with quiet_mlflow():
                        recent = list(client.search_runs([experiment_id], "", max_results=5000,
                                                         order_by=["attributes.start_time DESC"]))
                except Exception as exc:
                    raise TrackingError(f"cannot search runs: {one_line(exc)}") from None
            matches = [r for r in recent if r.info.run_id.startswith(rid)] if rid else []
            if len(matches) > 1:
                raise ConfigError(f"run id {rid!r} is ambiguous ({len(matches)} runs start with it); give more of it")
            if not matches:
                raise ConfigError(f"no run {rid!r} in this experiment (list them with `prodcat runs`)")
            run = matches[0]
        out.append(run_record(run))
    return out


def compare(records: Sequence[Mapping[str, Any]], *, show_all: bool = False) -> dict[str, Any]:
    """Side by side: ``{"runs": [ids], "tags"|"params"|"metrics": {name: [value per run]}}``.
    Parameters and metrics equal in every run are left out unless ``show_all`` (counted in
    ``same``); the main tags are always shown."""
    out: dict[str, Any] = {"runs": [r["run_id"] for r in records], "same": {}}
    for section in ("tags", "params", "metrics"):
        names = sorted({k for r in records for k in r[section]})
        if section == "tags":
            names = [k for k in SHOWN_TAGS if k in names]
        rows = {}
        same = 0
        for name in names:
            row = [r[section].get(name) for r in records]
            if section != "tags" and not show_all and len(records) > 1 and _all_equal(row):
                same += 1
                continue
            rows[name] = row
        out[section] = rows
        if section != "tags":
            out["same"][section] = same
    out["tags"] = {"started": [r["start_time"] for r in records], "status": [r["status"] for r in records],
                   **out["tags"]}
    return out


def _all_equal(row: list) -> bool:
    first = row[0]
    return all(v == first or (isinstance(v, float) and isinstance(first, float)
                              and math.isnan(v) and math.isnan(first)) for v in row[1:])


# -- text output -------------------------------------------------------------------------------


_SCORES = ("f1", "accuracy", "coverage", "ece", "loss")


def _fmt(v: Any, name: str = "") -> str:
    """Scores with 4 decimals, counts (n, folds, …) as integers, missing as –."""
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v.is_integer() and not any(s in name for s in _SCORES):
            return str(int(v))
        return f"{v:.4f}"
    return str(v)


def _local(iso: str | None) -> str:
    if not iso:
        return "–"
    return _dt.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def format_runs(records: Sequence[Mapping[str, Any]], metric: str = "weighted_f1") -> str:
    metrics = [metric, *(m for m in TABLE_METRICS if m != metric)]
    header = ["run", "started", "kind", "status", "data", "n", *(c for c, _ in TABLE_PARAMS), *metrics]
    rows = []
    for r in records:
        params = [next((r["params"][p] for p in names if p in r["params"]), "–") for _, names in TABLE_PARAMS]
        params = ["none" if p == "None" else p for p in params]
        fusion = r["tags"].get("fusion.method")
        if fusion and params[-1] in ("auto", "–") and fusion != params[-1]:
            params[-1] = f"{params[-1]}→{fusion}" if params[-1] == "auto" else fusion
        n = r["metrics"].get("n") or r["tags"].get("data.n_listings")
        rows.append([r["run_id"][:8], _local(r["start_time"]), r["kind"] or "–", r["status"].lower(),
                     _cut(r["data"] or "–", 24), _fmt(float(n), "n") if n is not None else "–",
                     *(_cut(p, 20) for p in params), *(_fmt(r["metrics"].get(m), m) for m in metrics)])
    first_metric = 6 + len(TABLE_PARAMS)
    right = {5, *range(first_metric, first_metric + len(metrics))}
    return _table(header, rows, right)


def format_compare(cmp: Mapping[str, Any]) -> str:
    ids = [rid[:8] for rid in cmp["runs"]]
    rows: list[list[str]] = []
    for section in ("tags", "params", "metrics"):
        if not cmp[section]:
            continue
        rows.append([f"[{section}]", *([""] * len(ids))])
        for name, values in cmp[section].items():
            shown = [_local(v) if name == "started" else _cut(_fmt(v, name), 40) for v in values]
            rows.append([f"  {name}", *shown])
    text = _table(["", *ids], rows, set())
    same = cmp.get("same") or {}
    hidden = [f"{n} {section}" for section, n in same.items() if n]
    if hidden:
        text += f"\n(equal in every run, not shown: {' and '.join(hidden)}; --all shows them)"
    return text


def _cut(text: str, width: int) -> str:
    text = str(text)
    return text if len(text) <= width else text[: width - 1] + "…"
