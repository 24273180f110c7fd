"""Dask → zarr writes: a pre-flight alignment check, a safe store, an xarray region helper.

Dask writes every block in parallel.  Two blocks that share a storage key (a chunk, or a shard
when sharded) both read-modify-write it and one of the updates is lost.  :func:`check_dask_write`
says whether that can happen; :func:`safe_store` refuses such a write or routes the blocks
through :func:`synchronized_write`; :func:`to_zarr_region_safe` does the same for the variables
of an xarray Dataset written into a region of an existing store.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from dask.base import is_dask_collection
from dask.delayed import delayed
from distributed import Client

from zarr_dask_utils._core.compute.operation import operation
from zarr_dask_utils._core.compute.runner import task_name
from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.pure.reports import Finding, Report
from zarr_dask_utils._core.storage.locations import Location, resolve_location
from zarr_dask_utils.concurrent.regions import block_alignment, normalize_region, region_shape
from zarr_dask_utils.concurrent.write import storage_grid, synchronized_write

__all__ = [
    "SafeStoreReport",
    "WriteCheckReport",
    "check_dask_write",
    "safe_store",
    "to_zarr_region_safe",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteCheckReport(Report):
    """Whether the blocks of a Dask array align with the storage keys they are written to."""

    target_shape: tuple[int, ...]
    region: tuple[tuple[int, int], ...]
    storage_unit: str  # "chunk" or "shard"
    storage_shape: tuple[int, ...]
    n_blocks: int
    n_keys: int
    shared_keys: int
    misaligned_blocks: int
    title = "Dask write check"

    @property
    def aligned(self) -> bool:
        """``True`` when no storage key is written by two blocks (safe without locks)."""
        return self.shared_keys == 0

    def summary_lines(self) -> Sequence[str]:
        """Blocks, keys and the verdict."""
        verdict = (
            "aligned: every storage key is written by one block, no lock needed"
            if self.aligned
            else f"NOT aligned: {self.shared_keys} {self.storage_unit}(s) written by several blocks"
        )
        return [
            f"{self.n_blocks} block(s) → {self.n_keys} {self.storage_unit}(s) of "
            f"{self.storage_shape}",
            verdict,
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class SafeStoreReport(Report):
    """What :func:`safe_store` wrote and how."""

    check: WriteCheckReport
    locked: bool
    blocks: int = 0
    keys_written: int = 0
    keys_locked: int = 0
    retries: int = 0
    title = "Safe store"

    def summary_lines(self) -> Sequence[str]:
        """Blocks written, locking and retries."""
        how = "through synchronized_write" if self.locked else "directly (lock=False)"
        return [
            f"{self.blocks} block(s) written {how}: {self.keys_written} key write(s), "
            f"{self.keys_locked} locked, {self.retries} fence retr(ies)"
        ]


def check_dask_write(
    dask_array: Any, zarr_array: zarr.Array[Any], region: Any = None
) -> WriteCheckReport:
    """Check whether writing *dask_array* into *zarr_array* can lose updates.

    Parameters
    ----------
    dask_array
        The source (anything with ``.chunks``, ``.shape`` and ``.dtype``).
    zarr_array
        The target array.
    region
        Where the source goes in the target (tuple of slices); ``None``: the whole array.

    Returns
    -------
    WriteCheckReport
        A warning ``blocks-share-storage-keys`` when two blocks write the same chunk/shard.

    Raises
    ------
    InvalidOptionError
        When the region is invalid or its shape differs from the Dask array's.
    """
    where = resolve_location(zarr_array, read_only=True).display
    norm = normalize_region(region, zarr_array.shape, where=where)
    if tuple(dask_array.shape) != region_shape(norm):
        raise InvalidOptionError(
            f"The Dask array has shape {tuple(dask_array.shape)}, but the target region of "
            f"{where} has shape {region_shape(norm)}. Pass region= matching the source."
        )
    grid, unit = storage_grid(zarr_array)
    align = block_alignment(dask_array.chunks, [s.start for s in norm], zarr_array.shape, grid)
    findings = []
    if not align.aligned:
        first = ", ".join("/".join(map(str, k)) for k in align.shared_keys[:5])
        findings.append(
            Finding(
                "warning",
                "blocks-share-storage-keys",
                where,
                f"{len(align.shared_keys)} {unit}(s) of shape {grid} are written by more than "
                f"one Dask block (e.g. {unit} {first}); parallel writes of them race "
                "(read-modify-write) and lose updates.",
                f"Rechunk the source to multiples of {grid} aligned with the region start, or "
                "write with safe_store(..., lock=True) / synchronized_write.",
            )
        )
    elif align.misaligned_blocks:
        findings.append(
            Finding(
                "info",
                "region-edges-partial",
                where,
                f"Every {unit} is written by one block, but {len(align.misaligned_blocks)} "
                f"block(s) cover {unit}s only partly (region edges): writers of neighbouring "
                "regions race on those unless they use locks too.",
                "Write with safe_store (default lock=None) or synchronized_write in every job.",
            )
        )
    else:
        findings.append(
            Finding("info", "aligned", where, f"Every {unit} is written by exactly one block.")
        )
    return WriteCheckReport(
        location=where,
        findings=tuple(findings),
        target_shape=tuple(zarr_array.shape),
        region=tuple((s.start, s.stop) for s in norm),
        storage_unit=unit,
        storage_shape=grid,
        n_blocks=align.n_blocks,
        n_keys=align.n_keys,
        shared_keys=len(align.shared_keys),
        misaligned_blocks=len(align.misaligned_blocks),
    )


def _write_block(
    block: np.ndarray, target: zarr.Array[Any], region: tuple[slice, ...], lock: bool
) -> dict[str, int]:
    """Worker task: write one block, through the locks or directly."""
    if lock:
        result = synchronized_write(target, region, block)
        return {
            "keys": len(result.keys),
            "locked": len(result.locked),
            "retries": result.attempts - 1,
        }
    target[region] = block
    return {"keys": 0, "locked": 0, "retries": 0}


def safe_store(
    dask_array: Any,
    zarr_array: zarr.Array[Any],
    region: Any = None,
    *,
    lock: bool | None = None,
    client: Client | None = None,
    progress: bool | None = None,
) -> SafeStoreReport:
    """Write a Dask array into a zarr array without losing updates between blocks.

    Parameters
    ----------
    dask_array
        The source Dask array.
    zarr_array
        The writable target.
    region
        Target region (tuple of slices); ``None``: the whole array.
    lock
        ``True`` or ``None`` (default): every block goes through :func:`synchronized_write`,
        which writes fully covered storage keys directly and locks only the partly covered
        ones (shared with another block, or with writers of neighbouring regions);
        ``False``: no locks at all, and sources whose blocks share storage keys are refused
        with :class:`InvalidOptionError`.
    client
        Client to run on (see :func:`~zarr_dask_utils.get_client`).
    progress
        Show a progress bar (``None``: only when interactive).

    Returns
    -------
    SafeStoreReport
    """
    check = check_dask_write(dask_array, zarr_array, region)
    _refuse_unsafe(check, lock)
    with operation("safe-store", client=client, progress=progress) as op:
        location = op.open(zarr_array, role="target", read_only=False, probe=False)
        tasks = _block_tasks(dask_array, zarr_array, check, location, use_lock=lock is not False)
        out = op.run(tasks)
    return _store_report(check, out, locked=lock is not False, engine=out.engine)


def _refuse_unsafe(check: WriteCheckReport, lock: bool | None) -> None:
    """``lock=False`` promises no locks: refuse a write whose blocks share storage keys."""
    if lock is False and not check.aligned:
        raise InvalidOptionError(
            f"Refusing an unsafe parallel write to {check.location}: {check.shared_keys} "
            f"{check.storage_unit}(s) of shape {check.storage_shape} would be written by several "
            "Dask blocks at once and lose updates. Rechunk the source to the target's "
            f"{check.storage_unit} grid, or pass lock=True (or lock=None) to write through locks."
        )


def _block_tasks(
    dask_array: Any,
    zarr_array: zarr.Array[Any],
    check: WriteCheckReport,
    location: Location,
    *,
    use_lock: bool,
) -> list[Any]:
    """One write task per block of *dask_array*, at its place in the checked region."""
    starts = [
        list(itertools.accumulate([lo, *sizes]))
        for (lo, _), sizes in zip(check.region, dask_array.chunks, strict=True)
    ]
    blocks = dask_array.to_delayed().ravel()
    indices = list(itertools.product(*[range(len(c)) for c in dask_array.chunks]))
    name = task_name("safe-store", dask_array.name, location.display, check.region, use_lock)
    return [
        delayed(_write_block, pure=False)(
            block,
            zarr_array,
            tuple(slice(starts[d][i], starts[d][i + 1]) for d, i in enumerate(index)),
            use_lock,
            dask_key_name=(name, n),
        )
        for n, (block, index) in enumerate(zip(blocks, indices, strict=True))
    ]


def _store_report(
    check: WriteCheckReport, out: Sequence[Mapping[str, int]], *, locked: bool, engine: str
) -> SafeStoreReport:
    """The report of one array's block writes (*out*: one result per block)."""
    return SafeStoreReport(
        location=check.location,
        engine=engine,
        findings=check.findings,
        check=check,
        locked=locked,
        blocks=len(out),
        keys_written=sum(r["keys"] for r in out),
        keys_locked=sum(r["locked"] for r in out),
        retries=sum(r["retries"] for r in out),
    )


def to_zarr_region_safe(
    ds: Any,
    store: Any,
    region: Mapping[str, slice],
    *,
    storage_options: Mapping[str, Any] | None = None,
    lock: bool | None = None,
    client: Client | None = None,
) -> dict[str, SafeStoreReport]:
    """Write the data variables of *ds* into *region* of an existing zarr store, safely.

    The xarray counterpart of ``ds.to_zarr(store, region=region)``: each variable is
    CF-encoded the way xarray would (using the target's encoding), then written as
    :func:`safe_store` writes (Dask-backed: the blocks of every variable in one graph on one
    client, after every variable was checked) or with :func:`synchronized_write` (in memory),
    so regions that do not line up with the chunks/shards of the store never lose each
    other's updates.

    Parameters
    ----------
    ds
        An ``xarray.Dataset`` whose variables have the shape of the region.
    store
        The target store (path, URL, zarr Store); it must already hold the variables (create
        it first, e.g. ``template.to_zarr(store, compute=False)``).
    region
        ``{dim: slice(start, stop)}``; dimensions not given are written whole.
    storage_options
        fsspec options for a URL.
    lock, client
        As for :func:`safe_store`.

    Returns
    -------
    dict
        One :class:`SafeStoreReport` per variable written.
    """
    import xarray as xr

    with operation("to-zarr-region", client=client) as op:
        location = op.open(
            store, role="target", storage_options=storage_options, read_only=False, probe=False
        )
        group = zarr.open_group(location.open_store(), mode="r+", path=location.path)
        target = xr.open_zarr(location.open_store(), consolidated=False, decode_times=True)
        reports: dict[str, SafeStoreReport] = {}
        pending: dict[str, tuple[WriteCheckReport, list[Any]]] = {}  # Dask-backed variables
        for name, var in ds.data_vars.items():
            if name not in group:
                raise InvalidOptionError(
                    f"The variable {name!r} does not exist in {location.display}. Create the "
                    "store first (template.to_zarr(store, compute=False)), then write regions "
                    "into it."
                )
            arr = group[name]
            if not isinstance(arr, zarr.Array):
                raise InvalidOptionError(
                    f"{name!r} in {location.display} is a group, not an array; a region of "
                    "a variable can only be written into an array of the same name."
                )
            data = _encoded(var, target[name].encoding, name)
            sel = tuple(region.get(dim, slice(None)) for dim in var.dims)
            if is_dask_collection(data):
                check = check_dask_write(data, arr, sel)
                _refuse_unsafe(check, lock)
                tasks = _block_tasks(data, arr, check, location, use_lock=lock is not False)
                pending[str(name)] = (check, tasks)
            else:
                reports[str(name)] = _write_in_memory(arr, sel, np.asarray(data), client)
        if pending:  # every Dask-backed variable in one graph on one client
            out = op.run([t for _, tasks in pending.values() for t in tasks])
            start = 0
            for name, (check, tasks) in pending.items():
                results = out[start : start + len(tasks)]
                start += len(tasks)
                reports[name] = _store_report(
                    check, results, locked=lock is not False, engine=out.engine
                )
    return {str(name): reports[str(name)] for name in ds.data_vars}  # in the dataset's order


def _encoded(var: Any, target_encoding: Mapping[str, Any], name: Any) -> Any:
    """The data of *var* CF-encoded as xarray would write it, with the target's encoding."""
    from xarray.conventions import encode_cf_variable

    variable = var.variable.copy(deep=False)
    keep = ("dtype", "_FillValue", "units", "calendar", "scale_factor", "add_offset")
    encoding = {k: v for k, v in target_encoding.items() if k in keep}
    variable.encoding = {**encoding, **variable.encoding}
    return encode_cf_variable(variable, name=name).data


def _write_in_memory(
    arr: zarr.Array[Any], sel: tuple[slice, ...], data: np.ndarray, client: Client | None
) -> SafeStoreReport:
    """Write an in-memory variable with :func:`synchronized_write` (no graph)."""
    result = synchronized_write(arr, sel, data, client=client)
    check = check_dask_write(_Shape(np.shape(data)), arr, sel)
    return SafeStoreReport(
        location=check.location,
        findings=check.findings,
        check=check,
        locked=bool(result.locked),
        blocks=1,
        keys_written=len(result.keys),
        keys_locked=len(result.locked),
        retries=result.attempts - 1,
    )


@dataclass(frozen=True)
class _Shape:
    """A one-block stand-in for a Dask array (for checking an in-memory write)."""

    shape: tuple[int, ...]

    @property
    def chunks(self) -> tuple[tuple[int, ...], ...]:
        return tuple((n,) for n in self.shape)
