"""Parameter checks where scikit-learn keeps them: first thing in ``fit``.

Each estimator declares ``_parameter_constraints`` in scikit-learn's vocabulary (types,
``Interval``, ``StrOptions``); :func:`check_params` validates them with scikit-learn's own
machinery and re-raises its error as a :class:`~prodcat.errors.ConfigError`, which the CLI, the
API and the web app turn into one clear message. A wrong value given from Python, a server or a
command line is caught in the same place, with the same words.
"""

from __future__ import annotations

from numbers import Integral, Real

from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions

from prodcat.errors import ConfigError

__all__ = ["Integral", "Interval", "Real", "StrOptions", "check_params"]


def check_params(estimator) -> None:
    """Validate ``estimator``'s parameters against its ``_parameter_constraints``."""
    try:
        estimator._validate_params()
    except InvalidParameterError as exc:
        raise ConfigError(str(exc)) from exc
