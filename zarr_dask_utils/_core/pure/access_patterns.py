"""Pure access patterns: a pattern name (or the user's selections) → weighted box selections.

A selection is a tuple of ``(start, stop)`` per axis.  Named patterns use the axis names to
find the "time" axis (a dimension called time/t/date/…, else axis 0):

- ``sequential``: the whole array (a full scan);
- ``time-series``: the whole time axis at a few points of the other axes;
- ``spatial``: one index of the time axis, everything else whole;
- ``random``: small windows at seeded random positions.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zarr_dask_utils._core.errors import InvalidOptionError

__all__ = ["PATTERNS", "AccessPattern", "resolve_patterns", "selection_from_user", "time_axis"]

PATTERNS = ("sequential", "time-series", "spatial", "random")
_TIME_NAMES = ("time", "t", "date", "datetime", "valid_time", "step", "forecast_time")

Selection = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class AccessPattern:
    """A named set of selections, each read as one request batch; ``weight`` ranks patterns."""

    name: str
    selections: tuple[Selection, ...]
    weight: float = 1.0


def time_axis(dims: Sequence[str | None] | None) -> int:
    """Index of the time-like axis (by name), else 0."""
    for i, name in enumerate(dims or ()):
        if name is not None and str(name).lower() in _TIME_NAMES:
            return i
    return 0


def _points(n: int, k: int) -> list[int]:
    """*k* evenly spread indices in ``range(n)`` (deduplicated)."""
    if n <= 0:
        return [0]
    return sorted({min(n - 1, (2 * i + 1) * n // (2 * k)) for i in range(k)})


def _named(
    name: str,
    shape: Sequence[int],
    dims: Sequence[str | None] | None,
    *,
    samples: int,
    window: int,
    seed: int,
) -> tuple[Selection, ...]:
    full = tuple((0, n) for n in shape)
    if not shape:
        return (full,)
    t = time_axis(dims)
    if name == "sequential":
        return (full,)
    if name == "time-series":
        others = [i for i in range(len(shape)) if i != t]
        sels = []
        for p in range(samples):
            sel = list(full)
            for i in others:
                idx = _points(shape[i], samples)[p % len(_points(shape[i], samples))]
                sel[i] = (idx, idx + 1)
            sels.append(tuple(sel))
        return tuple(dict.fromkeys(sels))
    if name == "spatial":
        return tuple(
            tuple((p, p + 1) if i == t else full[i] for i in range(len(shape)))
            for p in _points(shape[t], samples)
        )
    if name == "random":
        rng = random.Random(seed)
        sels = []
        for _ in range(samples):
            sel = []
            for n in shape:
                w = max(1, min(window, n))
                start = rng.randrange(0, max(n - w, 0) + 1)
                sel.append((start, start + w))
            sels.append(tuple(sel))
        return tuple(sels)
    raise InvalidOptionError(
        f"Unknown access pattern {name!r}. Use one of {', '.join(PATTERNS)}, or a list of "
        "selections (tuples of slices/ints, or mappings of dimension name to slice/int)."
    )


def selection_from_user(
    item: Any, shape: Sequence[int], dims: Sequence[str | None] | None, *, strict: bool = True
) -> Selection:
    """Turn ``(slice, int, ...)`` or ``{"time": slice(0, 10)}`` into a box selection.

    With ``strict=False`` (analysing a whole group) dimensions or trailing entries an array
    does not have are ignored.
    """
    if isinstance(item, Mapping):
        names = list(dims or ())
        unknown = set(item) - set(names)
        if unknown and strict:
            raise InvalidOptionError(
                f"Selection {dict(item)!r} names dimension(s) {sorted(unknown)} that the array "
                f"does not have (dimensions: {names}). Use its dimension names or a tuple."
            )
        item = tuple(item.get(name, slice(None)) for name in names)
    if not isinstance(item, tuple | list):
        item = (item,)
    if len(item) > len(shape) and not strict:
        item = tuple(item)[: len(shape)]
    if len(item) > len(shape):
        raise InvalidOptionError(
            f"Selection {item!r} has more entries than the array has axes ({len(shape)})."
        )
    item = tuple(item) + (slice(None),) * (len(shape) - len(item))
    out = []
    for entry, n in zip(item, shape, strict=True):
        if isinstance(entry, slice):
            start, stop, step = entry.indices(n)
            if step != 1:
                raise InvalidOptionError(f"Selection step {step} is not supported; use step 1.")
            out.append((start, max(start, stop)))
        elif isinstance(entry, int):
            idx = entry + n if entry < 0 else entry
            if not 0 <= idx < n:
                raise InvalidOptionError(f"Index {entry} is outside an axis of length {n}.")
            out.append((idx, idx + 1))
        else:
            raise InvalidOptionError(f"Selection entry {entry!r} is neither a slice nor an int.")
    return tuple(out)


def resolve_patterns(
    spec: Any,
    shape: Sequence[int],
    dims: Sequence[str | None] | None = None,
    *,
    samples: int = 4,
    window: int = 16,
    seed: int = 0,
    strict: bool = True,
) -> tuple[AccessPattern, ...]:
    """Resolve what the user asked for into weighted patterns.

    *spec* is a pattern name, a list of names, a mapping name → weight, or a list of
    selections where each item may be ``(selection, weight)``.
    """
    if isinstance(spec, str):
        spec = {spec: 1.0}
    if isinstance(spec, Mapping):
        return tuple(
            AccessPattern(
                str(name),
                _named(str(name), shape, dims, samples=samples, window=window, seed=seed),
                float(weight),
            )
            for name, weight in spec.items()
        )
    items = list(spec)
    if items and all(isinstance(i, str) for i in items):
        return resolve_patterns(
            dict.fromkeys(items, 1.0), shape, dims, samples=samples, window=window, seed=seed
        )
    patterns = []
    for k, item in enumerate(items):
        weight = 1.0
        if (
            isinstance(item, tuple)
            and len(item) == 2
            and isinstance(item[1], int | float)
            and isinstance(item[0], tuple | list | Mapping)
        ):
            item, weight = item
        sel = selection_from_user(item, shape, dims, strict=strict)
        patterns.append(AccessPattern(f"selection-{k}", (sel,), float(weight)))
    if not patterns:
        raise InvalidOptionError("access_pattern is empty: give a pattern name or selections.")
    return tuple(patterns)
