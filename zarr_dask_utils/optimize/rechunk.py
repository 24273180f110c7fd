"""``rechunk_array``: bounded-memory rechunking of an array, a group or an xarray store on zarr 3.

The plan comes from :mod:`zarr_dask_utils.optimize.plan` (rechunker's algorithm); the work is
one Dask graph of block copies (``rechunker`` method), or a Dask ``rechunk`` with
``method="tasks"`` / ``"p2p"`` followed by ``store``.  Safety: the source is only read; the
target's metadata documents are written after every chunk, root last, and a marker
(``.zdu-rechunk/partial.json``) plus one ``done`` key per finished block (every engine: see
:mod:`~zarr_dask_utils.optimize.graphs`) lets a rerun resume.  Each step of
:func:`rechunk_array` is a function of :mod:`~zarr_dask_utils.optimize.rechunk_steps`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from dask.utils import parse_bytes
from distributed import Client

from zarr_dask_utils._core.compute.operation import operation
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.pure.compressors import parse_compressor
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.storage.locations import Location, StoreLike
from zarr_dask_utils._core.storage.markers import MARKER_PREFIX
from zarr_dask_utils._core.storage.storeio import read_keys, storage_errors
from zarr_dask_utils.optimize.rechunk_steps import (
    array_row,
    copy_blocks,
    finish_target,
    mark_partial,
    open_outputs,
    open_rechunk_source,
    plan_run,
    target_layout,
)
from zarr_dask_utils.optimize.reports import RechunkReport

__all__ = ["MARKER_PREFIX", "rechunk_array"]


def _size(value: int | str | None, key: str) -> int:
    value = get_option(key, value)
    try:
        return int(parse_bytes(value) if isinstance(value, str) else value)
    except (TypeError, ValueError) as err:
        raise InvalidOptionError(
            f"max_mem={value!r} is not a size. Pass bytes (int) or a string like '256MiB'."
        ) from err


def rechunk_array(
    source: StoreLike,
    target_chunks: Sequence[int | None] | Mapping[str, Any],
    target_store: StoreLike,
    *,
    max_mem: int | str | None = None,
    temp_store: StoreLike | None = None,
    target_shards: Sequence[int | None] | Mapping[str, Any] | None = None,
    compressors: Any = None,
    zarr_format: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    target_storage_options: Mapping[str, Any] | None = None,
    temp_storage_options: Mapping[str, Any] | None = None,
    engine: str = "auto",
    overwrite: bool = False,
    client: Client | None = None,
    progress: bool | None = None,
) -> RechunkReport:
    """Copy an array, or every array of a group, to new chunks (and shards) with bounded memory.

    Parameters
    ----------
    source
        Path, URL, zarr Store/Group/Array of the source (format 2 or 3); never modified.
    target_chunks
        New chunks: a tuple (``-1`` = whole axis), a mapping of dimension names to sizes
        (e.g. ``{"time": 365}``, for groups written by xarray), or a mapping of array paths
        to either.  Arrays not covered keep their chunks (``chunks_requested`` in the
        report); a request that fits no array, or names an array or a dimension the source
        does not have, is an error.
    target_store
        Where to write; must be empty, a partial target of an interrupted run (resumed or
        restarted), or ``overwrite=True``.
    max_mem
        Bytes one task may hold (``"256MiB"``); default ``optimize.max-mem``.
    temp_store
        Location for the intermediate copy of a two-stage plan (deleted at the end); it is
        written uncompressed on local disk, blosc-lz4 on object stores
        (``optimize.temp-compressors``).
    target_shards
        Shard shapes (format 3), same forms as *target_chunks*; tasks write whole shards.
    compressors
        Compressors of the target (default: the source's within one format, zarr's default
        across formats): codec objects, or a name ``"zstd:3"``, ``"gzip"``, ``"blosc-zstd"``,
        ``"none"``, … (see :data:`~zarr_dask_utils._core.pure.compressors.COMPRESSOR_NAMES`)
        made for the target's format.
    zarr_format
        Format of the target (default: the source's).
    storage_options, target_storage_options, temp_storage_options
        fsspec options of the source, target and temp URLs.
    engine
        ``"auto"``, ``"rechunker"`` (block copies following the rechunker plan), ``"tasks"``
        or ``"p2p"`` (Dask ``rechunk`` methods, then ``store``).
    overwrite
        Replace a complete existing target.
    client, progress
        Dask client and progress bar (see :func:`~zarr_dask_utils.get_client`).

    Returns
    -------
    RechunkReport

    Raises
    ------
    InvalidOptionError
        Bad chunks, shards on format 2, a non-empty target, a shard larger than max_mem.
    MetadataInvalidError
        A metadata document of the source is not valid JSON (the message names it).
    OverlappingLocationsError
        The target (or temp store) equals, contains or lies inside the source, or the temp
        store overlaps the target; raised before anything is written.
    OutputNotWritableError
        An empty test write to the target or temp store failed (before any work).

    Examples
    --------
    >>> import zarr, numpy as np
    >>> from zarr_dask_utils import rechunk_array
    >>> a = zarr.create_array(zarr.storage.MemoryStore(), shape=(8, 8), chunks=(1, 8), dtype="i4")
    >>> a[:] = np.arange(64).reshape(8, 8)
    >>> out = zarr.storage.MemoryStore()
    >>> rechunk_array(a, (8, 1), out, max_mem="1MiB", progress=False).method
    'rechunker'
    """
    mem = _size(max_mem, "optimize.max-mem")
    if isinstance(compressors, str):
        parse_compressor(compressors)  # a bad name fails before anything starts
    limit = float(get_option("optimize.amplification-limit"))
    with operation("rechunk", client=client, progress=progress) as op:
        src_loc, node, groups, arrays = open_rechunk_source(op, source, storage_options)
        layout = target_layout(
            node, groups, arrays, target_chunks, target_shards, zarr_format, compressors
        )
        tgt_loc, tmp_loc = open_outputs(
            op, target_store, target_storage_options, temp_store, temp_storage_options
        )
        run = plan_run(op, layout, arrays, mem, limit, engine)
        done, resumed, restarted = mark_partial(op, run, overwrite)
        blocks, skipped, nbytes = copy_blocks(op, run, done)
        finish_target(op, run)
        # the source was consolidated: so is the copy (written after its root document)
        consolidated = bool(groups) and source_is_consolidated(src_loc)
        if consolidated:
            _consolidate_target(tgt_loc)
    overhead = int(get_option("optimize.memory-overhead-factor") * mem)
    return RechunkReport(
        location=src_loc.display,
        engine=op.engine or "",
        target=tgt_loc.display,
        method=run.method,
        method_reason=run.reason,
        arrays=tuple(array_row(j, layout, dict(arrays)[j.path].dtype) for j in run.jobs),
        max_mem=mem,
        memory_bound=mem + overhead,
        temp_store=tmp_loc.display if tmp_loc is not None else None,
        blocks_written=blocks,
        blocks_skipped=skipped,
        bytes_written=nbytes,
        restarted=restarted,
        resumed=resumed,
        source_reread=resumed and run.method != "rechunker",
        zarr_format=layout.zarr_format,
        consolidated=consolidated,
    )


# --- consolidation: the metadata feature's public face ------------------------------------


def _consolidate_target(target: Location) -> None:
    """Consolidate the finished target inside this operation (same client, target resolved)."""
    from zarr_dask_utils.metadata import consolidate_metadata  # the feature's public face

    consolidate_metadata(target, backup=False)  # no backup: the root replaced is our own


def source_is_consolidated(location: Location) -> bool:
    """Whether the group at *location* has consolidated metadata (inline, or `.zmetadata`)."""
    names = ("zarr.json", ".zmetadata")
    with storage_errors(location.display):
        raw = read_keys(location.open_store(), [join_key(location.path, n) for n in names])
    root, zmeta = (raw[join_key(location.path, n)] for n in names)
    if zmeta is not None:
        return True
    if root is None:
        return False
    try:
        return isinstance(json.loads(root).get("consolidated_metadata"), dict)
    except (ValueError, AttributeError):
        return False
