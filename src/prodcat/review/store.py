"""The review store: review items, claims with leases, and decisions, in SQLite or PostgreSQL.

Every write is one transaction, committed before the call returns: what a caller was told is
stored survives the process being killed. SQLite runs in WAL mode with ``synchronous=FULL`` and
every transaction starts with ``BEGIN IMMEDIATE`` (writers queue on the lock instead of failing
half-way); PostgreSQL claims with ``SELECT … FOR UPDATE SKIP LOCKED``, so reviewers never wait on
one another and never get the same item.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, case, create_engine, event, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from prodcat.errors import ConfigError, ProdcatError
from prodcat.review.models import ORDERS, REASONS, Claim, Decision, ReviewItem

#: A claim lasts this long unless the reviewer decides first; then the item is offered again.
DEFAULT_LEASE_SECONDS = 600
DEFAULT_URL = "sqlite:///reviews.db"


class ReviewError(ProdcatError):
    """A review request that cannot be done; ``status`` is the HTTP status the API answers."""

    status = 400
    code = "review_error"


class ItemNotFound(ReviewError):
    status, code = 404, "item_not_found"


class AlreadyDecided(ReviewError):
    status, code = 409, "already_decided"


class ClaimedByOther(ReviewError):
    status, code = 409, "claimed_by_another_reviewer"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(t: datetime | None) -> datetime | None:
    # SQLite gives back naive datetimes; everything is stored in UTC.
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t


@dataclass
class NewItem:
    """One listing to queue."""

    reason: str
    title: str = ""
    description: str = ""
    listing_id: str | None = None
    photo: bytes | None = None
    model_id: str | None = None
    top_k: list[dict] | None = None
    given_label: str | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ConfigError(f"unknown review reason {self.reason!r}; one of {', '.join(REASONS)}")


def margin_of(top_k: Sequence[dict] | None) -> float | None:
    """p(top-1) − p(top-2); with the top-1 alone, 2·p − 1, the least margin it allows."""
    if not top_k:
        return None
    p = [float(c["probability"]) for c in top_k[:2]]
    return p[0] - p[1] if len(p) > 1 else 2 * p[0] - 1


def item_dict(item: ReviewItem, decision: Decision | None = None) -> dict[str, Any]:
    out = {"id": item.id, "listing_id": item.listing_id, "title": item.title,
           "description": item.description, "photo_sha256": item.photo_sha256,
           "model_id": item.model_id, "top_k": item.top_k, "model_label": item.model_label,
           "margin": item.margin, "reason": item.reason, "given_label": item.given_label,
           "source": item.source, "status": item.status,
           "created_at": _aware(item.created_at).isoformat()}
    if decision is not None:
        out["decision"] = decision_dict(decision)
    return out


def decision_dict(d: Decision) -> dict[str, Any]:
    return {"item_id": d.item_id, "label": d.label, "reviewer": d.reviewer,
            "decided_at": _aware(d.decided_at).isoformat(), "comment": d.comment}


def default_photo_dir(url: str) -> Path:
    """Beside a SQLite file (``reviews.db`` → ``reviews.photos/``); for a server database,
    ``review-photos`` in the working folder (give ``photo_dir`` to choose)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        db = Path(u.database)
        return db.with_name(db.stem + ".photos")
    return Path("review-photos")


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        # Transactions are ours to begin (below); pysqlite's own would begin them too late.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_store_engine(url: str) -> Engine:
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, connect_args={"timeout": 30})
        _sqlite_pragmas(engine)
        return engine
    if backend == "postgresql":
        if u.drivername == "postgresql":  # plain postgresql:// means psycopg 3 here, not psycopg2
            u = u.set(drivername="postgresql+psycopg")
        return create_engine(u, pool_pre_ping=True)
    raise ConfigError(f"review store: unsupported database {backend!r} (sqlite:/// or postgresql://)")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent; safe with several processes)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(files("prodcat.review") / "alembic"))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two servers starting at once: the second waits, then finds the schema up to date.
            conn.execute(text("SELECT pg_advisory_xact_lock(7313001)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class ReviewStore:
    """Open with :meth:`open`; thread-safe (one session per call)."""

    def __init__(self, engine: Engine, photo_dir: str | os.PathLike, url: str = ""):
        self.engine = engine
        self.url = url
        self.photo_dir = Path(photo_dir)
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str = DEFAULT_URL, *, photo_dir: str | os.PathLike | None = None) -> ReviewStore:
        try:
            engine = create_store_engine(url)
            migrate(engine)
        except ImportError as exc:
            raise ConfigError(f"the review store needs the 'review' extra: pip install 'prodcat[review]' "
                              f"({exc})") from None
        return cls(engine, photo_dir if photo_dir is not None else default_photo_dir(url), url)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    # photos --------------------------------------------------------------------------------

    def photo_path(self, sha256: str) -> Path:
        return self.photo_dir / sha256[:2] / sha256

    def put_photo(self, data: bytes) -> str:
        """Store the bytes once under their sha256 (written and synced before the row that
        names them is committed)."""
        sha = hashlib.sha256(data).hexdigest()
        path = self.photo_path(sha)
        if path.exists():
            return sha
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return sha

    # writing -------------------------------------------------------------------------------

    def add(self, items: Iterable[NewItem], *, skip_open_duplicates: bool = False) -> list[int]:
        """Queue ``items`` in one transaction; their ids. With ``skip_open_duplicates``, a listing
        id already waiting for the same reason is not queued twice (its id is returned)."""
        items = list(items)
        shas = [self.put_photo(it.photo) if it.photo else None for it in items]
        now = utcnow()
        ids = []
        with self._tx() as s:
            for it, sha in zip(items, shas, strict=True):
                if skip_open_duplicates and it.listing_id is not None:
                    found = s.scalar(select(ReviewItem.id).where(
                        ReviewItem.listing_id == it.listing_id, ReviewItem.reason == it.reason,
                        ReviewItem.status == "open").limit(1))
                    if found is not None:
                        ids.append(found)
                        continue
                row = ReviewItem(listing_id=it.listing_id, title=it.title or "",
                                 description=it.description or "", photo_sha256=sha,
                                 model_id=it.model_id, top_k=it.top_k,
                                 model_label=str(it.top_k[0]["code"]) if it.top_k else None,
                                 margin=margin_of(it.top_k), reason=it.reason,
                                 given_label=it.given_label, source=it.source, status="open",
                                 created_at=now)
                s.add(row)
                s.flush()
                ids.append(row.id)
        return ids

    def claim_next(self, reviewer: str, *, order: str = "uncertain",
                   lease_seconds: float = DEFAULT_LEASE_SECONDS,
                   reasons: Sequence[str] | None = None,
                   exclude: Iterable[int] | None = None) -> dict[str, Any] | None:
        """Give ``reviewer`` the next open item nobody holds, leased for ``lease_seconds``: the
        item with its ``claim`` (token, expiry), or None when the queue is empty. ``exclude``:
        item ids not to give (the ones this reviewer skipped)."""
        if order not in ORDERS:
            raise ConfigError(f"unknown queue order {order!r}; one of {', '.join(ORDERS)}")
        now = utcnow()
        expires = now + timedelta(seconds=lease_seconds)
        free = (ReviewItem.status == "open") & (
            ReviewItem.lease_expires_at.is_(None) | (ReviewItem.lease_expires_at < now))
        if reasons:
            free &= ReviewItem.reason.in_(list(reasons))
        skipped = sorted({int(i) for i in exclude or ()})
        if skipped:
            free &= ReviewItem.id.not_in(skipped)
        ranking = ((func.coalesce(ReviewItem.margin, 1.0), ReviewItem.id) if order == "uncertain"
                   else (ReviewItem.created_at, ReviewItem.id))
        pick = select(ReviewItem.id).where(free).order_by(*ranking).limit(1)
        token = secrets.token_hex(16)
        with self._tx() as s:
            if self.dialect == "postgresql":
                # The lease columns are on the locked row itself, so a transaction that waited
                # on it re-checks them; SKIP LOCKED means it never waits at all.
                item_id = s.scalar(pick.with_for_update(skip_locked=True))
            else:
                # SQLite: BEGIN IMMEDIATE already holds the one write lock; the pick and the
                # update below cannot interleave with another writer's.
                item_id = s.scalar(pick)
            if item_id is None:
                return None
            claim = Claim(item_id=item_id, reviewer=reviewer, token=token, claimed_at=now,
                          expires_at=expires)
            s.add(claim)
            s.flush()
            done = s.execute(update(ReviewItem).where(ReviewItem.id == item_id, free)
                             .values(claim_id=claim.id, lease_expires_at=expires))
            if done.rowcount != 1:  # cannot happen under the locks above; never hand out twice
                raise ReviewError("the item was claimed concurrently; ask again")
            item = s.get(ReviewItem, item_id)
            out = item_dict(item)
        out["claim"] = {"token": token, "reviewer": reviewer, "expires_at": expires.isoformat()}
        return out

    def release(self, item_id: int, token: str) -> bool:
        """Give a claimed item back to the queue (a reviewer skips it)."""
        with self._tx() as s:
            claim = s.scalar(select(Claim).where(Claim.token == token, Claim.item_id == item_id))
            if claim is None:
                return False
            done = s.execute(update(ReviewItem).where(ReviewItem.id == item_id,
                                                      ReviewItem.claim_id == claim.id,
                                                      ReviewItem.status == "open")
                             .values(claim_id=None, lease_expires_at=None))
            claim.expires_at = utcnow()
            return done.rowcount == 1

    def decide(self, item_id: int, label: str, reviewer: str, *, comment: str | None = None,
               claim: str | None = None) -> dict[str, Any]:
        """Record the decision on ``item_id``. Refused when it was decided already, or when
        someone else holds it under a lease still running (unless ``claim`` is their token)."""
        now = utcnow()
        with self._tx() as s:
            item = s.get(ReviewItem, item_id, with_for_update=self.dialect == "postgresql")
            if item is None:
                raise ItemNotFound(f"no review item {item_id}")
            if item.status != "open":
                raise AlreadyDecided(f"review item {item_id} was already decided")
            lease = _aware(item.lease_expires_at)
            if item.claim_id is not None and lease is not None and lease > now:
                holder = s.get(Claim, item.claim_id)
                if holder is not None and holder.token != claim and holder.reviewer != reviewer:
                    raise ClaimedByOther(f"review item {item_id} is claimed by {holder.reviewer} "
                                         f"until {lease.isoformat()}")
            # Guarded on the status as well: of two racing decisions exactly one updates a row.
            done = s.execute(update(ReviewItem).where(ReviewItem.id == item_id, ReviewItem.status == "open")
                             .values(status="decided", lease_expires_at=None))
            if done.rowcount != 1:
                raise AlreadyDecided(f"review item {item_id} was already decided")
            decision = Decision(item_id=item_id, label=str(label), reviewer=reviewer, decided_at=now,
                                comment=comment)
            s.add(decision)
            s.flush()
            return decision_dict(decision)

    # reading -------------------------------------------------------------------------------

    def get(self, item_id: int) -> dict[str, Any]:
        with self._sessions() as s:
            item = s.get(ReviewItem, item_id)
            if item is None:
                raise ItemNotFound(f"no review item {item_id}")
            decision = s.scalar(select(Decision).where(Decision.item_id == item_id))
            return item_dict(item, decision)

    def items(self, *, status: str | None = None, reason: str | None = None) -> list[dict[str, Any]]:
        with self._sessions() as s:
            q = select(ReviewItem, Decision).outerjoin(Decision, Decision.item_id == ReviewItem.id)
            if status:
                q = q.where(ReviewItem.status == status)
            if reason:
                q = q.where(ReviewItem.reason == reason)
            return [item_dict(i, d) for i, d in s.execute(q.order_by(ReviewItem.id))]

    def decisions(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """Every decision with its item (the corrections), oldest first."""
        with self._sessions() as s:
            q = select(ReviewItem, Decision).join(Decision, Decision.item_id == ReviewItem.id)
            if since is not None:
                q = q.where(Decision.decided_at >= since)
            return [item_dict(i, d) for i, d in s.execute(q.order_by(Decision.decided_at, Decision.id))]

    def stats(self) -> dict[str, Any]:
        now = utcnow()
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        with self._sessions() as s:
            by = {(st, r): n for st, r, n in s.execute(
                select(ReviewItem.status, ReviewItem.reason, func.count()).group_by(
                    ReviewItem.status, ReviewItem.reason))}
            claimed = s.scalar(select(func.count()).where(
                ReviewItem.status == "open", ReviewItem.lease_expires_at >= now)) or 0
            today = s.scalar(select(func.count()).select_from(Decision).where(Decision.decided_at >= day)) or 0
            judged, agreed = s.execute(
                select(func.count(), func.coalesce(func.sum(
                    case((Decision.label == ReviewItem.model_label, 1), else_=0)), 0))
                .select_from(Decision).join(ReviewItem, ReviewItem.id == Decision.item_id)
                .where(ReviewItem.model_label.is_not(None))).one()
        open_by = {r: n for (st, r), n in by.items() if st == "open"}
        return {"open": sum(open_by.values()), "claimed": int(claimed),
                "decided": sum(n for (st, _), n in by.items() if st == "decided"),
                "decided_today": int(today), "open_by_reason": open_by,
                "model_precision_on_reviewed": (int(agreed) / judged) if judged else None,
                "reviewed_with_model_answer": int(judged)}


def open_store(url: str | None = None, *, photo_dir: str | os.PathLike | None = None) -> ReviewStore:
    return ReviewStore.open(url or DEFAULT_URL, photo_dir=photo_dir)
