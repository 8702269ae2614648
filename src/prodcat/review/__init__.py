"""The human loop's store: listings the model is unsure of, suspected label errors and sellers'
corrections wait here for people to decide (:class:`ReviewStore`); decisions feed training.

SQLite file by default (``sqlite:///reviews.db``), PostgreSQL by URL; the schema is created and
upgraded by the Alembic migrations shipped in this package whenever a store is opened.
"""

from prodcat.review.models import ORDERS, REASONS
from prodcat.review.store import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_URL,
    AlreadyDecided,
    ClaimedByOther,
    ItemNotFound,
    NewItem,
    ReviewError,
    ReviewStore,
    margin_of,
    open_store,
)

__all__ = ["DEFAULT_LEASE_SECONDS", "DEFAULT_URL", "ORDERS", "REASONS", "AlreadyDecided",
           "ClaimedByOther", "ItemNotFound", "NewItem", "ReviewError", "ReviewStore", "margin_of",
           "open_store"]
