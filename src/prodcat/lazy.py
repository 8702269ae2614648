"""Objects that load a heavy model on first use and pickle without it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar


class LazyLoaded:
    """Mixin: the attributes named in ``_lazy_attributes`` hold something loaded on first use
    (an onnxruntime session, a network's weights) under ``self._lock``.

    A pickle carries neither those attributes (they are rebuilt from their files on first use,
    so a bundle stays small and never embeds a native session) nor the lock (a lock cannot be
    pickled); unpickling gives a fresh lock.
    """

    _lazy_attributes: ClassVar[tuple[str, ...]] = ()
    _lock: threading.Lock

    def _load_once(self, attribute: str, load: Callable[[], Any]) -> Any:
        """``self.<attribute>``, set by ``load()`` the first time; threads wait for one load."""
        value = getattr(self, attribute)
        if value is None:
            with self._lock:
                value = getattr(self, attribute)
                if value is None:
                    value = load()
                    setattr(self, attribute, value)
        return value

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for attribute in self._lazy_attributes:
            state[attribute] = None
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
