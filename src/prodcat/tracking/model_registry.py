"""Bundles as MLflow registered model versions, with the aliases ``champion`` and ``challenger``.

``prodcat compare`` registers the bundles it compares when tracking is on: each bundle folder is
logged under the compare run (``bundle-new/``, and ``bundle-old/`` when the registered model has no
champion yet) and becomes a version of the registered model (``--registered-model``, default
``prodcat``). The new version is the *challenger*; when it is not worse, it becomes the
*champion* (and the challenger alias is removed). ``prodcat serve --model models:/NAME@champion``
resolves the alias with :func:`resolve_model_uri`: the version's bundle is downloaded once into the
prodcat cache folder (``models/NAME/VERSION-SOURCEHASH``) and served from there.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from prodcat.errors import ConfigError

CHAMPION = "champion"
CHALLENGER = "challenger"
DEFAULT_REGISTERED_MODEL = "prodcat"
_PROGRESS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


def is_model_uri(text: str) -> bool:
    return str(text).startswith("models:/")


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` → ``(name, alias, version)``."""
    m = _MODELS_URI.match(uri.strip())
    if not m:
        raise ConfigError(f"{uri!r} is not a registered model URI: use models:/NAME@ALIAS or models:/NAME/VERSION")
    return m["name"], m["alias"], m["version"]


def _ensure_registered_model(client, name: str) -> None:
    try:
        client.get_registered_model(name)
    except Exception:
        try:
            client.create_registered_model(name, description="prodcat bundles (see `prodcat compare`)")
        except Exception:
            client.get_registered_model(name)  # created meanwhile by another process


def alias_version(client, name: str, alias: str) -> str | None:
    """The version ``alias`` points to, or None (no such model or alias)."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception:
        return None


def register_bundle(run, bundle_dir: str | os.PathLike, name: str, artifact_path: str = "bundle",
                    tags: dict | None = None) -> str:
    """Log ``bundle_dir`` under ``run`` (a :class:`~prodcat.tracking.TrackedRun`) at
    ``artifact_path`` and register it as a new version of ``name``; returns the version."""
    client = run.client
    client.log_artifacts(run.run_id, str(bundle_dir), artifact_path)
    _ensure_registered_model(client, name)
    mv = client.create_model_version(name, source=f"runs:/{run.run_id}/{artifact_path}", run_id=run.run_id,
                                     tags={k: str(v) for k, v in (tags or {}).items()},
                                     description=f"prodcat bundle {Path(bundle_dir).resolve()}")
    return str(mv.version)


def register_comparison(run, name: str, old_dir, new_dir, not_worse: bool) -> dict:
    """Register the new bundle (and the old one, if ``name`` has no champion yet) and move the
    aliases: a new bundle that is not worse becomes the champion, else the challenger."""
    client = run.client
    champion = alias_version(client, name, CHAMPION)
    out: dict = {"registered_model": name}
    if champion is None:
        champion = register_bundle(run, old_dir, name, "bundle-old", {"prodcat.role": "compared (old)"})
        client.set_registered_model_alias(name, CHAMPION, champion)
        out["old_version"] = champion
    new = register_bundle(run, new_dir, name, "bundle-new", {"prodcat.role": "compared (new)"})
    out["new_version"] = new
    if not_worse:
        client.set_registered_model_alias(name, CHAMPION, new)
        if alias_version(client, name, CHALLENGER) is not None:
            client.delete_registered_model_alias(name, CHALLENGER)
        out["message"] = f"{name} version {new} registered and made {CHAMPION} (was version {champion})"
    else:
        client.set_registered_model_alias(name, CHALLENGER, new)
        out["message"] = (f"{name} version {new} registered as {CHALLENGER}; {CHAMPION} stays "
                          f"version {champion}")
    out["champion"] = alias_version(client, name, CHAMPION)
    out["challenger"] = alias_version(client, name, CHALLENGER)
    return out


def resolve_model_uri(uri: str, tracking_uri: str | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """The local bundle folder of ``models:/NAME@ALIAS`` (or ``models:/NAME/VERSION``),
    downloaded from the MLflow store into ``cache_dir/models/NAME/VERSION-HASH`` the first
    time (the hash is of the version's source, so two stores' versions never share a folder)."""
    from prodcat.tracking.tracker import TrackingUnavailable, open_client, quiet_mlflow, resolve_uri

    name, alias, version = parse_model_uri(uri)
    store = resolve_uri(tracking_uri)
    try:
        client = open_client(store, create=False)
    except (TrackingUnavailable, FileNotFoundError) as exc:
        raise ConfigError(f"cannot resolve {uri}: no MLflow store at {store} ({exc})") from None
    with quiet_mlflow():
        try:
            mv = (client.get_model_version_by_alias(name, alias) if alias
                  else client.get_model_version(name, version))
        except Exception as exc:
            raise ConfigError(f"cannot resolve {uri} in {store}: {' '.join(str(exc).split())[:300]}") from None
        if cache_dir is None:
            from prodcat.embedding_cache import default_cache_dir

            cache_dir = default_cache_dir()
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
        # The source (runs:/RUN_ID/...) tells two stores' "version 3" apart.
        tag = hashlib.sha256(str(mv.source).encode()).hexdigest()[:8]
        target = Path(cache_dir) / "models" / safe / f"{mv.version}-{tag}"
        if (target / "manifest.json").is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{mv.version}.", dir=target.parent))
        try:
            from mlflow.artifacts import download_artifacts

            bar = os.environ.get(_PROGRESS_ENV)
            os.environ[_PROGRESS_ENV] = "false"  # stderr is for prodcat's own lines
            try:
                got = Path(download_artifacts(artifact_uri=mv.source, dst_path=str(tmp), tracking_uri=store))
            finally:
                if bar is None:
                    os.environ.pop(_PROGRESS_ENV, None)
                else:
                    os.environ[_PROGRESS_ENV] = bar
            found = got if (got / "manifest.json").is_file() else next(
                (p.parent for p in got.rglob("manifest.json")), None)
            if found is None:
                raise ConfigError(f"{uri} (version {mv.version}, {mv.source}) holds no prodcat bundle")
            if target.exists():
                shutil.rmtree(target)
            os.replace(found, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
