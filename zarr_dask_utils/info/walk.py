"""Open a node, and walk a whole hierarchy into a :class:`HierarchyReport`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import zarr
from dask.delayed import delayed
from distributed import Client

from zarr_dask_utils._core.checks.nodecheck import (
    unreadable_document_findings,
    unreadable_path_findings,
)
from zarr_dask_utils._core.compute.hierarchy_graph import build_read_graph, unreadable_task
from zarr_dask_utils._core.compute.operation import operation
from zarr_dask_utils._core.compute.runner import task_name
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.pure.nodes import NodeInfo, nodes_from_documents
from zarr_dask_utils._core.pure.reports import Report, sort_findings
from zarr_dask_utils._core.storage.draft_v3 import check_no_nested_draft_v3
from zarr_dask_utils._core.storage.locations import StoreLike
from zarr_dask_utils._core.storage.storeio import storage_errors

__all__ = ["HierarchyReport", "open_node", "walk_hierarchy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HierarchyReport(Report):
    """Every group and array of a store, from its metadata documents.

    ``findings`` name every node zarr cannot read (a document that is not valid JSON, or that
    zarr-python rejects: bad shape, unknown data type, …) and every folder or object the
    listing could not read (permissions, symbolic link loops), so ``ok`` is ``False`` then.
    """

    zarr_format: int
    nodes: tuple[NodeInfo, ...] = ()
    documents_read: int = 0
    title = "Hierarchy"

    @property
    def arrays(self) -> tuple[NodeInfo, ...]:
        """The array nodes."""
        return tuple(n for n in self.nodes if n.node_type == "array")

    @property
    def groups(self) -> tuple[NodeInfo, ...]:
        """The group nodes."""
        return tuple(n for n in self.nodes if n.node_type == "group")

    def summary_lines(self) -> Sequence[str]:
        """Format, counts, then one line per node."""
        head = (
            f"zarr format {self.zarr_format}: {len(self.groups)} group(s), "
            f"{len(self.arrays)} array(s), {self.documents_read} metadata document(s) read"
        )
        return [head, *(n.describe() for n in self.nodes)]


def open_node(
    store: StoreLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
    mode: Literal["r", "r+", "a"] = "r",
    use_consolidated: bool | None = False,
) -> zarr.Group | zarr.Array[Any]:
    """Open the group or array at *store*, detecting its zarr format (2 or 3).

    Parameters
    ----------
    store
        A path, URL, zarr Store/Group/Array or fsspec mapper.
    storage_options
        fsspec options for URLs.
    mode
        ``"r"`` (default, read-only), ``"r+"`` or ``"a"``.
    use_consolidated
        Passed to zarr; ``False`` (default) reads the real documents, so stale consolidated
        metadata cannot hide arrays.

    Raises
    ------
    StoreNotFoundError, NotAZarrStoreError, StoreAccessDeniedError, EndpointUnreachableError
        When the location cannot be used.
    """
    with operation("open") as op:  # no graph: the door only resolves and probes
        location = op.open(store, storage_options=storage_options, read_only=mode == "r")
    probe = op.probes["source"]
    with storage_errors(location.display):
        zstore = location.open_store()
        if probe.root_kind == "array":
            return zarr.open_array(
                zstore,
                path=location.path,
                mode=mode,
                zarr_format=probe.zarr_format,  # type: ignore[arg-type]
            )
        return zarr.open_group(
            zstore,
            path=location.path,
            mode=mode,
            zarr_format=probe.zarr_format,  # type: ignore[arg-type]
            use_consolidated=use_consolidated,
        )


def walk_hierarchy(
    store: StoreLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
    client: Client | None = None,
    progress: bool | None = None,
) -> HierarchyReport:
    """List every group and array of a store with shape, dtype, chunks, shards and codecs.

    The metadata documents are read by a Dask graph (one listing, then concurrent reads in
    several tasks), so a remote hierarchy of thousands of arrays is read in parallel.

    Parameters
    ----------
    store
        A path, URL, zarr Store/Group/Array or fsspec mapper.
    storage_options
        fsspec options for URLs (credentials, ``endpoint_url``).
    client
        Dask client; see :func:`get_client` for the default.
    progress
        Show a progress bar (``None``: only when a human watches).

    Returns
    -------
    HierarchyReport
        Its findings name every node zarr cannot read and every folder or object the listing
        could not read (``ok`` is then ``False``, and ``zdu info`` exits 1).

    Examples
    --------
    >>> import zarr
    >>> from zarr_dask_utils import walk_hierarchy
    >>> g = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    >>> _ = g.create_array("t2m", shape=(4, 4), chunks=(2, 2), dtype="f4")
    >>> [n.path for n in walk_hierarchy(g, progress=False).nodes]
    ['', 't2m']
    """
    with operation("walk", client=client, progress=progress) as op:
        location = op.open(store, storage_options=storage_options)
        probe = op.probes["source"]
        backup = str(get_option("metadata.backup-prefix"))
        listing, docs = build_read_graph(location, nparts=4, exclude_prefix=backup)
        unreadable = delayed(unreadable_task, pure=False)(
            listing, dask_key_name=task_name("walk-unreadable", location)
        )
        result = op.run([docs, unreadable])
    documents, lost = result
    check_no_nested_draft_v3(documents, location.display)
    findings = unreadable_path_findings(lost) + unreadable_document_findings(documents)
    return HierarchyReport(
        location=location.display,
        engine=result.engine,
        findings=sort_findings(findings),
        zarr_format=probe.zarr_format,
        nodes=tuple(nodes_from_documents(documents)),
        documents_read=len(documents),
    )
