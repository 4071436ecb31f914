"""Small query helpers shared by the repositories."""

from __future__ import annotations

from typing import TypeVar
from collections.abc import Hashable, Iterable, Iterator

V = TypeVar("V", bound=Hashable)

CHUNK = 500  # values per IN (...): well under every backend's parameter limit


def chunks(values: Iterable[V], size: int = CHUNK) -> Iterator[list[V]]:
    """Distinct values, in order, in lists of at most `size`."""
    distinct = list(dict.fromkeys(values))
    for i in range(0, len(distinct), size):
        yield distinct[i : i + size]
