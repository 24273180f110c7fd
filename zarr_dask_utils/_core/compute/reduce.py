"""The one tree reduction: fold many small task results into a few, on the cluster.

Features return small picklable results from their tasks (a :class:`DecodeResult`, a dict of
per-array differences) and combine them with a ``combine(*parts)`` function.  Combining all of
them in one task would make that task wait for every other one and receive every result;
:func:`tree_reduce` combines them ``split_every`` at a time, level by level (as dask's own
reductions and icechunk's ``store_dask`` do).  The fan-in comes from dask config
``zarr-dask-utils.graph.split-every``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dask.delayed import Delayed, delayed

from zarr_dask_utils._core.compute.runner import task_name
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import InvalidOptionError

__all__ = ["tree_reduce"]


def tree_reduce(
    tasks: list[Delayed],
    combine: Callable[..., Any],
    op_name: str,
    *,
    keep: int = 1,
    split_every: int | None = None,
) -> list[Delayed]:
    """Combine delayed results *split_every* at a time until at most *keep* are left.

    Parameters
    ----------
    tasks
        Delayed results of the feature's tasks.
    combine
        Module-level function folding any number of results into one (workers import it).
    op_name
        Operation name; the combining tasks are keyed ``zdu-<op_name>-reduce-…``.
    keep
        Stop at this many results: the client combines the last few itself, one scheduling
        round trip less than reducing to one on the cluster.
    split_every
        Fan-in of each combining task (default: ``graph.split-every`` from dask config).

    Returns
    -------
    list of Delayed
        At most ``max(1, keep)`` results (the input as it is when already that few).

    Raises
    ------
    InvalidOptionError
        *split_every* is below 2 (the tree would never shrink).

    Examples
    --------
    >>> from dask import delayed
    >>> parts = [delayed(i) for i in range(10)]
    >>> [total] = tree_reduce(parts, lambda *xs: sum(xs), "demo", split_every=4)
    >>> total.compute(scheduler="sync")
    45
    """
    fan_in = int(get_option("graph.split-every", split_every))
    if fan_in < 2:
        raise InvalidOptionError(
            f"split_every={fan_in}: a tree reduction needs a fan-in of at least 2. Set "
            "zarr-dask-utils.graph.split-every to 2 or more (8 is the default)."
        )
    level = 0
    while len(tasks) > max(1, keep):
        tasks = [
            delayed(combine, pure=False)(
                *tasks[i : i + fan_in],
                dask_key_name=task_name(f"{op_name}-reduce", level, i),
            )
            for i in range(0, len(tasks), fan_in)
        ]
        level += 1
    return tasks
