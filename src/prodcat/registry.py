"""Things chosen by name (heads, encoders, readers, fusers), all kept in one shape of registry.

A name is registered once: a second registration under the same name is an error, never a
silent replacement, so two modules cannot fight over a name and the last import win. An unknown
name is a :class:`~prodcat.errors.ConfigError` that lists the choices.

:meth:`Registry.create` passes a builder only the parameters its signature declares. Callers
such as the text and image models hand every head the same few *shared* parameters
(``class_weight``, ``random_state``...): a builder that does not declare one simply does not get
it, so no builder has to accept an option only to drop it. Any other parameter the builder does
not declare was asked for on purpose and is refused with a ConfigError naming what it takes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from prodcat.errors import ConfigError

T = TypeVar("T")

_MISSING: Any = object()


class Registry(Generic[T]):
    """name → value, in registration order.

    ``kind`` names the things in messages (``"image encoder"``); ``build`` gives the callable
    :meth:`create` calls for a registered value (default: the value itself, a class or a
    function); ``shared`` are the parameters :meth:`create` drops for builders that do not
    declare them; ``extra_choices`` are names accepted elsewhere (``"auto"``) that the
    unknown-name message lists too.
    """

    def __init__(self, kind: str, *, build: Callable[[T], Callable[..., Any]] | None = None,
                 shared: Iterable[str] = (), extra_choices: Iterable[str] = ()):
        self.kind = kind
        self._build = build
        self.shared = frozenset(shared)
        self.extra_choices = tuple(extra_choices)
        self._items: dict[str, T] = {}

    def register(self, name: str, value: T = _MISSING):
        """``register(name, value)`` → value, or ``@register(name)`` over a builder."""
        if value is _MISSING:
            def wrap(fn: T) -> T:
                return self.register(name, fn)

            return wrap
        if name in self._items:
            raise ConfigError(f"{self.kind} {name!r} is already registered")
        self._items[name] = value
        return value

    def get(self, name: str) -> T:
        """The value registered as ``name``; a ConfigError listing the choices if there is none."""
        try:
            return self._items[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name is unknown too
            choices = ", ".join([*self.extra_choices, *self._items])
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of {choices}") from None

    def builder(self, name: str) -> Callable[..., Any]:
        """What :meth:`create` calls for ``name``."""
        value = self.get(name)
        return value if self._build is None else self._build(value)  # type: ignore[return-value]

    def create(self, name: str, /, *args: Any, **params: Any) -> Any:
        """Build ``name`` from ``args`` and ``params`` (see the module docstring for which
        parameters are passed)."""
        build = self.builder(name)
        return build(*args, **self.accepted(name, build, params, n_args=len(args)))

    def accepted(self, name: str, build: Callable[..., Any], params: dict[str, Any], *,
                 n_args: int = 0) -> dict[str, Any]:
        """``params`` less the shared ones ``build`` does not declare; a ConfigError for any
        other parameter it does not declare. ``n_args`` positional arguments are given too."""
        parameters = list(inspect.signature(build).parameters.values())
        if any(p.kind is p.VAR_KEYWORD for p in parameters):
            return dict(params)
        declared = [p.name for p in parameters[n_args:]
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = [k for k in params if k not in declared and k not in self.shared]
        if unknown:
            takes = ", ".join(declared) or "no options"
            raise ConfigError(f"{self.kind} {name!r} does not take {', '.join(unknown)} "
                              f"(it takes {takes})")
        return {k: v for k, v in params.items() if k in declared}

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def values(self) -> list[T]:
        return list(self._items.values())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._items
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"
