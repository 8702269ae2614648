"""The bounded recent-items map that the sentence encoder and the OCR channel share."""

from __future__ import annotations

import threading

from prodcat.recent import RecentItems


def test_keeps_the_last_items_and_a_read_makes_an_item_recent():
    recent = RecentItems(3)
    recent.put_many([("a", 1), ("b", 2), ("c", 3)])
    assert recent.get_many(["a", "z"]) == {"a": 1}  # unknown keys are left out
    recent.put_many([("d", 4)])  # evicts b, the least recently used (a was just read)
    assert recent.get_many(["a", "b", "c", "d"]) == {"a": 1, "c": 3, "d": 4}
    assert len(recent) == 3
    recent.put_many([("c", 30)])
    assert recent.get_many(["c"]) == {"c": 30}
    recent.clear()
    assert len(recent) == 0 and recent.get_many(["a"]) == {}


def test_concurrent_writers_never_leave_it_over_its_size():
    recent = RecentItems(50)

    def write(offset):
        for i in range(500):
            recent.put_many([((offset, i), i)])
            recent.get_many([(offset, i - 1)])

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(recent) == 50
    kept = recent.get_many([(k, i) for k in range(4) for i in range(500)])
    assert len(kept) == 50 and all(key[1] == value for key, value in kept.items())
