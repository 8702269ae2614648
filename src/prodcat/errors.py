"""User-facing errors.

Everything a user can cause (a missing file, a bad column, a tampered bundle) raises a
:class:`ProdcatError` subclass whose message says what was expected; the CLI turns these into
one clear line and exit code 2 instead of a traceback.

:class:`DataError` and :class:`ConfigError` are also ``ValueError`` subclasses (as scikit-learn's
``InvalidParameterError`` is), so code written against the usual Python contract for a bad
value catches them without knowing prodcat.
"""


class ProdcatError(Exception):
    """An error caused by the user's input, reported without a traceback."""

    exit_code = 2


class DataError(ProdcatError, ValueError):
    """The data set cannot be read as asked (missing file, column, encoding, no rows)."""


class BundleError(ProdcatError):
    """A model bundle is missing, incompatible, or has been changed since it was saved."""


class ConfigError(ProdcatError, ValueError):
    """An unknown name or an invalid parameter was asked for."""
