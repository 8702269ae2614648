"""What a tracked run records, as flat MLflow names: parameters, metrics and tags.

Pure functions over prodcat's own dicts (manifest, ``metrics.json``) and estimators, so they are
tested without MLflow and the names stay the same for ``train`` and ``evaluate`` runs:
``weighted_f1`` is the cross-validated score of a train run and the held-out score of an
evaluate run; ``text.weighted_f1``, ``image.…`` and ``fused.…`` are per-modality scores.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

#: Headline metrics, logged unprefixed (and under a modality's prefix).
HEADLINE = ("weighted_f1", "macro_f1", "accuracy", "top3_accuracy", "log_loss", "ece")
#: Metrics where lower is better (``prodcat runs`` sorts them ascending).
LOWER_IS_BETTER = ("log_loss", "ece", "seconds", "unseen_labels")
#: Per-fold scores, logged with the fold number as the step.
FOLD_KEYS = ("weighted_f1", "macro_f1", "accuracy")
#: Longest parameter value kept (MLflow's limit is 6000 characters).
MAX_PARAM_CHARS = 500

_BAD_KEY = re.compile(r"[^\w\-. /]")


def clean_key(key: str) -> str:
    """A name MLflow accepts: letters, digits, ``_ - . /`` and spaces."""
    return _BAD_KEY.sub("_", str(key))[:250]


def param_value(value: Any) -> str:
    """A readable, bounded string for a parameter value."""
    if hasattr(value, "get_params"):
        text = type(value).__name__
    elif isinstance(value, str):
        text = value
    elif isinstance(value, list | tuple | dict):
        text = json.dumps(value, default=str, ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 1] + "…"


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"text": {"head": "x"}}`` → ``{"text.head": "x"}``, every value a string."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_params(value, f"{name}."))
        else:
            out[clean_key(name)] = param_value(value)
    return out


def model_params(model) -> dict[str, str]:
    """A model's parameters as flat names: ``Classifier.get_params(deep=True)`` with ``__`` as
    ``.`` (``text.head``, ``image.encoder``, ``fusion``); a nested estimator's own entry is its
    class name. Also takes the manifest's ``parameters`` record of a saved model."""
    if isinstance(model, Mapping):  # bundle manifest: {"class", "params": {name: value or record}}
        return _manifest_params(model)
    if getattr(model, "text", "") is None:
        # The Classifier's own default text model, recorded as what it is.
        from prodcat.text.ensemble import default_text_model

        model = model.set_params(text=default_text_model(model.random_state))
        params = model.get_params(deep=True)
        model.set_params(text=None)
    else:
        params = model.get_params(deep=True)
    return {clean_key(k.replace("__", ".")): param_value(v) for k, v in sorted(params.items())}


def _manifest_params(record: Mapping, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (record.get("params") or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and "class" in value and "params" in value:
            out[clean_key(name)] = str(value["class"])
            out.update(_manifest_params(value, f"{name}."))
        else:
            out[clean_key(name)] = param_value(value)
    return dict(sorted(out.items()))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def metric_values(m: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Scalar metrics of one ``compute_metrics`` result (or a manifest's ``cv`` record):
    the headline scores, ``n``, ``coverage.80`` / ``coverage.80.accuracy`` for each confidence
    threshold, ``unseen_labels``, and the modality, photo-group and robustness scores when present.
    """
    out: dict[str, float] = {}
    for key in ("n", *HEADLINE):
        v = _number(m.get(key))
        if v is not None:
            out[f"{prefix}{key}"] = v
    for row in m.get("coverage") or []:
        t = _number(row.get("threshold"))
        if t is None:
            continue
        name = f"{prefix}coverage.{round(100 * t)}"
        for key, suffix in (("coverage", ""), ("accuracy", ".accuracy")):
            v = _number(row.get(key))
            if v is not None:
                out[name + suffix] = v
    unseen = m.get("unseen_labels")
    if isinstance(unseen, Mapping) and _number(unseen.get("count")) is not None:
        out[f"{prefix}unseen_labels"] = float(unseen["count"])
    modalities = m.get("modalities")
    if isinstance(modalities, Mapping):
        for name in ("text", "image", "fused"):
            if isinstance(modalities.get(name), Mapping):
                out.update(_headline(modalities[name], f"{prefix}{name}."))
        for group, scores in (modalities.get("groups") or {}).items():
            for name, sub in (scores or {}).items():
                if isinstance(sub, Mapping):
                    out.update(_headline(sub, f"{prefix}{group}.{name}."))
    robustness = m.get("robustness")
    if isinstance(robustness, Mapping):
        for cond, scores in (robustness.get("conditions") or {}).items():
            for name in ("fused", "text", "image"):
                sub = scores.get(name) if isinstance(scores, Mapping) else None
                if isinstance(sub, Mapping):
                    for key in ("weighted_f1", "accuracy"):
                        v = _number(sub.get(key))
                        if v is not None:
                            out[clean_key(f"{prefix}robustness.{cond}.{name}.{key}")] = v
    return {k: v for k, v in out.items() if not math.isinf(v)}


def _headline(m: Mapping, prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": float(m[k]) for k in ("n", *HEADLINE) if _number(m.get(k)) is not None}


def fold_values(fold_scores: list[Mapping] | None) -> Iterator[tuple[str, float, int]]:
    """``(fold.weighted_f1, value, fold number)`` for each fold: one metric history per score."""
    for i, row in enumerate(fold_scores or []):
        step = int(row.get("fold", i))
        for key in FOLD_KEYS:
            v = _number(row.get(key))
            if v is not None:
                yield f"fold.{key}", v, step


def data_tags(catalog) -> dict[str, str]:
    """Where the data came from and how much of it there was (tags, searchable in MLflow)."""
    source = Path(str(catalog.source))
    tags = {"data.source": str(source.resolve() if source.exists() else source), "data.name": source.name,
            "data.format": str(catalog.format)}
    frame = getattr(catalog, "frame", None)
    if frame is not None:
        tags["data.n_listings"] = str(len(frame))
        if "label" in frame and frame["label"].notna().any():
            tags["data.n_classes"] = str(frame["label"].nunique())
            tags["data.fingerprint"] = catalog.fingerprint()
    report = getattr(catalog, "report", None)
    if report is not None:
        for key, value in report.to_dict().items():
            if key != "notes":
                tags[f"data.{key}"] = str(value)
    return tags


def train_values(manifest: Mapping[str, Any]) -> tuple[dict[str, float], list[tuple[str, float, int]],
                                                        dict[str, str]]:
    """``(metrics, per-fold metrics, tags)`` a train run records from its bundle's manifest."""
    metrics: dict[str, float] = {}
    cv = (manifest.get("metrics") or {}).get("cv") or {}
    if cv:
        metrics.update(metric_values(cv))
        for key, name in (("folds", "cv.folds"), ("seconds", "cv_seconds")):
            v = _number(cv.get(key))
            if v is not None:
                metrics[name] = v
    training = manifest.get("training") or {}
    for key in ("fit_seconds", "n_listings", "n_classes"):
        v = _number(training.get(key))
        if v is not None:
            metrics[key] = v
    tags = {"model.modalities": ",".join(manifest.get("modalities") or ["text"])}
    fusion = manifest.get("fusion")
    if isinstance(fusion, Mapping):
        if fusion.get("method"):
            tags["fusion.method"] = str(fusion["method"])
        for key in ("oof_log_loss", "oof_accuracy"):
            for method, v in (fusion.get(key) or {}).items():
                if _number(v) is not None:
                    metrics[clean_key(f"fusion.{key}.{method}")] = float(v)
    return metrics, list(fold_values(cv.get("fold_scores"))), tags


def evaluation_values(metrics: Mapping[str, Any]) -> tuple[dict[str, float], list[tuple[str, float, int]],
                                                           dict[str, str]]:
    """``(metrics, per-fold metrics, tags)`` an evaluate run records from its ``metrics.json``."""
    values = metric_values(metrics)
    cv = metrics.get("cv") or {}
    tags = {}
    if cv.get("folds"):
        values["cv.folds"] = float(cv["folds"])
        seconds = [s for s in (cv.get("fit_seconds") or []) if _number(s) is not None]
        if seconds:
            values["cv_seconds"] = float(sum(seconds))
    model = metrics.get("model") or {}
    if isinstance(model.get("fusion"), Mapping) and model["fusion"].get("method"):
        tags["fusion.method"] = str(model["fusion"]["method"])
    return values, list(fold_values(cv.get("fold_scores"))), tags


def bundle_tags(bundle_dir: str | Path, manifest: Mapping[str, Any]) -> dict[str, str]:
    """Tags of an evaluate run naming the bundle evaluated and, when it was tracked, its train run."""
    training = manifest.get("training") or {}
    tags = {"model.path": str(Path(bundle_dir).resolve()), "model.created_at": manifest.get("created_at"),
            "model.training_fingerprint": training.get("fingerprint"),
            "model.modalities": ",".join(manifest.get("modalities") or ["text"]),
            "model.train_run_id": (training.get("tracking") or {}).get("mlflow_run_id")}
    return {k: str(v) for k, v in tags.items() if v}
