"""An evaluation protocol that cannot flatter us.

Two rules, enforced in code rather than left to discipline:

- A score is only reported on listings that no choice saw. :class:`ChoiceLedger` records the
  rows every choice (a feature, a weight, a threshold, a member list) was made on, and refuses
  to score on any of them. Cross-validation of a :class:`~prodcat.model.Classifier` is nested by
  construction: every ``auto`` choice happens inside ``fit`` on the outer training fold.
- One frozen split is looked at once, after the choices are made: :func:`frozen_split` picks
  its rows by a salted hash of the listing id (stable across runs, machines and row orders), and
  :class:`FinalCheck` records the code it was looked at with, refusing a second look with other
  code unless the reason is written down.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from prodcat.errors import ProdcatError

#: The salt of the frozen split; changing it would pick other listings, so it never changes.
FROZEN_SALT = "prodcat-final-check-v1"


class ProtocolError(ProdcatError):
    """A score was asked for on listings a choice saw, or the frozen split was reused."""


def frozen_split(ids: Iterable[object], fraction: float = 0.2, salt: str = FROZEN_SALT) -> np.ndarray:
    """Boolean mask of the listings in the frozen final-check split (about ``fraction``)."""
    cut = int(fraction * 2**32)
    return np.array([int.from_bytes(hashlib.sha256(f"{salt}:{i}".encode()).digest()[:4], "big") < cut
                     for i in ids], dtype=bool)


class ChoiceLedger:
    """The listings choices were made on; scores are refused on them."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.choices: list[str] = []

    def chose(self, what: str, ids: Iterable[object]) -> None:
        """Record that choice ``what`` looked at listings ``ids``."""
        self.seen.update(str(i) for i in ids)
        self.choices.append(what)

    def check_unseen(self, ids: Iterable[object]) -> None:
        """Raise :class:`ProtocolError` if any of ``ids`` was seen by a choice."""
        overlap = self.seen.intersection(str(i) for i in ids)
        if overlap:
            raise ProtocolError(
                f"refusing to score {len(overlap)} listing(s) that choices saw "
                f"({', '.join(self.choices)}): report outer-fold or frozen-split scores only")


class FinalCheck:
    """A record (JSON) of each look at the frozen split, with the code fingerprint it used."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def looks(self) -> list[dict]:
        if not self.path.exists():
            return []
        return json.loads(self.path.read_text(encoding="utf-8"))

    def open(self, fingerprint: str, *, reason: str | None = None, model: dict | None = None) -> None:
        """Allow a look with code ``fingerprint``: the first look, a repeat with the same code and
        ``model`` (a re-run gives the same numbers), or a later look whose ``reason`` is written
        down. ``model`` describes a model other than the default (e.g. its text members)."""
        looks = self.looks()
        if looks and ((looks[-1]["fingerprint"], looks[-1].get("model")) != (fingerprint, model)) and not reason:
            raise ProtocolError(
                f"the frozen split was already looked at on {looks[-1]['at']} with other code or "
                "another model; choices made since then may have been tuned to it. Pass a reason "
                "to look again (it is recorded beside the result).")
        looks.append({"at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                      "fingerprint": fingerprint, "reason": reason, **({"model": model} if model else {})})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(looks, indent=2), encoding="utf-8")
