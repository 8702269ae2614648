"""Reading listings from any source into one Catalog schema."""

from prodcat.data.catalog import COLUMNS, FEATURE_COLUMNS, Catalog, ReadReport, make_catalog
from prodcat.data.readers import READERS, detect_format, list_formats, read_catalog
from prodcat.data.taxonomy import Category, Taxonomy

__all__ = [
    "COLUMNS", "FEATURE_COLUMNS", "READERS", "Catalog", "Category", "ReadReport", "Taxonomy",
    "detect_format", "list_formats", "make_catalog", "read_catalog",
]
