"""A closed registry keyed by the YAML name, shared by the compiler and the runtime."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Generic, TypeVar, Union

from pydantic import Field

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry. Registering a name twice is a bug, so it raises."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def discriminated_union(self) -> object:
        """The pydantic type accepting any registered model, chosen by its `method` field."""
        models = tuple(self._entries.values())
        if len(models) == 1:
            return models[0]
        return Annotated[Union[models], Field(discriminator="method")]  # noqa: UP007

