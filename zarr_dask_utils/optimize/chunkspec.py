"""Pure checks of a chunk (or shard) request against the arrays of a rechunk job.

A request is a tuple (one size per axis), a mapping of dimension names to sizes, or a
mapping of array paths to either (see :func:`~zarr_dask_utils.optimize.array_jobs.chunks_for`).
For a group, a tuple applies to the arrays with as many axes and a dimension mapping to the
arrays with those dimensions; the others keep their chunks.  A request that applies to *no*
array, names an array or a dimension that does not exist, or gives a named array the wrong
number of sizes, is a mistake: it is refused before anything is written instead of leaving
every array as it was and reporting success.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zarr_dask_utils._core.errors import InvalidOptionError

__all__ = ["ArrayAxes", "check_chunk_spec"]


@dataclass(frozen=True, slots=True)
class ArrayAxes:
    """What a chunk request is matched against: an array's path, rank and axis names."""

    path: str
    ndim: int
    dimension_names: tuple[str | None, ...] | None = None


def _show(path: str) -> str:
    return f"/{path}"


def _is_entry(value: Any) -> bool:
    """Whether a mapping value is a per-array request (not a dimension's size)."""
    return isinstance(value, Mapping | tuple | list)


def check_chunk_spec(
    spec: Sequence[int | None] | Mapping[str, Any] | None,
    arrays: Sequence[ArrayAxes],
    *,
    single: bool,
    what: str = "chunks",
) -> tuple[str, ...]:
    """Refuse a request that would silently change nothing; return the paths it applies to.

    Parameters
    ----------
    spec
        The request (``None``: keep every array's chunks).
    arrays
        The arrays of the job.
    single
        The job is one array (a tuple of the wrong length is then reported by
        :func:`~zarr_dask_utils.optimize.plan.normalize_chunks`).
    what
        ``"chunks"`` or ``"shards"``, for the messages.

    Returns
    -------
    tuple of str
        Paths of the arrays the request applies to.

    Raises
    ------
    InvalidOptionError
        The request names an array or dimension that does not exist, gives a named array the
        wrong number of sizes, or (a tuple for a group) fits no array's number of axes.

    Examples
    --------
    >>> arrays = [ArrayAxes("t2m", 3, ("time", "lat", "lon")), ArrayAxes("time", 1, ("time",))]
    >>> check_chunk_spec((365, 10, 10), arrays, single=False)
    ('t2m',)
    >>> check_chunk_spec({"time": 365}, arrays, single=False)
    ('t2m', 'time')
    """
    if spec is None:
        return ()
    if single and not isinstance(spec, Mapping):
        return tuple(a.path for a in arrays)
    listing = ", ".join(f"{_show(a.path)} ({a.ndim} axes)" for a in arrays)
    if not isinstance(spec, Mapping):
        fitting = tuple(a.path for a in arrays if a.ndim == len(spec))
        if not fitting:
            raise InvalidOptionError(
                f"The requested {what} {tuple(spec)} have {len(spec)} size(s), but no array of "
                f"the group has {len(spec)} axes: {listing}. Give one size per axis of the "
                "arrays to change (-1 for a whole axis), or name dimensions (time=365,lat=10)."
            )
        return fitting
    by_path = {a.path: a for a in arrays}
    entries = {k: v for k, v in spec.items() if _is_entry(v)}
    sizes = {k: v for k, v in spec.items() if not _is_entry(v)}
    unknown = sorted(set(entries) - set(by_path))
    if unknown:
        raise InvalidOptionError(
            f"The requested {what} name array(s) "
            f"{', '.join(_show(p) for p in unknown)} that the source does not hold; its "
            f"arrays are {listing}. Use paths relative to the source."
        )
    applied: list[str] = []
    for a in arrays:
        entry = entries.get(a.path)
        if entry is not None and not isinstance(entry, Mapping):
            if len(entry) != a.ndim:
                raise InvalidOptionError(
                    f"The requested {what} {tuple(entry)} of {_show(a.path)} have {len(entry)} "
                    f"size(s) but the array has {a.ndim} axes. Give one size per axis "
                    "(-1 for a whole axis)."
                )
            applied.append(a.path)
            continue
        names = {n for n in a.dimension_names or () if n is not None}
        request = entry if entry is not None else sizes
        missing = sorted(set(request) - names) if entry is not None else []
        if missing:
            raise InvalidOptionError(
                f"The requested {what} of {_show(a.path)} name dimension(s) "
                f"{', '.join(missing)}, but its dimensions are "
                f"{', '.join(sorted(names)) or 'unnamed'}."
            )
        if names & set(request):
            applied.append(a.path)
    known = {n for a in arrays for n in (a.dimension_names or ()) if n is not None}
    unnamed = sorted(set(sizes) - known)
    if unnamed:
        raise InvalidOptionError(
            f"The requested {what} name dimension(s) {', '.join(unnamed)} that no array has; "
            f"the dimensions are {', '.join(sorted(known)) or 'unnamed (no array has names)'}. "
            "Check the spelling, or give one size per axis (365,10,10)."
        )
    return tuple(applied)
