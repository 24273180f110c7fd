"""``validate_metadata``: every problem in a hierarchy's metadata, with a fix for each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distributed import Client

from zarr_dask_utils._core.checks.hierarchy import consolidated_status
from zarr_dask_utils._core.checks.zip_advice import advice_for_zip
from zarr_dask_utils._core.compute.operation import operation
from zarr_dask_utils._core.storage.locations import StoreLike
from zarr_dask_utils.metadata.inspection import inspect_metadata
from zarr_dask_utils.metadata.reports import ValidationReport

__all__ = ["validate_metadata"]


def validate_metadata(
    store: StoreLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
    client: Client | None = None,
    progress: bool | None = None,
) -> ValidationReport:
    """Check every metadata document of a hierarchy (format 2 or 3) and report each problem.

    Finds unparsable JSON, missing required keys, invalid dtype / shape / chunks / fill value,
    unknown codecs, chunk keys outside an array's grid, data without an array document,
    missing group documents, mixed formats, and consolidated metadata that is missing, stale
    (added, removed or changed nodes) or out of order.  Reads are a Dask graph: one listing
    plus concurrent document reads on the workers.

    Parameters
    ----------
    store
        A path, URL (``s3://…``), zarr Store/Group/Array or fsspec mapper.
    storage_options
        fsspec options for URLs (credentials, ``endpoint_url``).
    client
        Dask client; by default the current one, a configured scheduler, or an embedded
        LocalCluster.
    progress
        Show a progress bar (``None``: only when a human watches).

    Returns
    -------
    ValidationReport
        ``ok`` is ``False`` when any error or warning was found.

    Raises
    ------
    StoreNotFoundError, NotAZarrStoreError, StoreAccessDeniedError, EndpointUnreachableError
        When the store cannot be read at all.

    See Also
    --------
    repair_metadata : fix what can be fixed without guessing.
    consolidate_metadata : (re)write consolidated metadata.

    Examples
    --------
    >>> import zarr
    >>> from zarr_dask_utils import validate_metadata
    >>> g = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    >>> _ = g.create_array("t2m", shape=(4,), chunks=(2,), dtype="f4")
    >>> validate_metadata(g, progress=False).ok
    True
    """
    with operation("validate", client=client, progress=progress) as op:
        op.open(store, storage_options=storage_options, allow_missing_root=True)
        seen = inspect_metadata(op)
    findings = seen.findings
    if seen.location.kind == "zip":  # zdu does not write into a zip: advice for a copy
        findings = tuple(advice_for_zip(findings, seen.location.path))
    status = consolidated_status(seen.parsed, findings)
    kinds = [seen.parsed.node_kind(p) for p in seen.parsed.node_paths()]
    return ValidationReport(
        location=seen.location.display,
        engine=seen.engine,
        findings=findings,
        zarr_format=seen.parsed.zarr_format,
        groups=kinds.count("group"),
        arrays=kinds.count("array"),
        documents_read=seen.documents_read,
        objects_listed=seen.objects_listed,
        consolidated=status,
    )
