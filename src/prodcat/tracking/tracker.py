"""Experiment tracking: ``prodcat train`` and ``prodcat evaluate`` runs recorded in MLflow.

Tracking is on when the ``track`` extra (MLflow) is installed, and it never breaks a run: if
MLflow is missing, the store unreachable, locked or read-only, or the URI is wrong, the run
prints one ``warning:`` line and goes on without tracking, with the same exit status.

Where runs go, first match wins:

1. ``--tracking-uri URI`` (any MLflow tracking URI; a plain folder means a SQLite store in it);
2. ``MLFLOW_TRACKING_URI``;
3. a SQLite store in ``$PRODCAT_TRACKING_DIR`` (default ``./mlruns-prodcat``): ``mlflow.db`` with
   the artifacts (bundles, reports) beside it in ``mlartifacts/``.

``PRODCAT_TRACKING=0`` turns tracking off by default (``--track`` turns it back on for a run).
MLflow itself is imported only when a run starts; its usage telemetry is off unless
``MLFLOW_DISABLE_TELEMETRY`` says otherwise, and HTTP stores get short timeouts and few retries
(unless ``MLFLOW_HTTP_REQUEST_*`` are set) so an unreachable server costs seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import getpass
import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import prodcat
from prodcat.tracking import values as V

DEFAULT_EXPERIMENT = "prodcat"
DEFAULT_DIR = "mlruns-prodcat"
DIR_ENV = "PRODCAT_TRACKING_DIR"
SWITCH_ENV = "PRODCAT_TRACKING"
DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
#: Tag holding the kind of run (``train`` or ``evaluate``); ``prodcat runs --kind`` filters on it.
KIND_TAG = "prodcat.kind"
#: Settings given to MLflow's HTTP client unless the environment already has them.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
_OFF = ("0", "off", "false", "no")
_ON = ("1", "on", "true", "yes")


class TrackingUnavailable(Exception):
    """MLflow is not installed, or the store cannot be used."""


def mlflow_installed() -> bool:
    return importlib.util.find_spec("mlflow") is not None


def default_store_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


def sqlite_uri(path: Path) -> str:
    """``sqlite:////abs/path.db``: absolute, so the store does not depend on the working folder."""
    return "sqlite:///" + Path(path).expanduser().resolve().as_posix()


def resolve_uri(uri: str | None = None) -> str:
    """The tracking URI a run uses: ``uri``, else ``MLFLOW_TRACKING_URI``, else the local default.

    A URI without a scheme is a local path: ``runs.db`` a SQLite file, anything else a folder
    holding ``mlflow.db`` (and ``mlartifacts/``)."""
    uri = (uri or os.environ.get("MLFLOW_TRACKING_URI") or "").strip()
    if not uri:
        return sqlite_uri(default_store_dir() / DB_NAME)
    scheme = urlsplit(uri).scheme
    if uri == "databricks" or (scheme and not (len(scheme) == 1 and os.name == "nt")):
        return uri
    path = Path(uri).expanduser()
    return sqlite_uri(path if path.suffix in (".db", ".sqlite", ".sqlite3") else path / DB_NAME)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores and in-memory ones)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return None if not path or path == ":memory:" else Path(path)


def artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite file; the server decides otherwise."""
    db = sqlite_path(uri)
    return (db.parent / ARTIFACTS_DIR).resolve().as_uri() if db is not None else None


def display_uri(uri: str) -> str:
    """``uri`` without a password, for messages and tags."""
    try:
        parts = urlsplit(uri)
        if parts.password:
            host = parts.hostname or ""
            netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        pass
    return uri


def one_line(exc: BaseException, limit: int = 240) -> str:
    """An exception as one short line (SQLAlchemy and MLflow messages span several)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.split(" (Background on this error at")[0].split(" [SQL: ")[0]
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def _set_http_defaults() -> dict[str, str | None]:
    """:data:`HTTP_DEFAULTS` where the environment has none; returns what to undo (for
    :func:`_restore_env`)."""
    previous = {}
    for key, value in HTTP_DEFAULTS.items():
        if key not in os.environ:
            previous[key] = None
            os.environ[key] = value
    return previous


def _restore_env(previous: Mapping[str, str | None]) -> None:
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def quiet_mlflow():
    """Inside: MLflow's warnings and log lines are held back (prodcat reports a failure itself, in
    one line, where MLflow would log a traceback), unless ``MLFLOW_LOGGING_LEVEL`` is set."""
    logger = logging.getLogger("mlflow")
    saved = logger.level
    own = "MLFLOW_LOGGING_LEVEL" not in os.environ
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if own:
                logger.setLevel(logging.CRITICAL)
            yield
    finally:
        if own:
            logger.setLevel(saved if saved != logging.NOTSET else logging.WARNING)


def import_mlflow():
    """``mlflow``, imported on first use (it takes a second or two)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        with quiet_mlflow():
            import mlflow
            from mlflow.tracking import MlflowClient  # noqa: F401
    except ImportError as exc:
        raise TrackingUnavailable(f"MLflow is not installed ({exc}); pip install 'prodcat[track]'") from None
    return mlflow  # (its logger, set to INFO on import, is left at WARNING by quiet_mlflow)


def open_client(uri: str, *, create: bool = True):
    """An ``MlflowClient`` for ``uri``. A SQLite store's folder is created when ``create``;
    otherwise a missing SQLite file raises :class:`FileNotFoundError` (nothing is written)."""
    import_mlflow()
    from mlflow.tracking import MlflowClient

    db = sqlite_path(uri)
    if db is not None:
        if create:
            db.parent.mkdir(parents=True, exist_ok=True)
        elif not db.is_file():
            raise FileNotFoundError(db)
    with quiet_mlflow():
        return MlflowClient(tracking_uri=uri)


def get_or_create_experiment(client, name: str, uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location(uri))
        except Exception:
            exp = client.get_experiment_by_name(name)  # created meanwhile by another process
            if exp is None:
                raise
    if exp.lifecycle_stage != "active":
        raise TrackingUnavailable(f"experiment {name!r} is deleted in this store; restore it or "
                                  "give another --experiment")
    return exp.experiment_id


def code_version_tags() -> dict[str, str]:
    """prodcat's version and, when it runs from a git checkout, the commit (and whether the tree
    had uncommitted changes). Read-only git calls, with a short timeout."""
    tags = {"prodcat.version": prodcat.__version__, "python.version": sys.version.split()[0]}
    root = Path(prodcat.__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return tags
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        tags["mlflow.source.git.commit"] = commit
        status = subprocess.run(["git", "--no-optional-locks", "-C", str(root), "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True, timeout=5,
                                check=True).stdout
        tags["prodcat.git_dirty"] = str(bool(status.strip())).lower()
    except (OSError, subprocess.SubprocessError):
        pass
    return tags


def _warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class Tracker:
    """Where and whether runs are tracked; :meth:`start_run` opens one.

    ``enabled``: True (asked for: a missing MLflow is worth a warning), False (off), None (on
    when ``uri`` is given, else when MLflow is installed unless ``PRODCAT_TRACKING=0``).
    ``warn`` prints a warning line (the only output when tracking fails); ``note``, if given,
    is told where a run is recorded.
    """

    def __init__(self, uri: str | None = None, experiment: str | None = None, enabled: bool | None = None,
                 warn: Callable[[str], None] | None = None, note: Callable[[str], None] | None = None):
        if enabled is None:  # --track/--no-track, else an explicit URI, else PRODCAT_TRACKING
            switch = os.environ.get(SWITCH_ENV, "").strip().lower()
            if uri or switch in _ON:
                enabled = True
            elif switch in _OFF:
                enabled = False
        self.requested = bool(enabled)
        self.enabled = enabled is not False
        self.uri_option = uri
        self.experiment = experiment or DEFAULT_EXPERIMENT
        self.warn = warn or _warn_stderr
        self.note = note

    @property
    def uri(self) -> str:
        return resolve_uri(self.uri_option)

    def start_run(self, kind: str, *, data=None, model=None, params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, str] | None = None, run_name: str | None = None,
                  finish_required: bool = False) -> TrackedRun:
        """A run to use as a context manager (``with tracker.start_run("train", data=catalog) as run``).

        ``data``: the Catalog read (source, fingerprint, counts become tags). ``model``: an
        estimator (or a manifest's ``parameters``) whose parameters are logged. ``params``: more
        parameters; nested dicts are flattened to dotted names. The run ends FINISHED when the block exits normally
        (with ``finish_required``, only once :meth:`TrackedRun.finish` was called) and FAILED
        otherwise. Every method of the run is a no-op once tracking is off or has failed.
        """
        return TrackedRun(self, kind, data=data, model=model, params=params, tags=tags, run_name=run_name,
                          finish_required=finish_required)


class TrackedRun:
    """One MLflow run, or nothing when tracking is off; see :meth:`Tracker.start_run`."""

    def __init__(self, tracker: Tracker, kind: str, *, data=None, model=None, params=None, tags=None,
                 run_name=None, finish_required=False):
        self.tracker, self.kind = tracker, kind
        self._data, self._model, self._params = data, model, params
        self._tags, self._name = tags, run_name
        self.finish_required = finish_required
        self.client = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.uri: str | None = None
        self._finished = False
        self._logged_params: set[str] = set()
        self._env: dict[str, str | None] = {}

    @property
    def active(self) -> bool:
        return self.run_id is not None

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> TrackedRun:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is KeyboardInterrupt:
            self.end("KILLED")
        elif exc_type is not None or (self.finish_required and not self._finished):
            self.end("FAILED")
        else:
            self.end("FINISHED")

    def start(self) -> None:
        t = self.tracker
        if not t.enabled or self.active:
            return
        if not t.requested and not mlflow_installed():
            return  # the extra is not installed and nobody asked: quietly untracked
        self._env = _set_http_defaults()
        self.uri = t.uri
        try:
            with quiet_mlflow():
                t0 = time.perf_counter()
                self.client = open_client(self.uri)
                self.experiment_id = get_or_create_experiment(self.client, t.experiment, self.uri)
                tags = {KIND_TAG: self.kind, "mlflow.source.name": f"prodcat {self.kind}",
                        "mlflow.source.type": "LOCAL", **code_version_tags()}
                with contextlib.suppress(Exception):  # no user name (some containers): left out
                    tags["mlflow.user"] = getpass.getuser()
                if self._data is not None:
                    tags.update(V.data_tags(self._data))
                tags.update({k: str(v) for k, v in (self._tags or {}).items()})
                name = self._name or " ".join(filter(None, [self.kind, tags.get("data.name")]))
                run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
                self.run_id = run.info.run_id
                self.startup_seconds = time.perf_counter() - t0
                params = {**(V.model_params(self._model) if self._model is not None else {}),
                          **(self._params or {})}
        except Exception as exc:
            self._fail(exc, "could not start")
            return
        self.log_params(params)
        if self.active and t.note is not None:
            t.note(f"tracking: MLflow run {self.run_id[:8]} in experiment {t.experiment!r} "
                   f"({display_uri(self.uri)})")

    def finish(self) -> None:
        """The command succeeded: the run ends FINISHED (see ``finish_required``)."""
        self._finished = True

    def end(self, status: str = "FINISHED") -> None:
        if self.active:
            try:
                with quiet_mlflow():
                    self.client.set_terminated(self.run_id, status=status)
            except Exception as exc:
                self._fail(exc, "could not close")
            self.run_id = None
        _restore_env(self._env)
        self._env = {}

    def _fail(self, exc: BaseException, what: str = "failed") -> None:
        where = display_uri(self.uri or self.tracker.uri_option or "")
        self.tracker.warn(f"experiment tracking {what} ({one_line(exc)}; store {where}); "
                          "going on without it")
        if self.run_id is not None and self.client is not None:
            with contextlib.suppress(Exception), quiet_mlflow():  # mark it, if the store answers
                self.client.set_terminated(self.run_id, status="FAILED")
        self.run_id = None
        _restore_env(self._env)
        self._env = {}

    def _guard(self, fn: Callable[[], Any]) -> None:
        if not self.active:
            return
        try:
            with quiet_mlflow():
                fn()
        except Exception as exc:
            self._fail(exc)

    # -- logging --------------------------------------------------------------------------

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Nested dicts flatten to dotted names; a name already logged is skipped (MLflow's
        parameters cannot change within a run)."""
        flat = {k: v for k, v in V.flatten_params(params).items() if k not in self._logged_params}
        if not flat:
            return

        def log():
            from mlflow.entities import Param

            items = [Param(k, v) for k, v in flat.items()]
            for i in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[i:i + 100])
            self._logged_params.update(flat)

        self._guard(log)

    def log_model_params(self, model, **extra: Any) -> None:
        """A model's parameters (:func:`prodcat.tracking.values.model_params`) plus ``extra``."""
        if self.active:
            self.log_params({**V.model_params(model), **extra})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        def log():
            from mlflow.entities import RunTag

            items = [RunTag(V.clean_key(k), str(v)[:5000]) for k, v in tags.items() if v is not None]
            for i in range(0, len(items), 100):
                self.client.log_batch(self.run_id, tags=items[i:i + 100])

        self._guard(log)

    def log_metrics(self, metrics: Mapping[str, float], steps: Iterable[tuple[str, float, int]] = ()) -> None:
        """``metrics`` at step 0, and ``(name, value, step)`` histories such as per-fold scores."""
        rows = [(k, float(v), 0) for k, v in metrics.items()] + [(k, float(v), int(s)) for k, v, s in steps]

        def log():
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            items = [Metric(V.clean_key(k), v, now, s) for k, v, s in rows]
            for i in range(0, len(items), 1000):
                self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

        if rows:
            self._guard(log)

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        self._guard(lambda: self.client.log_artifacts(self.run_id, str(local_dir), artifact_path))

    def log_dict(self, data: Mapping, artifact_file: str) -> None:
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
        self._guard(lambda: self.client.log_text(self.run_id, text, artifact_file))

    # -- what prodcat's commands record ---------------------------------------------------

    def log_bundle(self, bundle_dir: str | Path) -> None:
        """A train run's results: the CV metrics (per fold as steps), fit time, the chosen fusion,
        all read from the bundle's manifest, and the bundle folder itself under ``bundle/``."""
        if not self.active:
            return
        bundle_dir = Path(bundle_dir)
        try:
            manifest = json.loads((bundle_dir / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self._fail(exc)
            return
        metrics, steps, tags = V.train_values(manifest)
        self.log_metrics(metrics, steps)
        self.set_tags({**tags, "model.path": str(bundle_dir.resolve())})
        self.log_artifacts(bundle_dir, "bundle")

    def log_evaluation(self, metrics: Mapping[str, Any], report_dir: str | Path) -> None:
        """An evaluate run's results: scores from ``metrics`` (modalities, photo groups, coverage,
        robustness; per fold as steps under ``--cv``) and the report folder under ``report/``."""
        if not self.active:
            return
        values, steps, tags = V.evaluation_values(metrics)
        self.log_metrics(values, steps)
        self.set_tags({**tags, "report.path": str(Path(report_dir).resolve())})
        self.log_artifacts(report_dir, "report")

    def bundle_reference(self) -> dict[str, str]:
        """What a bundle's manifest records about the run that trained it (empty when untracked)."""
        if not self.active:
            return {}
        return {"mlflow_run_id": self.run_id, "mlflow_experiment_id": str(self.experiment_id),
                "mlflow_tracking_uri": display_uri(self.uri or "")}
