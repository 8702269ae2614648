"""Alembic environment of the review store; run by :func:`prodcat.review.store.migrate` with an
open connection in ``config.attributes["connection"]`` (never from an ini file)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from prodcat.review.models import Base

config = context.config
connection = config.attributes.get("connection")


def _run(conn) -> None:
    # render_as_batch: SQLite alters tables by copying them; Alembic does it for us.
    context.configure(connection=conn, target_metadata=Base.metadata,
                      render_as_batch=conn.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:  # `alembic revision --autogenerate` by a developer: the URL from -x url=...
    url = context.get_x_argument(as_dictionary=True)["url"]
    with create_engine(url).connect() as conn:
        _run(conn)
