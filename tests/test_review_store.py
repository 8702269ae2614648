"""The review store on SQLite and on a real PostgreSQL (skipped where it cannot start)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from prodcat.review import (
    AlreadyDecided,
    ClaimedByOther,
    ItemNotFound,
    NewItem,
    ReviewStore,
    margin_of,
)
from review_support import postgres_server, store_url  # noqa: F401 - fixtures

TOP = [{"code": "10", "name": "Livres", "parent": None, "probability": 0.5},
       {"code": "40", "name": "Jeux", "parent": None, "probability": 0.3}]


def _top(p1: float, p2: float) -> list[dict]:
    return [{**TOP[0], "probability": p1}, {**TOP[1], "probability": p2}]


@pytest.fixture
def store(store_url, tmp_path):  # noqa: F811
    s = ReviewStore.open(store_url, photo_dir=tmp_path / "photos")
    yield s
    s.close()


def test_schema_matches_models_and_migrating_twice_is_a_no_op(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from prodcat.review.models import Base
    from prodcat.review.store import migrate

    migrate(store.engine)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_items_claims_and_decisions_round_trip(store):
    ids = store.add([NewItem("low_confidence", title="Roman", top_k=TOP, photo=b"jpeg bytes", listing_id="a1",
                             model_id="m-1"),
                     NewItem("feedback", title="Puzzle", given_label="40", source="api")])
    assert len(ids) == 2
    item = store.get(ids[0])
    assert item["model_label"] == "10" and item["margin"] == pytest.approx(0.2)
    assert store.photo_path(item["photo_sha256"]).read_bytes() == b"jpeg bytes"
    first = store.claim_next("ann", order="oldest")
    second = store.claim_next("bob", order="oldest")
    assert {first["id"], second["id"]} == set(ids)
    assert store.claim_next("cyd") is None
    decision = store.decide(first["id"], "10", "ann", comment="ok", claim=first["claim"]["token"])
    assert decision["label"] == "10"
    with pytest.raises(AlreadyDecided):
        store.decide(first["id"], "40", "bob")
    with pytest.raises(ClaimedByOther):
        store.decide(second["id"], "40", "ann")
    with pytest.raises(ItemNotFound):
        store.decide(999, "40", "ann")
    stats = store.stats()
    assert stats["decided"] == 1 and stats["open"] == 1 and stats["claimed"] == 1
    assert stats["model_precision_on_reviewed"] == 1.0
    assert [d["decision"]["label"] for d in store.decisions()] == ["10"]


def test_same_photo_is_stored_once(store):
    store.add([NewItem("low_confidence", title=f"t{i}", photo=b"same") for i in range(3)])
    files = [p for p in store.photo_dir.rglob("*") if p.is_file()]
    assert len(files) == 1


def test_expired_lease_is_offered_again_and_release_gives_it_back(store):
    (item_id,) = store.add([NewItem("low_confidence", title="x", top_k=TOP)])
    held = store.claim_next("ann", lease_seconds=1.5)
    assert store.claim_next("bob") is None  # (a loaded machine can take long between two calls)
    time.sleep(1.6)
    again = store.claim_next("bob")
    assert again["id"] == item_id and again["claim"]["token"] != held["claim"]["token"]
    assert store.release(item_id, again["claim"]["token"])
    assert store.claim_next("cyd")["id"] == item_id


def test_uncertain_order_gives_the_smallest_margin_first(store):
    store.add([NewItem("low_confidence", title="sure-ish", top_k=_top(0.6, 0.1)),
               NewItem("low_confidence", title="torn", top_k=_top(0.41, 0.40)),
               NewItem("low_confidence", title="middle", top_k=_top(0.5, 0.3))])
    titles = [store.claim_next("ann", order="uncertain")["title"] for _ in range(3)]
    assert titles == ["torn", "middle", "sure-ish"]
    assert margin_of([{"probability": 0.7}]) == pytest.approx(0.4)


def test_duplicates_of_an_open_listing_are_not_queued_twice(store):
    a = store.add([NewItem("low_confidence", title="x", listing_id="L1")], skip_open_duplicates=True)
    b = store.add([NewItem("low_confidence", title="x", listing_id="L1")], skip_open_duplicates=True)
    assert a == b and store.stats()["open"] == 1


@pytest.mark.slow
def test_concurrent_reviewers_never_get_the_same_item(store):
    store.add([NewItem("low_confidence", title=f"t{i}", top_k=_top(0.5, i / 100)) for i in range(40)])
    got: list[int] = []
    lock = threading.Lock()

    def reviewer(name: str) -> None:
        while (item := store.claim_next(name)) is not None:
            with lock:
                got.append(item["id"])

    threads = [threading.Thread(target=reviewer, args=(f"r{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(set(got)) and len(got) == 40


@pytest.mark.slow
def test_racing_decisions_on_one_item_exactly_one_wins(store):
    (item_id,) = store.add([NewItem("low_confidence", title="x", top_k=TOP)])
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def decide(i: int) -> None:
        barrier.wait()
        try:
            store.decide(item_id, "10", f"r{i}")
            outcomes.append("ok")
        except AlreadyDecided:
            outcomes.append("409")

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["409"] * 5 + ["ok"]


_WRITER = textwrap.dedent("""
    import sys
    from prodcat.review import NewItem, ReviewStore
    store = ReviewStore.open(sys.argv[1], photo_dir=sys.argv[2])
    for i in range(100000):
        (item_id,) = store.add([NewItem("feedback", title=f"t{i}", given_label="10", photo=str(i).encode())])
        if i % 2:
            store.decide(item_id, "10", "writer")
            print("decided", item_id, flush=True)
        else:
            print("item", item_id, flush=True)
""")


@pytest.mark.slow
def test_sigkill_mid_writes_loses_nothing_acknowledged(store_url, tmp_path):  # noqa: F811
    """A writer prints each id only after its commit returned; it is SIGKILLed mid-stream.
    Every printed item and decision must be there when the store is opened again."""
    photos = tmp_path / "photos"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, store_url, str(photos)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    acked: list[tuple[str, int]] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while len(acked) < 60 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        kind, num = line.split()
        acked.append((kind, int(num)))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(acked) >= 60, "the writer did not get going"
    store = ReviewStore.open(store_url, photo_dir=photos)
    items = {i["id"]: i for i in store.items()}
    for kind, item_id in acked:
        assert item_id in items
        assert Path(store.photo_path(items[item_id]["photo_sha256"])).exists()
        if kind == "decided":
            assert items[item_id]["decision"]["label"] == "10"
    store.close()
