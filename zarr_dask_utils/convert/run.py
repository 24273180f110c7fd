"""The conversion recipe both converters share, once their inputs are open as raw datasets.

Open the target through the door, lay out every group (chunks, shards, codecs), derive the
run's token, start the target (resume, restart or refuse; metadata), write every region in
one graph with progress, finish (root documents, consolidation, markers), and report.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from dask.utils import parse_bytes

from zarr_dask_utils._core.compute.operation import operation
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.pure.reports import Finding
from zarr_dask_utils._core.storage.locations import StoreLike
from zarr_dask_utils._core.storage.outputs import probe_store_writable
from zarr_dask_utils.convert.progress import ConversionProgress
from zarr_dask_utils.convert.report import ConversionReport
from zarr_dask_utils.convert.sources import SourceFile
from zarr_dask_utils.convert.target import (
    GroupLayout,
    finish_target,
    layout_group,
    lazy_variables,
    region_dims,
    run_token,
    start_target,
    stored_bytes,
    variable_rows,
)
from zarr_dask_utils.convert.tasks import region_tasks, region_totals

__all__ = ["convert_datasets", "resolve_progress"]

#: Jobs up to this many bytes are verified by default (every region read back).
VERIFY_LIMIT = 2 * 2**30
#: Largest chunk the cost model may choose for a conversion (a region is one task).
REGION_LIMIT = 8 * 2**20
#: Largest write region grown to whole source chunks (one task holds its region in memory).
REGION_GROWTH_LIMIT = 64 * 2**20
#: Why conversions want worker processes on an embedded cluster (``cluster.processes=auto``).
READERS_LOCKED = (
    "netCDF/HDF5 and ecCodes readers hold a per-process lock (xarray's HDF5/ecCodes locks), so "
    "only worker processes decode input files in parallel"
)


def resolve_progress(progress: bool | ConversionProgress | None) -> ConversionProgress | None:
    """``True``/``None`` → a progress object with a bar when watched; ``False`` → none."""
    if isinstance(progress, ConversionProgress):
        return progress
    if progress is False:
        return None
    return ConversionProgress(bar=progress)


def _bytes(key: str) -> int:
    return int(parse_bytes(str(get_option(key))))


def convert_datasets(
    groups: Sequence[tuple[str, Any, str]],
    files: Sequence[SourceFile],
    dst: StoreLike,
    *,
    reader: str,
    chunks: Mapping[str, int] | None,
    shards: Mapping[str, int] | None,
    compressor: str | None,
    access_pattern: Any,
    zarr_format: int,
    storage_options: Mapping[str, Any] | None,
    overwrite: bool,
    resume: bool,
    verify: bool | None,
    client: Any,
    progress: bool | ConversionProgress | None,
    findings: Sequence[Finding] = (),
    reopen: Callable[[str, Mapping[str, int]], Any] | None = None,
) -> ConversionReport:
    """Write raw datasets ``(group, dataset, note)`` to *dst*; see :func:`netcdf_to_zarr`.

    *reopen(group, blocks)*, if given, opens a group again read in the region shape of each
    dimension (so no task reads more than its region of a file).
    """
    if zarr_format not in (2, 3):
        raise InvalidOptionError(f"zarr_format={zarr_format!r}: use 2 or 3.")
    if shards and zarr_format == 2:
        raise InvalidOptionError("Shards need zarr format 3: drop shards or use zarr_format=3.")
    lo, hi = _bytes("optimize.min-chunk"), _bytes("optimize.max-chunk")
    # one region is one task: smaller regions than a rechunk's keep every worker busy
    hi = max(lo, min(hi, REGION_LIMIT))
    dims = {str(d) for _, ds, _ in groups for d in ds.dims}
    for what, request in (("chunks", chunks), ("shards", shards)):
        unknown = sorted(set(request or {}) - dims)
        if unknown:
            raise InvalidOptionError(
                f"{what} name dimension(s) {', '.join(unknown)} that the inputs do not have; "
                f"they have {', '.join(sorted(dims)) or 'none'}. Use e.g. time=365 with those."
            )
    layouts: list[GroupLayout] = [
        layout_group(
            g,
            ds,
            chunks=chunks,
            shards=shards,
            compressor=compressor,
            access_pattern=access_pattern,
            min_bytes=lo,
            max_bytes=hi,
            region_bytes=max(hi, REGION_GROWTH_LIMIT),
            note=note,
        )
        for g, ds, note in groups
    ]
    if reopen is not None:
        layouts = [replace(g, dataset=reopen(g.group, region_dims(g))) for g in layouts]
    tracker = resolve_progress(progress)
    with operation("convert", client=client, progress=False, workload=READERS_LOCKED) as op:
        tgt = op.open(dst, role="target", storage_options=storage_options, read_only=False,
                      probe=False)  # fmt: skip
        probe_store_writable(tgt, what="target")
        token = run_token(files, tgt, layouts, zarr_format)
        if not resume:
            token += "-fresh-" + uuid.uuid4().hex  # a partial target is discarded
        run = start_target(op, layouts, token, zarr_format, overwrite, [f.path for f in files])
        total = sum(int(v[3].nbytes) for v in lazy_variables(layouts))
        check = total <= VERIFY_LIMIT if verify is None else bool(verify)
        plan = region_tasks(
            tgt,
            lazy_variables(layouts),
            run.done,
            topic=tracker.topic if tracker else None,
            verify=check,
        )
        if tracker is not None:
            tracker.start(plan.total_bytes, len(plan.tasks), client=op.client)
        try:
            result = op.run([list(plan.tasks)]) if plan.tasks else [[]]
        finally:
            if tracker is not None:
                tracker.wait(timeout=10.0 if plan.tasks else 0.0)
                tracker.finish()
        totals = region_totals(result[0])
        finish_target(op, run)
        engine = op.engine or "no region left to write"
    found = list(findings)
    if totals["mismatches"]:
        found.append(
            Finding(
                "error",
                "conversion-mismatch",
                "",
                f"{totals['mismatches']} region(s) read back differ from the source blocks "
                "written.",
                "Convert again with overwrite=True to rewrite the target.",
            )
        )
    return ConversionReport(
        location=tgt.display,
        engine=engine,
        findings=tuple(found),
        target=tgt.display,
        sources=tuple(f.path for f in files),
        source_format="+".join(sorted({f.kind for f in files})),
        reader=reader,
        groups=tuple({"path": g.group, "note": g.note} for g in layouts),
        variables=tuple(variable_rows(layouts)),
        zarr_format=zarr_format,
        regions_written=totals["regions"],
        regions_skipped=plan.skipped,
        bytes_written=totals["bytes"],
        source_bytes=sum(f.nbytes for f in files),
        target_bytes=stored_bytes(tgt),
        verified=check,
        resumed=run.resumed,
        restarted=run.restarted,
    )
