"""JSON documents written while they are encoded, for `--output json` of large runs.

json.dumps(indent=2) of a report holds the document, a redacted copy, every encoded chunk and the
joined text at once: about 90 MB for a first sync of 10,000 certificates (40,000 results). Written
here piece by piece, with its big arrays `Lazy` (each item made as it is written), a document costs
one item at a time. The text is the same as json.dumps(value, indent=2, default=str).
"""

from __future__ import annotations

import json
from typing import IO, Any
from collections.abc import Callable, Iterator, Sequence

FLUSH_EVERY = 4096  # pieces buffered per write to the stream


class Lazy:
    """A JSON array whose items are made from `source` by `make` each time it is read (written,
    looped over, counted): nothing is held but the source. Not a list: json.dumps would not take it,
    only `write` and plain loops do."""

    def __init__(self, source: Sequence[Any], make: Callable[[Any], Any]) -> None:
        self.source, self.make = source, make

    def __iter__(self) -> Iterator[Any]:
        return (self.make(item) for item in self.source)

    def __len__(self) -> int:
        return len(self.source)

    def map(self, then: Callable[[Any], Any]) -> Lazy:
        make = self.make
        return Lazy(self.source, lambda item: then(make(item)))


def write(value: Any, stream: IO[str], indent: int = 2) -> None:
    """Write `value` to `stream` as json.dumps(value, indent=indent, default=str) would."""
    pieces: list[str] = []
    for piece in _encode(value, indent, 0):
        pieces.append(piece)
        if len(pieces) >= FLUSH_EVERY:
            stream.write("".join(pieces))
            pieces.clear()
    pieces.append("\n")
    stream.write("".join(pieces))


def _encode(value: Any, indent: int, level: int) -> Iterator[str]:
    if isinstance(value, dict):
        yield from _container("{", "}", [(_key(k), v) for k, v in value.items()], indent, level)
    elif isinstance(value, (list, tuple, Lazy)):
        yield from _container("[", "]", ((None, v) for v in value), indent, level)
    else:
        yield json.dumps(value, default=str)


def _container(start: str, end: str, items, indent: int, level: int) -> Iterator[str]:
    inner = "\n" + " " * (indent * (level + 1))
    empty = True
    for key, item in items:
        yield (start if empty else ",") + inner + (f"{key}: " if key is not None else "")
        yield from _encode(item, indent, level + 1)
        empty = False
    yield start + end if empty else "\n" + " " * (indent * level) + end


def _key(key: Any) -> str:
    """An object key as json.dumps writes it (numbers, booleans and null become strings)."""
    return json.dumps(key if isinstance(key, str) else json.dumps(key))
