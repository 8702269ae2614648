"""Classifier heads by name, with the calibration every prodcat head promises.

The text and image sides each keep a :class:`HeadRegistry` of their own heads; both answer
calibrated ``predict_proba`` because those probabilities are fused and compared with the
automation threshold. Heads whose scores are margins are calibrated by cross-validation
(Platt scaling by default).

A builder declares the parameters it uses. ``class_weight``, ``random_state`` and ``n_jobs``,
which the models hand every head, reach only the builders that declare them; any other
parameter a head does not take (``C`` for complement naive Bayes) is a ConfigError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sklearn.calibration import CalibratedClassifierCV

from prodcat.errors import ConfigError
from prodcat.registry import Registry

CALIBRATIONS = ("auto", "sigmoid", "temperature", "isotonic", "none")


@dataclass(frozen=True)
class HeadSpec:
    name: str
    build: Callable[..., object]
    needs_calibration: bool
    description: str


#: Parameters the text and image models hand every head: a builder gets those it declares.
SHARED_PARAMS = ("class_weight", "random_state", "n_jobs")


class HeadRegistry(Registry[HeadSpec]):
    """name → :class:`HeadSpec`; ``register`` decorates a builder, ``create`` builds a head
    calibrated as it needs."""

    def __init__(self, kind: str):
        super().__init__(kind, build=lambda spec: spec.build, shared=SHARED_PARAMS)

    def register(self, name: str, *, needs_calibration: bool, description: str):
        def wrap(fn):
            Registry.register(self, name, HeadSpec(name, fn, needs_calibration, description))
            return fn

        return wrap

    def create(self, name: str, *, calibration: str = "auto", calibration_cv: int = 3, **params):
        """Build head ``name`` with ``params``. ``calibration``: ``auto`` (calibrate heads that
        need it), ``sigmoid`` (Platt, one per class), ``temperature``, ``isotonic`` or ``none``."""
        spec = self.get(name)
        if calibration not in CALIBRATIONS:
            raise ConfigError(f"unknown calibration {calibration!r}; choose one of {', '.join(CALIBRATIONS)}")
        estimator = super().create(name, **params)
        if calibration == "none" or (calibration == "auto" and not spec.needs_calibration):
            return estimator
        # ensemble=False keeps one fitted model (small bundle, fast predict) and calibrates it
        # on out-of-fold scores, so the calibration never sees training-set margins. Folds run
        # one after the other: the heads use the cores themselves, and memory stays at one fold's.
        method = "sigmoid" if calibration == "auto" else calibration
        return CalibratedClassifierCV(estimator, method=method, cv=calibration_cv, ensemble=False)
