"""Name the chunk keys an array's grid has but the store does not hold (pure).

An inventory keeps the first few such keys per array
(:data:`~zarr_dask_utils._core.pure.inventory.MAX_MISSING_LISTED`, from the root in C order);
every report that counts missing chunks names them with :func:`name_missing`, so "1 not
stored" always says which one.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["name_missing"]


def name_missing(keys: Sequence[str], count: int) -> str:
    """Name the keys not stored: ``"missing: 'a/c/0'"``, or the first ones and how many more.

    Examples
    --------
    >>> name_missing(["t/c/0", "t/c/3"], 2)
    "missing: 't/c/0', 't/c/3'"
    >>> name_missing(["t/c/0"], 5)
    "missing: 't/c/0' and 4 more"
    """
    shown = ", ".join(repr(k) for k in keys)
    if not keys:
        return f"{count} not named"
    more = count - len(keys)
    return f"missing: {shown}" + (f" and {more} more" if more > 0 else "")
