"""Target side of a conversion: layout, partial marker, metadata, the run, the finishing step.

Order (see :mod:`~zarr_dask_utils._core.storage.markers`): check the target (empty, ours to
resume, or ``overwrite``) → write ``partial.json`` with the run's token → write every array's
metadata and the small variables (coordinates, strings) with xarray, then move the root
group's documents aside into the ``meta`` marker (no ``zarr.json`` at the root while the data
is incomplete: nothing opens a half-written target as a dataset) → write the regions → put the
root documents back, consolidate, drop the markers.  A rerun with the same token skips what
its markers say is done.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask.base

from zarr_dask_utils._core.compute.operation import Operation
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.markers import (
    MARKER_PREFIX,
    PARTIAL,
    prepare_target,
    remove_prefix,
)
from zarr_dask_utils._core.storage.storeio import (
    delete_keys,
    list_keys,
    read_keys,
    storage_errors,
    write_keys,
)
from zarr_dask_utils.convert.plan import (
    CodecChoice,
    VariableShape,
    choose_chunks,
    choose_regions,
    choose_shards,
    translate_encoding,
)

__all__ = ["GroupLayout", "TargetRun", "finish_target", "layout_group", "start_target"]

META_DONE = f"{MARKER_PREFIX}/done/convert/meta"
_ROOT_DOCS = ("zarr.json", ".zgroup", ".zattrs")


@dataclass(frozen=True)
class GroupLayout:
    """One target group: its raw dataset, and per variable chunks, shards and codec."""

    group: str  # zarr path below the target ("" = root)
    dataset: Any  # xarray.Dataset, raw (decode_cf=False), lazily read
    chunks: Mapping[str, tuple[int, ...]]
    shards: Mapping[str, tuple[int, ...] | None]
    codecs: Mapping[str, CodecChoice]
    eager: frozenset[str]  # variables xarray writes with the metadata
    note: str = ""  # why this group exists (GRIB hypercube keys)
    #: write regions grown to whole source chunks (:func:`~.plan.choose_regions`)
    regions: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def block(self, name: str) -> tuple[int, ...]:
        """The region shape of *name*: whole source chunks, else its shards, else its chunks."""
        return self.regions.get(name) or self.shards[name] or self.chunks[name]


@dataclass
class TargetRun:
    """State of one run on the target."""

    token: str
    done: set[str] = field(default_factory=set)
    resumed: bool = False
    restarted: bool = False
    root_docs: dict[str, str] = field(default_factory=dict)


def _is_eager(var: Any) -> bool:
    """Small or non-numeric variables are written by xarray with the metadata."""
    import dask.array as da

    return not isinstance(var.data, da.Array) or var.dtype.kind in "OUSb" or var.ndim == 0


def layout_group(
    group: str,
    ds: Any,
    *,
    chunks: Mapping[str, int] | None,
    shards: Mapping[str, int] | None,
    compressor: str | None,
    access_pattern: Any,
    min_bytes: int,
    max_bytes: int,
    region_bytes: int = 0,
    note: str = "",
) -> GroupLayout:
    """Chunks, shards, codecs and write regions of every variable of *ds* (see :mod:`.plan`).

    Regions grow to whole source chunks (the backend's ``preferred_chunks``) up to
    *region_bytes* (0: regions are the shards or chunks).
    """
    shapes = [
        VariableShape(str(n), tuple(str(d) for d in v.dims), tuple(v.shape), v.dtype.itemsize)
        for n, v in ds.variables.items()
    ]
    dims = {d for v in shapes for d in v.dims}
    chunks = {d: c for d, c in (chunks or {}).items() if d in dims}  # checked across groups
    shards = {d: c for d, c in (shards or {}).items() if d in dims}
    chosen = choose_chunks(
        shapes, chunks, access_pattern=access_pattern, min_bytes=min_bytes, max_bytes=max_bytes
    )
    sharded = choose_shards(shapes, chosen, shards)
    codecs = {
        str(n): translate_encoding(v.encoding, compressor)
        if v.dtype.kind not in "OUS"
        else CodecChoice("zarr-default", "strings", "strings keep zarr's own string codecs")
        for n, v in ds.variables.items()
    }
    eager = frozenset(str(n) for n, v in ds.variables.items() if _is_eager(v))
    written = [v for v in shapes if v.name not in eager]
    regions = choose_regions(
        written,
        {v.name: sharded[v.name] or chosen[v.name] for v in written},
        _source_chunks(ds, written),
        region_bytes,
    )
    return GroupLayout(group, ds, chosen, sharded, codecs, eager, note, regions)


def _source_chunks(ds: Any, variables: Sequence[VariableShape]) -> dict[str, int]:
    """Source chunk size by dimension: the largest variable's ``preferred_chunks`` first."""
    out: dict[str, int] = {}
    for v in sorted(variables, key=lambda v: -math.prod(v.shape) * v.itemsize):
        for d, s in (ds.variables[v.name].encoding.get("preferred_chunks") or {}).items():
            out.setdefault(str(d), int(s))
    return out


def run_token(
    sources: Sequence[Any], target: Location, layouts: Sequence[GroupLayout], fmt: int
) -> str:
    """The token of this conversion: inputs (path, size), target, layout, format."""
    desc = [
        (
            g.group,
            sorted(
                (str(n), tuple(v.dims), tuple(v.shape), str(v.dtype))
                for n, v in g.dataset.variables.items()
            ),
            sorted(g.chunks.items()),
            sorted((k, v) for k, v in g.shards.items()),
            sorted((k, c.compressor) for k, c in g.codecs.items()),
            sorted(g.regions.items()),
        )
        for g in layouts
    ]
    return str(dask.base.tokenize([(s.path, s.nbytes) for s in sources], target.display, desc, fmt))


def _encoding(layout: GroupLayout, name: str, fmt: int) -> dict[str, Any]:
    from zarr_dask_utils._core.compressors import compressors_for

    var = layout.dataset.variables[name]
    enc: dict[str, Any] = {"chunks": layout.chunks[name]}
    if var.dtype.kind not in "OUS":  # strings keep zarr's own codecs
        enc["compressors"] = compressors_for(layout.codecs[name].compressor, fmt)
    if layout.shards[name] and fmt == 3:
        enc["shards"] = layout.shards[name]
    if "_FillValue" not in var.attrs:
        enc["_FillValue"] = None  # else xarray invents NaN for floats
    return enc


def _prepared(layout: GroupLayout) -> Any:
    ds = layout.dataset.copy()
    for name in list(ds.variables):
        ds.variables[name].encoding = {}
        if name in layout.eager:
            var = ds.variables[name].load()
            if var.dtype.kind == "U":  # zarr 3 stores variable-length strings stably
                var = var.astype(str).astype(object)
            ds[name] = var
    return _rechunked(ds, layout)


def _rechunked(ds: Any, layout: GroupLayout) -> Any:
    for name, var in ds.variables.items():
        if name not in layout.eager:
            var.data = var.data.rechunk(layout.block(str(name)))
    return ds


def start_target(
    op: Operation,
    layouts: Sequence[GroupLayout],
    token: str,
    fmt: int,
    overwrite: bool,
    source_names: Sequence[str],
) -> TargetRun:
    """Check the target, write the partial marker, then (unless done) the metadata."""
    tgt = op.locations["target"]
    done, resumed, restarted = prepare_target(tgt, token, overwrite)
    run = TargetRun(token, done, resumed, restarted)
    store = tgt.open_store()
    marker = {"token": token, "sources": list(source_names), "operation": "convert"}
    with storage_errors(tgt.display):
        write_keys(store, {join_key(tgt.path, PARTIAL): json.dumps(marker).encode()})
        if META_DONE in done:
            raw = read_keys(store, [join_key(tgt.path, META_DONE)])[join_key(tgt.path, META_DONE)]
            run.root_docs = json.loads(raw or b"{}")
            return run
        # a run killed while writing metadata: start the data part over
        ours = [k for k in list_keys(store, tgt.path) if f"/{MARKER_PREFIX}/" not in f"/{k}"]
        delete_keys(store, ours)
        run.done = set()
    for layout in layouts:
        _write_metadata(tgt, store, layout, fmt)
    with storage_errors(tgt.display):
        names = [join_key(tgt.path, n) for n in _ROOT_DOCS]
        docs = read_keys(store, names)
        run.root_docs = {n: v.decode() for n, v in zip(_ROOT_DOCS, docs.values(), strict=True) if v}
        delete_keys(store, [k for k, v in docs.items() if v is not None])
        write_keys(store, {join_key(tgt.path, META_DONE): json.dumps(run.root_docs).encode()})
    return run


def _write_metadata(tgt: Location, store: Any, layout: GroupLayout, fmt: int) -> None:
    ds = _prepared(layout)
    encoding = {str(n): _encoding(layout, str(n), fmt) for n in ds.variables}
    group = join_key(tgt.path, layout.group) or None
    with storage_errors(tgt.display), warnings.catch_warnings():
        # xarray lists the group's members: our markers, and the empty folders a replaced
        # target keeps on local disk, are not Zarr nodes
        warnings.filterwarnings(
            "ignore", message="Object at .* is not recognized as a component", category=UserWarning
        )
        # netCDF char arrays stay fixed-length bytes (the decoders join them): no v3 spec yet
        warnings.filterwarnings("ignore", message="The data type .*NullTerminatedBytes")
        ds.to_zarr(
            store,
            group=group,
            mode="a",
            compute=False,
            zarr_format=fmt,
            consolidated=False,
            encoding=encoding,
        )


def lazy_variables(
    layouts: Sequence[GroupLayout],
) -> list[tuple[int, int, str, Any, tuple[int, ...]]]:
    """``(group index, variable index, array path, dask array, block)`` of the task-written ones."""
    out = []
    for gi, layout in enumerate(layouts):
        for vi, (name, var) in enumerate(sorted(layout.dataset.variables.items())):
            if str(name) in layout.eager:
                continue
            out.append(
                (gi, vi, join_key(layout.group, str(name)), var.data, layout.block(str(name)))
            )
    return out


def region_dims(layout: GroupLayout) -> dict[str, int]:
    """The region size along each dimension of the task-written variables of *layout*."""
    out: dict[str, int] = {}
    for name, var in layout.dataset.variables.items():
        if str(name) not in layout.eager:
            for d, b in zip(var.dims, layout.block(str(name)), strict=True):
                out.setdefault(str(d), int(b))
    return out


def finish_target(op: Operation, run: TargetRun) -> None:
    """Put the root documents back, consolidate, then remove the markers (partial last)."""
    from zarr_dask_utils.metadata import consolidate_metadata  # the feature's public face

    tgt = op.locations["target"]
    store = tgt.open_store()
    with storage_errors(tgt.display):
        write_keys(store, {join_key(tgt.path, n): v.encode() for n, v in run.root_docs.items()})
    consolidate_metadata(tgt, backup=False)  # the root replaced is our own
    remove_prefix(tgt, f"{MARKER_PREFIX}/done")
    remove_prefix(tgt, MARKER_PREFIX)  # the partial marker goes last


def stored_bytes(location: Location) -> int:
    """Bytes stored under *location* (every key, the markers are gone by now)."""
    from zarr.core.sync import sync

    store = location.open_store()
    with storage_errors(location.display):
        keys = list_keys(store, location.path)
        return int(sum(sync(store.getsize(k)) for k in keys))


def variable_rows(layouts: Sequence[GroupLayout]) -> list[dict[str, Any]]:
    """The report's line per variable: chunks, shards, codec and why."""
    rows = []
    for layout in layouts:
        for name, var in sorted(layout.dataset.variables.items()):
            n = str(name)
            rows.append(
                {
                    "path": join_key(layout.group, n),
                    "dims": [str(d) for d in var.dims],
                    "shape": list(var.shape),
                    "dtype": str(var.dtype),
                    "nbytes": int(math.prod(var.shape) * var.dtype.itemsize),
                    "chunks": list(layout.chunks[n]),
                    "shards": list(shard) if (shard := layout.shards[n]) else None,
                    "written_by": "metadata step" if n in layout.eager else "region tasks",
                    # one task's region: whole source chunks (a multiple of the chunks/shards)
                    "region": None if n in layout.eager else list(layout.block(n)),
                    **layout.codecs[n].to_dict(),
                }
            )
    return rows
