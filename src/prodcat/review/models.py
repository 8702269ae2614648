"""The review store's tables (SQLAlchemy 2 declarative models).

The schema itself is created and changed only by the Alembic migrations in ``alembic/versions``;
these classes must describe the same columns (a test compares them).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Why a listing was queued.
REASONS = ("low_confidence", "modalities_disagree", "suspected_label_error", "feedback")
#: Queue orders: arrival, or smallest margin between the model's two best answers first.
ORDERS = ("oldest", "uncertain")


class Base(DeclarativeBase):
    pass


class ReviewItem(Base):
    __tablename__ = "review_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    listing_id: Mapped[str | None] = mapped_column(String(200), index=True)
    title: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    #: sha256 of the photo's bytes; the file is ``<photo folder>/<sha[:2]>/<sha>``.
    photo_sha256: Mapped[str | None] = mapped_column(String(64))
    model_id: Mapped[str | None] = mapped_column(String(200))
    #: The model's answer: [{"code", "name", "parent", "probability"}, ...], best first.
    top_k: Mapped[list | None] = mapped_column(JSON)
    #: Top-1 code, kept apart so agreement with reviewers is one SQL comparison.
    model_label: Mapped[str | None] = mapped_column(String(100))
    #: p(top-1) - p(top-2): small means unsure (margin sampling).
    margin: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(32))
    #: The label the listing came with (audit) or the one proposed (feedback).
    given_label: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The lease in force, if any: who holds the item and until when.
    claim_id: Mapped[int | None] = mapped_column(Integer)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_review_items_queue", "status", "created_at"),
                      Index("ix_review_items_margin", "status", "margin"))


class Claim(Base):
    __tablename__ = "claims"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(200))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Decision(Base):
    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: Unique: the database itself refuses a second decision on one item.
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id"), unique=True)
    label: Mapped[str] = mapped_column(String(100))
    reviewer: Mapped[str] = mapped_column(String(200))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    comment: Mapped[str | None] = mapped_column(Text)
