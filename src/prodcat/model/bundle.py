"""Model bundles: a self-describing folder with a manifest and hash-checked parts.

Layout::

    MODEL_DIR/
      manifest.json       format version, library versions, classes, taxonomy, parameters,
                          training-data fingerprint and counts, metrics, parts with sha256
      classifier.joblib   the fitted Classifier

joblib files can run code when loaded, so a part is only unpickled after its sha256 matches the
manifest, and only from a bundle whose format and library versions this install can read.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

import joblib
from sklearn.base import clone

import prodcat
from prodcat.errors import BundleError
from prodcat.hashing import sha256_file

FORMAT = "prodcat-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CLASSIFIER_PART = "classifier.joblib"
#: Folder of a bundle holding the image encoder's ONNX export (laid out as the encoder cache).
ENCODER_DIR = "encoders"
#: Libraries whose pickles must come from the same minor version to load safely.
PICKLE_LIBRARIES = ("sklearn", "numpy", "scipy")


def library_versions() -> dict[str, str]:
    import numpy
    import pandas
    import scipy
    import sklearn

    return {"prodcat": prodcat.__version__, "python": platform.python_version(),
            "sklearn": sklearn.__version__, "numpy": numpy.__version__, "scipy": scipy.__version__,
            "pandas": pandas.__version__, "joblib": joblib.__version__}


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


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


def save_bundle(model, path: str | Path, *, training: dict | None = None, metrics: dict | None = None,
                notes: list[str] | None = None) -> Path:
    """Write ``model`` to the folder ``path`` atomically (a half-written bundle never replaces a good one)."""
    path = Path(path)
    check_bundle_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        part = tmp / CLASSIFIER_PART
        joblib.dump(model, part, compress=3)
        parts = {"classifier": {"file": CLASSIFIER_PART, "sha256": sha256_file(part),
                                "bytes": part.stat().st_size}}
        encoder = _image_encoder(model)
        if encoder is not None:
            # The ONNX export travels with the bundle, so a server without PyTorch can use it.
            src = encoder.ensure_export()
            dest = tmp / ENCODER_DIR / src.name
            dest.parent.mkdir()
            shutil.copyfile(src, dest)
            shutil.copyfile(encoder.hash_path, dest.with_name(encoder.hash_path.name))
            parts["image_encoder"] = {"file": f"{ENCODER_DIR}/{src.name}", "sha256": sha256_file(dest),
                                      "bytes": dest.stat().st_size, "encoder": encoder.name}
        versions = library_versions()
        text_encoder = _text_encoder_record(model)
        if text_encoder is not None:
            versions[text_encoder["package"]] = text_encoder["version"]
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": versions,
            "classes": [str(c) for c in model.classes_],
            "taxonomy": model.taxonomy_.to_records(),
            "threshold": model.threshold_,
            "automation": getattr(model, "automation_", None),
            "text_model": _text_model_record(model),
            "parameters": _jsonable_params(model),
            "dropped_classes": getattr(model, "dropped_classes_", {}),
            "modalities": ["text"] + (["image"] if encoder is not None else []),
            "fusion": getattr(model, "fusion_", None),
            "training": training or {},
            "metrics": metrics or {},
            "notes": notes or [],
            "parts": parts,
        }
        if text_encoder is not None:
            manifest["text_encoder"] = text_encoder
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def check_bundle_target(path: Path) -> None:
    """Refuse, before any work is done, to write a bundle over a file or a folder that is not one."""
    if path.exists() and not path.is_dir():
        raise BundleError(f"--out {path} is a file; give a folder for the model bundle")
    if path.is_dir() and not (path / MANIFEST).exists() and any(path.iterdir()):
        raise BundleError(f"{path} exists and is not a prodcat bundle; not overwriting it")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the bundle at ``path``, checked for format and version compatibility."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model bundle not found: {path} (expected a folder written by `prodcat train`)")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{path} is not a prodcat bundle: {MANIFEST} is missing")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{mpath} is corrupt: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{mpath} is not a prodcat manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"bundle format version {version} cannot be read by prodcat "
                          f"{prodcat.__version__} (reads version {FORMAT_VERSION}); retrain the model")
    saved = manifest.get("versions", {})
    current = library_versions()
    for lib in PICKLE_LIBRARIES:
        if lib in saved and _minor(saved[lib]) != _minor(current[lib]):
            raise BundleError(f"bundle was saved with {lib} {saved[lib]}, this install has {current[lib]}; "
                              f"install {lib}=={saved[lib]} or retrain the model")
    return manifest


def _image_encoder(model):
    image = getattr(model, "image_", None)
    return getattr(image, "encoder_", None) if image is not None else None


def _text_encoder(model):
    """The text model's sentence encoder (``TextClassifier(dense=...)``, an ensemble member's),
    or None. Every member of the default ensemble uses the same one."""
    for text in _text_models(getattr(model, "text_", None)):
        encoder = (getattr(getattr(text, "features_", None), "dense_encoder_", None)
                   or getattr(text, "encoder_", None))
        if encoder is not None:
            return encoder
    return None


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


def _text_encoder_record(model) -> dict | None:
    # The encoder's weights are not stored: its package ships them (tens of MB) and is re-created
    # at load time; the manifest pins the package version the embeddings came from.
    encoder = _text_encoder(model)
    if encoder is None:
        return None
    return {"name": encoder.name, "package": encoder.spec.package, "version": encoder.pin_version(),
            "encoder_id": encoder.encoder_id, "dim": encoder.dim}


def _check_text_encoder(path: Path, manifest: dict) -> None:
    record = manifest.get("text_encoder")
    if not record:
        return
    from importlib.metadata import PackageNotFoundError, version

    package, wanted = record.get("package"), record.get("version")
    try:
        installed = version(str(package))
    except PackageNotFoundError:
        raise BundleError(f"bundle {path} uses the {record.get('name')} text encoder, which needs "
                          f"{package}=={wanted}: pip install 'prodcat[text-dense]'") from None
    if installed != wanted:
        raise BundleError(f"bundle {path} was saved with {package} {wanted}, this install has "
                          f"{installed}; install {package}=={wanted} or retrain the model")


def _checked_part(path: Path, manifest: dict, name: str) -> Path:
    part = manifest.get("parts", {}).get(name, {})
    fpath = path / str(part.get("file", ""))
    if not part or not fpath.is_file():
        raise BundleError(f"bundle {path} is incomplete: its {name} part is missing")
    if sha256_file(fpath) != part.get("sha256"):
        raise BundleError(f"bundle {path} was changed after it was saved: {fpath.name} does not match "
                          "the sha256 in manifest.json; refusing to load it")
    return fpath


def load_bundle(path: str | Path):
    """Load a bundle; returns ``(classifier, manifest)``. Any change to a part is refused."""
    path = Path(path)
    manifest = read_manifest(path)
    fpath = _checked_part(path, manifest, "classifier")
    _check_text_encoder(path, manifest)
    try:
        model = joblib.load(fpath)
    except Exception as exc:  # a matching hash makes this unlikely; still never a raw traceback
        raise BundleError(f"cannot load {fpath}: {exc}") from None
    encoder = _image_encoder(model)
    if encoder is not None:
        _checked_part(path, manifest, "image_encoder")
        encoder.cache_dir = str(path.resolve())  # run the export shipped in the bundle
    return model, manifest
