"""prodcat: product categorisation of marketplace listings from text and images."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("prodcat")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

from prodcat.errors import ProdcatError  # noqa: E402

__all__ = ["ProdcatError", "__version__"]
