"""Model bundles: a self-describing folder with a manifest and hash-checked parts that hold data only.

Layout::

    MODEL_DIR/
      manifest.json        format version, library versions, classes, taxonomy, parameters,
                           training-data fingerprint and counts, metrics, parts with sha256
      manifest.sig         optional: HMAC-SHA256 of manifest.json's bytes (``--sign-key``)
      classifier.json.gz   the fitted Classifier's state as a JSON tree (:mod:`prodcat.model.safe_state`)
      classifier.npz       its arrays, read with ``allow_pickle=False``
      encoders/            the image encoder's ONNX export, when the model has an image model

Loading a bundle unpickles nothing: the tree names classes, and only allowlisted ones (prodcat's
estimators and records, reviewed scikit-learn types) are rebuilt, from plain data. Whoever can
write the folder can still make the model answer wrongly, which is what signing is for: with
``--require-signature`` a bundle loads only when ``manifest.sig`` was made with the key given.
Bundles of format 1 (``classifier.joblib``, a pickle) load only when asked (``--allow-pickle``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import platform
import re
import shutil
import tempfile
import warnings
from pathlib import Path, PurePosixPath
from typing import Any

import joblib

import prodcat
from prodcat.errors import BundleError, ConfigError
from prodcat.hashing import sha256_file
from prodcat.model import signing
from prodcat.model.describe import (
    _check_text_encoder,
    _image_encoder,
    _jsonable_params,
    _text_encoder_records,
    _text_model_record,
)
from prodcat.model.ocr_channel import check_bundle_ocr
from prodcat.model.safe_state import read_state, write_state

FORMAT = "prodcat-bundle"
FORMAT_VERSION = 2
#: The format whose classifier part is a joblib pickle.
PICKLE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
CLASSIFIER_PART = "classifier.json.gz"
ARRAYS_PART = "classifier.npz"
PICKLE_PART = "classifier.joblib"
#: Folder of a bundle holding the image encoder's ONNX export (laid out as the encoder cache).
ENCODER_DIR = "encoders"
#: Libraries whose classes' attributes a state holds: another minor version gets a warning.
STATE_LIBRARIES = ("sklearn", "numpy", "scipy")
#: Libraries whose pickles must come from the same minor version to load at all (format 1).
PICKLE_LIBRARIES = ("sklearn", "numpy", "scipy")
#: A key file: ``train`` signs the bundles it writes, loading checks signatures when required.
SIGNING_KEY_ENV = "PRODCAT_SIGNING_KEY"
REQUIRE_SIGNATURE_ENV = "PRODCAT_REQUIRE_SIGNATURE"
ALLOW_PICKLE_ENV = "PRODCAT_ALLOW_PICKLE"


class BundleVersionWarning(UserWarning):
    """The bundle was written by other library versions than this install's."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


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


def _part_record(tmp: Path, file: str, **extra) -> dict:
    fpath = tmp / file
    return {"file": file, "sha256": sha256_file(fpath), "bytes": fpath.stat().st_size, **extra}


def _signing_key(sign_key) -> bytes | None:
    """The key ``sign_key`` names (a file, or the key's bytes), else ``$PRODCAT_SIGNING_KEY``'s file."""
    if isinstance(sign_key, bytes):
        return sign_key
    if sign_key is None:
        sign_key = os.environ.get(SIGNING_KEY_ENV) or None
    return signing.read_key(sign_key) if sign_key is not None else None


def save_bundle(model, path: str | Path, *, training: dict | None = None, metrics: dict | None = None,
                notes: list[str] | None = None, sign_key: str | Path | bytes | None = None) -> Path:
    """Write ``model`` to the folder ``path`` atomically (a half-written bundle never replaces a good one).

    ``sign_key`` (a key file, or the key; default: the file ``$PRODCAT_SIGNING_KEY`` names)
    adds ``manifest.sig``. A model holding anything that is not data (a function, a class
    outside the allowlist) is refused with the attribute's path, before anything is written.
    """
    path = Path(path)
    check_bundle_target(path)
    key = _signing_key(sign_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        write_state(model, tmp / CLASSIFIER_PART, tmp / ARRAYS_PART)
        parts = {"classifier": _part_record(tmp, CLASSIFIER_PART), "arrays": _part_record(tmp, ARRAYS_PART)}
        encoder = _image_encoder(model)
        if encoder is not None:
            # The ONNX export travels with the bundle, so a server without PyTorch can use it.
            src = encoder.ensure_export()
            dest = tmp / ENCODER_DIR / src.name
            dest.parent.mkdir()
            shutil.copyfile(src, dest)
            shutil.copyfile(encoder.hash_path, dest.with_name(encoder.hash_path.name))
            parts["image_encoder"] = _part_record(tmp, f"{ENCODER_DIR}/{src.name}", encoder=encoder.name)
        versions = library_versions()
        text_encoders = _text_encoder_records(model)
        versions.update({r["package"]: r["version"] for r in text_encoders})
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
            "modalities": ["text"] + (["image"] if encoder is not None else [])
                          + (["ocr"] if getattr(model, "ocr_", None) else []),
            "fusion": getattr(model, "fusion_", None),
            "training": training or {},
            "metrics": metrics or {},
            "notes": notes or [],
            "parts": parts,
        }
        if text_encoders:
            manifest["text_encoder"] = text_encoders[0]  # what readers before the list read
            manifest["text_encoders"] = text_encoders
        if getattr(model, "ocr_", None):  # the engine must be installed where it loads
            manifest["ocr"] = {**model.ocr_, "on_missing": "refuse"}
        data = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")
        (tmp / MANIFEST).write_bytes(data)
        if key is not None:
            (tmp / SIGNATURE).write_text(json.dumps(signing.sign(data, key), indent=2) + "\n", encoding="utf-8")
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


_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Manifest fields, the types they must have, and whether every bundle has them.
_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "format": ((str,), True),
    "format_version": ((int,), True),
    "versions": ((dict,), True),
    "parts": ((dict,), True),
    "classes": ((list,), True),
    "created_at": ((str,), False),
    "taxonomy": ((list,), False),
    "threshold": ((int, float, type(None)), False),
    "automation": ((dict, type(None)), False),
    "text_model": ((dict,), False),
    "parameters": ((dict,), False),
    "dropped_classes": ((dict,), False),
    "modalities": ((list,), False),
    "fusion": ((dict, type(None)), False),
    "training": ((dict,), False),
    "metrics": ((dict,), False),
    "notes": ((list,), False),
    "text_encoder": ((dict,), False),
    "text_encoders": ((list,), False),
    "ocr": ((dict,), False),
}


def _check_manifest_types(manifest: dict, mpath: Path) -> None:
    """Every field a reader uses has the type it expects: a malformed manifest is one clear error,
    not a traceback wherever the field is read."""
    def bad(what: str) -> BundleError:
        return BundleError(f"{mpath} is malformed: {what}")

    for name, (types, required) in _FIELDS.items():
        if name not in manifest:
            if required:
                raise bad(f"{name!r} is missing")
            continue
        value = manifest[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise bad(f"{name!r} is {type(value).__name__}, expected "
                      + " or ".join("null" if t is type(None) else t.__name__ for t in types))
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in manifest["versions"].items()):
        raise bad("'versions' must map names to version strings")
    if not all(isinstance(c, str) for c in manifest["classes"]):
        raise bad("'classes' must be strings")
    for name, part in manifest["parts"].items():
        if not (isinstance(part, dict) and isinstance(part.get("file"), str)
                and isinstance(part.get("sha256"), str) and _SHA256.fullmatch(part["sha256"])
                and isinstance(part.get("bytes", 0), int)):
            raise bad(f"part {name!r} needs a 'file' name, a 'sha256' and a 'bytes' count")
    if not all(isinstance(r, dict) for r in manifest.get("taxonomy", [])):
        raise bad("'taxonomy' must be a list of records")
    for key, records in (("text_encoder", [manifest.get("text_encoder")]),
                         ("text_encoders", manifest.get("text_encoders", []))):
        for record in records:
            if record is not None and not (isinstance(record, dict) and all(
                    isinstance(record.get(k), str) for k in ("name", "package", "version"))):
                raise bad(f"'{key}' needs a name, a package and a version for each encoder")


def _major(version: str) -> str:
    return version.split(".")[0]


def _check_versions(path: Path, manifest: dict) -> None:
    """Another prodcat major version is refused; other libraries' minor versions are one warning."""
    saved, current = manifest["versions"], library_versions()
    if "prodcat" in saved and _major(saved["prodcat"]) != _major(current["prodcat"]):
        raise BundleError(f"bundle {path} was saved by prodcat {saved['prodcat']}; this is prodcat "
                          f"{current['prodcat']}, another major version: retrain the model with it")
    if manifest["format_version"] == PICKLE_FORMAT_VERSION:
        for lib in PICKLE_LIBRARIES:
            if lib in saved and _minor(saved[lib]) != _minor(current[lib]):
                raise BundleError(f"bundle was saved with {lib} {saved[lib]}, this install has "
                                  f"{current[lib]}; install {lib}=={saved[lib]} or retrain the model")
        return
    differ = [f"{lib} {saved[lib]} (this install: {current[lib]})" for lib in ("prodcat", *STATE_LIBRARIES)
              if lib in saved and _minor(saved[lib]) != _minor(current[lib])]
    if differ:
        warnings.warn(f"bundle {path} was saved with {', '.join(differ)}; it loads, but retrain it if "
                      "its answers look wrong", BundleVersionWarning, stacklevel=3)


def _check_signature(path: Path, data: bytes, require_signature: bool | None,
                     sign_key: str | Path | bytes | None) -> None:
    if require_signature is None:
        require_signature = _env_flag(REQUIRE_SIGNATURE_ENV)
    if not require_signature:
        return
    try:
        key = _signing_key(sign_key)
    except ConfigError as exc:
        raise BundleError(f"cannot check the signature of {path}: {exc}") from None
    if key is None:
        raise BundleError(f"a signature is required, but no key to check it was given: --sign-key FILE "
                          f"or {SIGNING_KEY_ENV}=FILE")
    spath = path / SIGNATURE
    if not spath.is_file():
        raise BundleError(f"bundle {path} is not signed ({SIGNATURE} is missing) and a signature is "
                          f"required; sign it when training: prodcat train --sign-key FILE")
    try:
        record = json.loads(spath.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError):
        record = None
    signing.verify(data, record, key, f"bundle {path}")


def _load_manifest(path: Path, *, require_signature: bool | None = None, sign_key=None,
                   allow_pickle: bool | None = None) -> tuple[dict[str, Any], bool]:
    """``(manifest, pickled)``, read once: the bytes checked against the signature are the bytes parsed."""
    if not path.is_dir():
        raise BundleError(f"model bundle not found: {path} (expected a folder written by `prodcat train`)")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{path} is not a prodcat bundle: {MANIFEST} is missing")
    data = mpath.read_bytes()
    _check_signature(path, data, require_signature, sign_key)
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{mpath} is corrupt: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{mpath} is not a prodcat manifest")
    version = manifest.get("format_version")
    pickled = version == PICKLE_FORMAT_VERSION and type(version) is int
    if version != FORMAT_VERSION and not pickled:
        raise BundleError(f"bundle format version {version!r} cannot be read by prodcat "
                          f"{prodcat.__version__} (reads version {FORMAT_VERSION}); retrain the model")
    _check_manifest_types(manifest, mpath)
    if pickled:
        if allow_pickle is None:
            allow_pickle = _env_flag(ALLOW_PICKLE_ENV)
        if not allow_pickle:
            source = manifest.get("training", {}).get("source") or "DATA"
            raise BundleError(
                f"bundle {path} was saved by an older prodcat as a pickle ({PICKLE_PART}), which can "
                f"run code when it is loaded; retrain it: prodcat train --data {source} --out {path} "
                "(only for a bundle you made yourself: --allow-pickle, or PRODCAT_ALLOW_PICKLE=1)")
    _check_versions(path, manifest)
    for name in ("classifier",) if pickled else ("classifier", "arrays"):
        if name not in manifest["parts"]:
            raise BundleError(f"bundle {path} is incomplete: the manifest names no {name} part")
    return manifest, pickled


def read_manifest(path: str | Path, *, require_signature: bool | None = None,
                  sign_key: str | Path | bytes | None = None,
                  allow_pickle: bool | None = None) -> dict[str, Any]:
    """The manifest of the bundle at ``path``, checked for types, format and versions.

    ``require_signature`` (default: ``$PRODCAT_REQUIRE_SIGNATURE``) refuses a bundle without a
    valid ``manifest.sig`` for ``sign_key`` (default: the file ``$PRODCAT_SIGNING_KEY`` names);
    ``allow_pickle`` (default: ``$PRODCAT_ALLOW_PICKLE``) accepts a format-1 (pickle) bundle.
    """
    return _load_manifest(Path(path), require_signature=require_signature, sign_key=sign_key,
                          allow_pickle=allow_pickle)[0]


def _part_path(path: Path, manifest: dict, name: str) -> Path:
    """The file of part ``name``, which must lie inside the bundle folder."""
    part = manifest["parts"].get(name)
    if part is None:
        raise BundleError(f"bundle {path} is incomplete: its {name} part is missing")
    rel = PurePosixPath(part["file"])
    if (not part["file"] or "\\" in part["file"] or rel.is_absolute()
            or any(p in ("", ".", "..") for p in part["file"].split("/"))):
        raise BundleError(f"bundle {path}: part {name!r} names {part['file']!r}, which is not a file "
                          "inside the bundle; refusing to load it")
    fpath = path / rel
    root = path.resolve()
    if root not in fpath.resolve().parents:
        raise BundleError(f"bundle {path}: part {name!r} ({part['file']}) points outside the bundle; "
                          "refusing to load it")
    if not fpath.is_file():
        raise BundleError(f"bundle {path} is incomplete: its {name} part is missing")
    return fpath


def _changed(path: Path, fpath: Path) -> BundleError:
    return BundleError(f"bundle {path} was changed after it was saved: {fpath.name} does not match "
                       "the sha256 in manifest.json; refusing to load it")


def _checked_part(path: Path, manifest: dict, name: str) -> Path:
    fpath = _part_path(path, manifest, name)
    if sha256_file(fpath) != manifest["parts"][name]["sha256"]:
        raise _changed(path, fpath)
    return fpath


def _read_part(path: Path, manifest: dict, name: str) -> bytes:
    """A part's bytes, read once and checked: what is loaded is what was hashed."""
    fpath = _part_path(path, manifest, name)
    data = fpath.read_bytes()
    if hashlib.sha256(data).hexdigest() != manifest["parts"][name]["sha256"]:
        raise _changed(path, fpath)
    return data


def _check_inert(path: Path, instances: list) -> None:
    """Allowlisted classes can still be told to reach outside the bundle through their
    attributes: an encoder's spec names the module it imports and the weights it runs, a text
    vectorizer's ``input`` can make it open files named by the listings. Those must be what
    prodcat itself would have stored."""
    from sklearn.feature_extraction.text import CountVectorizer

    from prodcat.image.encoders import ENCODERS, EncoderSpec
    from prodcat.text.encoders import TEXT_ENCODERS, TextEncoderSpec

    code_fields = {TextEncoderSpec: (TEXT_ENCODERS, ("package", "module", "backend")),
                   EncoderSpec: (ENCODERS, ("arch", "weights_module", "weights_class", "weights_file"))}
    for obj in instances:
        if isinstance(obj, CountVectorizer) and getattr(obj, "input", "content") != "content":
            raise BundleError(f"bundle {path}: a text vectorizer reads {obj.input!r} instead of the "
                              "listings' text; refusing to load it")
        registry, fields = code_fields.get(type(obj), (None, ()))
        if registry is None:
            continue
        try:
            known = registry.get(obj.name)
        except ConfigError:
            raise BundleError(f"bundle {path} uses an encoder this prodcat does not know: "
                              f"{str(getattr(obj, 'name', '?'))[:60]!r}") from None
        if any(getattr(obj, f, None) != getattr(known, f) for f in fields):
            raise BundleError(f"bundle {path}: its {known.name} encoder differs from this prodcat's "
                              "(module or weights); refusing to load it")


def _load_pickled(path: Path, manifest: dict):
    warnings.warn(f"loading {path}, a pickled bundle ({PICKLE_PART}): only do this for a bundle you "
                  "made yourself, and retrain it to get a bundle that cannot run code",
                  BundleVersionWarning, stacklevel=3)
    data = _read_part(path, manifest, "classifier")
    try:
        model = joblib.load(io.BytesIO(data))
    except Exception as exc:
        raise BundleError(f"cannot load {path / PICKLE_PART}: {exc}") from None
    if not hasattr(model, "threshold_"):  # saved before the threshold was fitted: it was given
        model.threshold_ = float(getattr(model, "threshold", 0.8))
    return model


def load_bundle(path: str | Path, *, require_signature: bool | None = None,
                sign_key: str | Path | bytes | None = None, allow_pickle: bool | None = None):
    """Load a bundle; returns ``(classifier, manifest)``. Any change to a part is refused.

    Options as :func:`read_manifest`'s. Nothing is unpickled unless ``allow_pickle`` loads a
    format-1 bundle.
    """
    from sklearn.exceptions import InconsistentVersionWarning

    from prodcat.image.runtime import ImageEncoder
    from prodcat.model.classifier import Classifier

    path = Path(path)
    manifest, pickled = _load_manifest(path, require_signature=require_signature, sign_key=sign_key,
                                       allow_pickle=allow_pickle)
    _check_text_encoder(path, manifest)
    check_bundle_ocr(path, manifest)
    if pickled:
        model, instances = _load_pickled(path, manifest), []
    else:
        tree, arrays = _read_part(path, manifest, "classifier"), _read_part(path, manifest, "arrays")
        try:
            with warnings.catch_warnings():
                # One BundleVersionWarning said it already, not one warning per estimator.
                warnings.simplefilter("ignore", InconsistentVersionWarning)
                model, instances = read_state(tree, arrays)
        except BundleError as exc:
            raise BundleError(f"cannot load bundle {path}: {exc}") from None
        except Exception as exc:  # a state this install's classes cannot take
            raise BundleError(f"cannot load bundle {path}: {type(exc).__name__}: {exc}; retrain the "
                              "model with this install") from None
        _check_inert(path, instances)
    if not isinstance(model, Classifier):
        raise BundleError(f"bundle {path} does not hold a prodcat Classifier")
    encoder = _image_encoder(model)
    for obj in [*instances, encoder]:
        if isinstance(obj, ImageEncoder):
            obj.cache_dir = str(path.resolve())  # run the export shipped in the bundle, nothing else
    if encoder is not None:
        shipped = _checked_part(path, manifest, "image_encoder")
        if Path(encoder.onnx_path).resolve() != shipped.resolve():
            raise BundleError(f"bundle {path}: its image encoder would run {encoder.onnx_path.name}, "
                              f"not the export the manifest checks ({shipped.name}); refusing to load it")
    return model, manifest
