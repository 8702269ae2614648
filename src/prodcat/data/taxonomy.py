"""Category names and parents, keyed by the label code used in the data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    parent: str | None = None


@dataclass
class Taxonomy:
    """Maps category codes to display names and parent categories.

    Codes are strings everywhere in prodcat (``"2905"``, ``"Watches"``) so that numeric and
    textual labels travel through CSV, JSON and the bundle unchanged.
    """

    categories: dict[str, Category] = field(default_factory=dict)

    @classmethod
    def from_codes(cls, codes: Iterable[object]) -> Taxonomy:
        return cls({str(c): Category(str(c), str(c)) for c in codes})

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, object]]) -> Taxonomy:
        cats = {}
        for r in records:
            code = str(r["code"])
            parent = r.get("parent")
            cats[code] = Category(
                code,
                str(r.get("name") or code),
                None if parent is None or parent != parent or parent == "" else str(parent),
            )
        return cls(cats)

    def to_records(self) -> list[dict[str, str | None]]:
        return [{"code": c.code, "name": c.name, "parent": c.parent} for c in self.categories.values()]

    def extended(self, codes: Iterable[object]) -> Taxonomy:
        """A copy that also knows every code in ``codes`` (unnamed ones are named by their code)."""
        cats = dict(self.categories)
        for c in codes:
            cats.setdefault(str(c), Category(str(c), str(c)))
        return Taxonomy(cats)

    def name(self, code: object) -> str:
        cat = self.categories.get(str(code))
        return cat.name if cat else str(code)

    def parent(self, code: object) -> str | None:
        cat = self.categories.get(str(code))
        return cat.parent if cat else None

    def __contains__(self, code: object) -> bool:
        return str(code) in self.categories

    def __len__(self) -> int:
        return len(self.categories)
