"""``parallel_download``: copy a Zarr store (or some of its nodes) between any two locations.

zarr-python 3 has no ``copy_store`` (zarr-python #2407).  This is one Dask graph through the
operation door: the source and target are listed once, the pure plan
(:mod:`~zarr_dask_utils.cloud.transfer_plan`) cuts the objects into tasks, each task moves its
batch with many requests in flight (:mod:`~zarr_dask_utils.cloud.transfer_tasks`), and a final
task writes the metadata documents once every chunk is in place.  Every object is verified by
size and hash; a rerun after a kill skips what the first run recorded and still finds intact.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dask.base import tokenize
from dask.delayed import delayed
from dask.utils import parse_bytes

from zarr_dask_utils._core.compute.operation import Operation, operation
from zarr_dask_utils._core.compute.runner import interactive, task_name
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.pure.partition import partition_keys
from zarr_dask_utils._core.storage.canonical import refuse_overlap
from zarr_dask_utils._core.storage.locations import Location, StoreLike
from zarr_dask_utils._core.storage.markers import remove_prefix
from zarr_dask_utils._core.storage.objectstream import StreamSettings
from zarr_dask_utils._core.storage.obstore_engine import choose_engine, split_engine
from zarr_dask_utils.cloud.transfer_findings import consolidated_subset, transfer_findings
from zarr_dask_utils.cloud.transfer_listing import list_objects_task
from zarr_dask_utils.cloud.transfer_plan import (
    MARKER_PREFIX,
    ObjectInfo,
    TransferPlan,
    decide_resume,
    plan_transfer,
    select_keys,
)
from zarr_dask_utils.cloud.transfer_progress import byte_progress
from zarr_dask_utils.cloud.transfer_report import TransferReport
from zarr_dask_utils.cloud.transfer_state import (
    TargetState,
    inspect_target,
    refuse_differing,
    start_marker,
)
from zarr_dask_utils.cloud.transfer_tasks import CopySettings, copy_documents_task, copy_task
from zarr_dask_utils.integrity.manifest import hash_task

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["parallel_download", "transfer_engine"]


def transfer_engine(reasons: Mapping[str, str]) -> str:
    """How objects move (the engine seam), for the report: *reasons* maps role → engine, why.

    Copy tasks use zarr's async store API (``zarr-async``) on every store pair; the client
    under an ``s3://`` location is its store engine (:func:`choose_engine`: obstore when
    installed, s3fs when forced by ``zdu_engine="s3fs"`` or obstore cannot take the options),
    on this process and on every worker alike.
    """
    clients = [f"{role} {why}" for role, why in reasons.items() if why]
    return "zarr-async" + (f" ({'; '.join(clients)})" if clients else "")


def with_engine(
    store: StoreLike, storage_options: Mapping[str, Any] | None
) -> tuple[Mapping[str, Any] | None, str]:
    """*storage_options* with the store engine of an ``s3://`` URL chosen, and why."""
    if not isinstance(store, str):
        return storage_options, ""
    options, why = choose_engine(store, storage_options)
    return (options if why else storage_options), why


def with_connection_pool(
    store: StoreLike, storage_options: Mapping[str, Any] | None, concurrency: int
) -> Mapping[str, Any] | None:
    """*storage_options* of an ``s3://`` URL with room for *concurrency* connections.

    aiobotocore keeps at most 10 connections per client by default, which caps the requests
    in flight whatever a task asks for; a value the caller set is kept.

    Examples
    --------
    >>> with_connection_pool("s3://b/x.zarr", {"anon": True}, 64)["config_kwargs"]
    {'max_pool_connections': 64}
    >>> with_connection_pool("/data/x.zarr", None, 64) is None
    True
    """
    if not (isinstance(store, str) and store.startswith(("s3://", "s3a://"))):
        return storage_options
    if split_engine(storage_options or {})[0] != "s3fs":
        return storage_options
    options = dict(storage_options or {})
    config = dict(options.get("config_kwargs") or {})
    config.setdefault("max_pool_connections", concurrency)
    options["config_kwargs"] = config
    return options


def _arrays(arrays: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if arrays is None:
        return None
    items = arrays.split(",") if isinstance(arrays, str) else list(arrays)
    return tuple(sorted({a.strip().strip("/") for a in items if a.strip()}))


def _select(source: Location, listing: Mapping[str, ObjectInfo], arrays: Any) -> list[str]:
    try:
        return select_keys(listing, list(arrays) if arrays is not None else None)
    except KeyError as err:
        tops = sorted({k.split("/")[0] for k in listing if "/" in k})[:10]
        raise InvalidOptionError(
            f"No node {err.args[0]!r} in {source.display}: no object lies below it. Nodes at "
            f"the top: {', '.join(tops) or '(none)'}. Pass existing array or group paths to "
            "arrays= (zdu: --arrays a,b); `zdu info SRC` lists them."
        ) from err


def _list(op: Operation) -> tuple[dict[str, ObjectInfo], dict[str, ObjectInfo]]:
    source, target = op.locations["source"], op.locations["target"]
    tasks = [
        delayed(list_objects_task, pure=False)(loc, dask_key_name=task_name(f"{op.name}-list"))
        for loc in (source, target)
    ]
    src, dst = op.run(tasks, progress=False)
    return dict(src), dict(dst)


def _hashes(op: Operation, role: str, sizes: Mapping[str, int]) -> dict[str, str | None]:
    """Key → hash of the objects *sizes* names at location *role* (``None``: unreadable)."""
    algorithm = str(get_option("integrity.manifest-algorithm"))
    batch = parse_bytes(str(get_option("integrity.hash-batch-bytes")))
    tasks = [
        delayed(hash_task, pure=False)(
            op.locations[role],
            {k: sizes[k] for k in keys},
            algorithm,
            StreamSettings.from_config(),
            dask_key_name=task_name(f"{op.name}-check"),
        )
        for keys in partition_keys(dict(sizes), batch)
    ]
    hashed: dict[str, Any] = {}
    for part in op.run(tasks, progress=False) if tasks else []:
        hashed.update(part)
    return {k: (hashed[k]["hash"] if hashed.get(k) else None) for k in sizes}


def _intact(
    op: Operation, state: TargetState, skip: Mapping[str, tuple[int, str]], verify: bool
) -> dict[str, int]:
    """The recorded objects still whole at the target (size, and hash when *verify*)."""
    present = {k: v for k, v in skip.items() if state.existing.get(k, (-1, None))[0] == v[0]}
    sizes = {k: v[0] for k, v in present.items()}
    if not verify or not present:
        return sizes
    hashed = _hashes(op, "target", sizes)
    return {k: sizes[k] for k, (_, digest) in present.items() if hashed[k] == digest}


def _identical(op: Operation, state: TargetState) -> dict[str, int]:
    """The objects of a finished earlier copy, all checked against the source by hash.

    Raises
    ------
    InvalidOptionError
        Some target object differs from its source object (named): nothing is written.
    """
    sizes = {k: v[0] for k, v in state.existing.items()}
    source, target = _hashes(op, "source", sizes), _hashes(op, "target", sizes)
    differ = sorted(k for k in sizes if source[k] is None or source[k] != target[k])
    refuse_differing(op.locations["target"], state.existing, differ)
    return sizes


def _copy_graph(
    op: Operation,
    plan: TransferPlan,
    listing: Mapping[str, ObjectInfo],
    settings: CopySettings,
) -> dict[str, Any]:
    source, target = op.locations["source"], op.locations["target"]

    def items(keys: Sequence[str]) -> list[tuple[str, int, str | None]]:
        return [(k, listing[k][0], listing[k][1]) for k in keys]

    data = [
        delayed(copy_task, pure=False)(
            source, target, items(batch), settings, dask_key_name=task_name(f"{op.name}-copy")
        )
        for batch in plan.data
    ]
    final = delayed(copy_documents_task, pure=False)(
        source,
        target,
        items(plan.documents),
        settings,
        data,
        dask_key_name=task_name(f"{op.name}-documents"),
    )
    [result] = op.run([final], progress=False)
    return dict(result)


def _settings(concurrency: int | None, verify: bool) -> CopySettings:
    return CopySettings(
        concurrency=int(get_option("download.concurrency", concurrency)),
        inflight_bytes=parse_bytes(str(get_option("download.inflight-bytes"))),
        verify=verify,
        algorithm=str(get_option("integrity.manifest-algorithm")),
        flush_every=int(get_option("download.record-every")),
        part_bytes=parse_bytes(str(get_option("download.part-bytes"))),
    )


def parallel_download(
    src: StoreLike,
    dst: StoreLike,
    *,
    arrays: str | Sequence[str] | None = None,
    client: Client | None = None,
    verify: bool = True,
    resume: bool = True,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    dst_storage_options: Mapping[str, Any] | None = None,
    concurrency: int | None = None,
    progress: bool | None = None,
    dry_run: bool = False,
) -> TransferReport:
    """Copy a Zarr store, or chosen arrays/groups, to another location as a Dask graph.

    Any two locations: S3 → local disk (the main case), local → S3, S3 → S3, local → local;
    a zip file only as the source.  Object keys are cut into tasks by count and bytes; each
    task keeps many requests in flight with bounded memory; the metadata documents are
    written last, by one final task, so a reader never sees a target that looks complete
    before it is.  Every object is verified: its size against the source listing, its bytes
    hashed once for the resume record and compared byte for byte with the target copy read
    back.  A rerun after an interruption skips the objects already copied and still intact,
    and copies again those that changed on the source since.  Running the same download
    again over a finished copy is an up-to-date check: every object there is compared with
    the source by size and hash, nothing is rewritten, and only missing objects are copied.

    Parameters
    ----------
    src, dst
        Source and target: path, URL (``s3://bucket/x.zarr``), zip file (source only), zarr
        Store or Group.
    arrays
        Node paths (arrays or groups) to copy, a sequence or ``"a,b"``; their parent groups'
        documents come along.  ``None`` copies everything.
    client
        Dask client (default: the current one, a configured scheduler or an embedded cluster).
    verify
        Read every copied object back and compare it byte for byte with the source's bytes.
    resume
        Continue a partial download of the same source found at *dst* (``False``: start over).
    overwrite
        Replace a Zarr hierarchy already at *dst* that differs from the source (files that
        are not Zarr's are never deleted).  Not needed to rerun a finished download.
    storage_options, dst_storage_options
        fsspec options of *src* and of *dst*.
    concurrency
        Requests in flight per task (default ``download.concurrency``).
    progress
        Show a bytes/s progress bar (``None``: when a human is watching).
    dry_run
        Plan only: report what would be copied and skipped; write nothing.

    Returns
    -------
    TransferReport
        Objects and bytes copied, skipped and verified, rates, per-phase times, engines.

    Raises
    ------
    InvalidOptionError
        *dst* holds data without a download marker that differs from the source or is not
        part of this download (and not *overwrite*), overlaps *src*, or
        *arrays* names a node that does not exist.
    StoreAccessDeniedError, StoreNotFoundError, EndpointUnreachableError
        Bad credentials, a missing bucket, an endpoint that does not answer.

    See Also
    --------
    zarr_dask_utils.create_manifest : record a copy's hashes to check it again later.

    Examples
    --------
    >>> import zarr
    >>> src = zarr.storage.MemoryStore()
    >>> zarr.create_array(src, shape=(4,), chunks=(2,), dtype="u1")[:] = 7
    >>> dst = zarr.storage.MemoryStore()
    >>> parallel_download(src, dst, progress=False).objects_copied
    3
    """
    chosen = _arrays(arrays)
    settings = _settings(concurrency, verify)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    src_options, src_why = with_engine(src, storage_options)
    dst_options, dst_why = with_engine(dst, dst_storage_options)
    with operation("download", client=client, progress=progress) as op:
        source = op.open(
            src,
            storage_options=with_connection_pool(src, src_options, settings.concurrency),
            allow_missing_root=bool(chosen),
        )
        target = op.open(
            dst,
            role="target",
            storage_options=with_connection_pool(dst, dst_options, settings.concurrency),
            read_only=dry_run,
            probe=False,
        )
        refuse_overlap(source, target)
        engine = transfer_engine({"source": src_why, "target": dst_why})
        seconds["open"] = time.perf_counter() - clock
        src_objects, dst_objects = _list(op)
        selected = {k: src_objects[k] for k in _select(source, src_objects, chosen)}
        seconds["list"] = time.perf_counter() - clock - seconds["open"]
        token = tokenize(source.display, chosen)
        state = inspect_target(
            target,
            dst_objects,
            token,
            selected=selected,
            overwrite=overwrite,
            resume=resume,
            dry_run=dry_run,
        )
        decision = decide_resume(selected, state.records)
        intact = _intact(op, state, decision.skip, verify) if state.resumed else {}
        if state.in_place:
            intact = _identical(op, state)
        to_copy = {k: selected[k][0] for k in selected if k not in intact}
        plan = plan_transfer(
            to_copy,
            batch_bytes=parse_bytes(str(get_option("download.batch-bytes"))),
            batch_objects=int(get_option("download.batch-objects")),
            parallelism=op.threads if to_copy and not dry_run else 1,
            min_objects=2 * settings.concurrency,
        )
        seconds["check-target"] = time.perf_counter() - clock - sum(seconds.values())
        result: dict[str, Any] = {"copied": plan.objects, "bytes": plan.bytes, "verified": 0}
        complete = state.in_place and not plan.objects and not dry_run
        if not dry_run and not complete:
            if not state.resumed:
                start_marker(target, token, source.display)
            show = get_option("progress", progress)
            show = interactive() if show is None else bool(show)
            start = time.perf_counter()
            with byte_progress(op.client, plan.bytes, plan.objects, show=show) as topic:
                run_settings = dataclasses.replace(settings, progress_topic=topic)
                result = _copy_graph(op, plan, selected, run_settings)
            seconds["copy"] = time.perf_counter() - start
            complete = bool(result["documents_written"])
            if complete:
                start = time.perf_counter()
                remove_prefix(target, MARKER_PREFIX)
                seconds["finish"] = time.perf_counter() - start
        changed = list(decision.changed)
        extra = consolidated_subset(source, target, selected, src_objects) if chosen else []
    return TransferReport(
        location=source.display,
        target=target.display,
        engine=op.engine or "",
        findings=tuple(extra + transfer_findings(result, changed)),
        arrays=chosen,
        dry_run=dry_run,
        resumed=state.resumed,
        up_to_date_check=state.in_place,
        complete=complete,
        objects_copied=int(result["copied"]),
        bytes_copied=int(result["bytes"]),
        objects_skipped=len(intact),
        bytes_skipped=sum(intact.values()),
        objects_verified=int(result["verified"]),
        verify=verify,
        tasks=len(plan.data) + 1 if plan.objects else 0,
        changed_on_source=tuple(changed),
        seconds=seconds,
        transfer_engine=(
            f"{engine}: up to {settings.concurrency} requests and "
            f"{settings.inflight_bytes / 2**20:.0f} MiB in flight per task"
        ),
    )
