"""Chunk grids and chunk keys (pure): from an array document to the keys its data lives at.

Shared by the metadata checks and the integrity inventory.  Covers both formats: format 2
keys ``"0.1"`` / ``"0/1"`` (``dimension_separator``), format 3 ``default`` keys ``"c/0/1"``
(or ``"c.0.1"``) and ``v2``-style keys.  For a sharded array the *storage* grid is the shard
grid: one key per shard.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PARTIAL_SUFFIX",
    "ArrayGrid",
    "chunk_grid",
    "grid_from_document",
    "is_partial_key",
]

#: zarr's LocalStore writes ``<key without suffix>.<uuid hex>.partial`` and then renames it.
PARTIAL_SUFFIX = re.compile(r"\.[0-9a-f]{32}\.partial$")


def is_partial_key(key: str) -> bool:
    """``True`` for a temporary file left by an interrupted zarr ``LocalStore`` write."""
    return PARTIAL_SUFFIX.search(key) is not None


@dataclass(frozen=True, slots=True)
class ArrayGrid:
    """How the chunk keys of one array look: grid size, prefix and separator.

    ``shape`` is the array shape and ``chunks`` the shape of one *stored object* (the shard
    shape when sharded, else the chunk shape); ``inner`` is the inner chunk shape of a
    sharded array (``None`` otherwise).
    """

    path: str
    grid: tuple[int, ...]
    prefix: str  # "c" for the v3 default encoding, "" otherwise
    separator: str
    shape: tuple[int, ...] = ()
    chunks: tuple[int, ...] = ()
    inner: tuple[int, ...] | None = None

    @property
    def nchunks(self) -> int:
        """Number of stored objects the full grid has."""
        return math.prod(self.grid)

    def parse(self, rel: str) -> tuple[int, ...] | None:
        """Chunk coordinates of a key relative to the array, or ``None`` if malformed."""
        if self.prefix:
            if rel == self.prefix:
                return () if not self.grid else None
            if not rel.startswith(self.prefix + self.separator):
                return None
            rel = rel[len(self.prefix) + 1 :]
        elif not self.grid:
            return () if rel == "0" else None
        parts = rel.split(self.separator)
        if len(parts) != len(self.grid) or not all(p.isascii() and p.isdigit() for p in parts):
            return None
        return tuple(int(p) for p in parts)

    def in_grid(self, coords: tuple[int, ...]) -> bool:
        """Whether *coords* lie inside the grid."""
        return all(0 <= c < g for c, g in zip(coords, self.grid, strict=True))

    def key(self, coords: tuple[int, ...]) -> str:
        """The key (relative to the array) of the object at *coords*."""
        if not coords:
            return self.prefix or "0"
        body = self.separator.join(str(c) for c in coords)
        return f"{self.prefix}{self.separator}{body}" if self.prefix else body

    def coords(self, index: int) -> tuple[int, ...]:
        """Coordinates of the *index*-th object in C order."""
        out = []
        for g in reversed(self.grid):
            index, rem = divmod(index, g)
            out.append(rem)
        return tuple(reversed(out))

    def region(self, coords: tuple[int, ...]) -> tuple[slice, ...]:
        """The part of the array the object at *coords* holds (clipped at the edges)."""
        return tuple(
            slice(c * n, min((c + 1) * n, s))
            for c, n, s in zip(coords, self.chunks, self.shape, strict=True)
        )

    def keys(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, str]]:
        """``(index, key)`` for the objects ``start <= index < stop`` in C order."""
        stop = self.nchunks if stop is None else min(stop, self.nchunks)
        for index in range(start, stop):
            yield index, self.key(self.coords(index))


def chunk_grid(shape: Any, chunks: Any) -> tuple[int, ...] | None:
    """Number of chunks per dimension, or ``None`` when shape/chunks are not valid."""
    ok = isinstance(shape, list | tuple) and isinstance(chunks, list | tuple)
    if not ok or len(shape) != len(chunks):
        return None
    if not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in chunks):
        return None
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        return None
    return tuple(math.ceil(s / c) for s, c in zip(shape, chunks, strict=True))


def _inner_chunks(codecs: Any) -> tuple[int, ...] | None:
    if not isinstance(codecs, list) or not codecs:
        return None
    first = codecs[0]
    if isinstance(first, Mapping) and first.get("name") == "sharding_indexed":
        inner = (first.get("configuration") or {}).get("chunk_shape")
        if isinstance(inner, list) and all(isinstance(c, int) for c in inner):
            return tuple(inner)
    return None


def grid_from_document(path: str, name: str, doc: Any) -> ArrayGrid | None:
    """The grid of the array whose document *doc* is stored as *name* (``.zarray``/``zarr.json``).

    Returns ``None`` for groups and for documents too broken to know the grid.
    """
    if not isinstance(doc, Mapping):
        return None
    if name == ".zarray":
        shape, chunks = doc.get("shape"), doc.get("chunks")
        grid = chunk_grid(shape, chunks)
        sep = doc.get("dimension_separator") or "."
        if grid is None or shape is None or chunks is None:
            return None
        return ArrayGrid(path, grid, "", sep, tuple(shape), tuple(chunks))
    if name != "zarr.json" or doc.get("node_type") != "array":
        return None
    config = (doc.get("chunk_grid") or {}).get("configuration") or {}
    shape, chunks = doc.get("shape"), config.get("chunk_shape")
    grid = chunk_grid(shape, chunks)
    if grid is None or shape is None or chunks is None:
        return None
    encoding = doc.get("chunk_key_encoding") or {}
    if isinstance(encoding, str):
        encoding = {"name": encoding}
    is_default = encoding.get("name", "default") == "default"
    sep = (encoding.get("configuration") or {}).get("separator") or ("/" if is_default else ".")
    inner = _inner_chunks(doc.get("codecs"))
    return ArrayGrid(path, grid, "c" if is_default else "", sep, tuple(shape), tuple(chunks), inner)
