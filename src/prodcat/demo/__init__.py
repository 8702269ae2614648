"""A small demo catalogue generated in code (our own listings and drawings), Rakuten layout."""

from prodcat.demo.catalog import (
    DEMO_CATEGORIES,
    DEMO_EXAMPLE,
    DEMO_VERSION,
    demo_catalog_path,
    write_demo_catalog,
)

__all__ = [
    "DEMO_CATEGORIES", "DEMO_EXAMPLE", "DEMO_VERSION", "demo_catalog_path", "write_demo_catalog",
]
