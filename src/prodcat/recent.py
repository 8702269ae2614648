"""A small bounded, thread-safe map of the most recently used items.

The serving paths ask twice for what they computed a moment ago — the ensemble's members for the
same sentence vectors, the seller page's classify-then-explain for the same photo's words — and
neither should pay a disk round trip (or, for uploads never written to disk, a second
computation) for it. Both keep their last few thousand answers here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

V = TypeVar("V")


class RecentItems(Generic[V]):
    """The last ``size`` items put, by key; reading an item makes it recent again."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys: Iterable[Hashable]) -> dict[Hashable, V]:
        with self._lock:
            found = {k: self._items[k] for k in keys if k in self._items}
            for k in found:
                self._items.move_to_end(k)
        return found

    def put_many(self, items: Iterable[tuple[Hashable, V]]) -> None:
        with self._lock:
            for key, value in items:
                self._items[key] = value
                self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
