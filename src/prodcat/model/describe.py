"""What a bundle's manifest says of the model it holds: its parameters, its text model (an
ensemble's weights and members' scores) and the encoders it needs at load time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sklearn.base import clone

from prodcat.errors import BundleError


def _jsonable_params(model) -> dict[str, Any]:
    def conv(v):
        if hasattr(v, "get_params"):
            return {"class": type(v).__name__, "params": {k: conv(x) for k, x in v.get_params(deep=False).items()}}
        if isinstance(v, tuple | list):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        return v if isinstance(v, str | int | float | bool | type(None)) else repr(v)

    record = conv(model)
    text = getattr(model, "text_", None)
    if record.get("params", {}).get("text", "") is None and text is not None:
        # The default text model (text=None) is recorded as the model that was fitted.
        record["params"]["text"] = conv(clone(text))
    return record


def _image_encoder(model):
    image = getattr(model, "image_", None)
    return getattr(image, "encoder_", None) if image is not None else None


def _text_encoders(model) -> list:
    """The text model's sentence encoders (``TextClassifier(dense=...)``, the ensemble's kept
    members'), one per name, in the members' order."""
    found = {}
    for text in _text_models(getattr(model, "text_", None)):
        encoder = (getattr(getattr(text, "features_", None), "dense_encoder_", None)
                   or getattr(text, "encoder_", None))
        if encoder is not None:
            found.setdefault(encoder.name, encoder)
    return list(found.values())


def _text_models(text) -> list:
    """The text model itself, or an ensemble's kept members."""
    if text is None:
        return []
    members = getattr(text, "members_", None)
    return list(members.values()) if members else [text]


def _text_model_record(model) -> dict:
    """What the text model is, for the manifest: its class, and an ensemble's weights and
    members' out-of-fold scores."""
    text = getattr(model, "text_", None)
    record = {"class": type(text).__name__}
    if getattr(text, "weights_", None) is not None:
        record.update(weights=text.weights_, power=text.power_, oof_scores=text.member_scores_)
    return record


def _text_encoder_records(model) -> list[dict]:
    # The encoders' weights are not stored: their packages ship them (tens of MB) and they are
    # re-created at load time; the manifest pins the package versions the embeddings came from.
    return [{"name": e.name, "package": e.spec.package, "version": e.pin_version(),
             "encoder_id": e.encoder_id, "dim": e.dim, "extra": e.spec.extra}
            for e in _text_encoders(model)]


def _check_text_encoder(path: Path, manifest: dict) -> None:
    """Every sentence encoder the bundle's text model needs is installed, at the version its
    embeddings came from (``text_encoders``; bundles of one encoder also say ``text_encoder``)."""
    from importlib.metadata import PackageNotFoundError, version

    # Both fields are checked, and every record in them must hold.
    records = [r for r in [manifest.get("text_encoder"), *manifest.get("text_encoders", [])] if r]
    for record in records:
        package, wanted = record.get("package"), record.get("version")
        try:
            installed = version(str(package))
        except PackageNotFoundError:
            from prodcat.text.encoders import extra_hint

            # Records saved before the field name no extra: theirs was text-dense.
            raise BundleError(f"bundle {path} uses the {record.get('name')} text encoder, which needs "
                              f"{package}=={wanted}: {extra_hint(record.get('extra', 'text-dense'))}"
                              ) from None
        if installed != wanted:
            raise BundleError(f"bundle {path} was saved with {package} {wanted}, this install has "
                              f"{installed}; install {package}=={wanted} or retrain the model")
