"""Experiment tracking with MLflow (optional extra ``track``): ``prodcat train`` and ``prodcat
evaluate`` record their parameters, metrics, report and bundle; ``prodcat runs`` lists and
compares them. See :mod:`prodcat.tracking.tracker` for where runs go and how failures are handled.
"""

from prodcat.tracking.tracker import (
    DEFAULT_DIR,
    DEFAULT_EXPERIMENT,
    DIR_ENV,
    SWITCH_ENV,
    TrackedRun,
    Tracker,
    mlflow_installed,
    resolve_uri,
)

__all__ = ["DEFAULT_DIR", "DEFAULT_EXPERIMENT", "DIR_ENV", "SWITCH_ENV", "TrackedRun", "Tracker",
           "mlflow_installed", "resolve_uri"]
