"""Checksum manifests: every object's size and strong hash, and verification against one.

Manifest format (JSON, version 1)::

    {
      "format": "zarr-dask-utils-manifest",
      "version": 1,
      "algorithm": "blake2b",          # any hashlib algorithm name
      "created": "2026-11-25T03:00:00+00:00",
      "store": "s3://bucket/era5.zarr",  # informative, credentials removed
      "count": 2, "total_bytes": 1234,
      "objects": {"zarr.json": {"size": 312, "hash": "<hex>"}, "t2m/c/0/0": {...}}
    }

Keys are relative to the hierarchy root, sorted; readers must ignore unknown top-level
fields, and a new ``version`` is only introduced for incompatible changes.  Creating and
verifying are Dask graphs: one listing with sizes, then hash tasks of about
``integrity.hash-batch-bytes`` stored bytes each.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dask.delayed import delayed
from dask.utils import parse_bytes
from distributed import Client

from zarr_dask_utils._core.compute.operation import Operation, operation
from zarr_dask_utils._core.compute.runner import task_name
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.pure.partition import partition_keys
from zarr_dask_utils._core.pure.reports import sort_findings
from zarr_dask_utils._core.storage.canonical import canonical_of_url, refuse_overlap
from zarr_dask_utils._core.storage.heap import heap_allocations
from zarr_dask_utils._core.storage.listing import list_sizes_task
from zarr_dask_utils._core.storage.locations import Location, StoreLike, redact
from zarr_dask_utils._core.storage.objectstream import StreamSettings, stream_objects
from zarr_dask_utils._core.storage.outputs import probe_file_writable
from zarr_dask_utils._core.storage.storeio import storage_errors
from zarr_dask_utils.integrity.findings import compare_sizes, hash_findings
from zarr_dask_utils.integrity.plan import cap
from zarr_dask_utils.integrity.reports import ManifestReport, ManifestVerificationReport

__all__ = ["MANIFEST_FORMAT", "MANIFEST_VERSION", "create_manifest", "hash_task", "verify_manifest"]

MANIFEST_FORMAT = "zarr-dask-utils-manifest"
MANIFEST_VERSION = 1


def hash_task(
    location: Location, sizes: Mapping[str, int], algorithm: str, settings: StreamSettings
) -> dict[str, dict[str, Any] | None]:
    """Worker task: ``{key: {"size", "hash"}}`` of the given objects (``None``: vanished).

    Objects are streamed into reused buffers (:func:`stream_objects`), about
    ``settings.read_ahead`` stored bytes ahead of the hashing.
    """
    out: dict[str, dict[str, Any] | None] = {}
    keys = list(sizes)
    mean = sum(sizes.values()) // max(1, len(keys))
    with storage_errors(location.display), heap_allocations(settings.heap_threshold):
        store = location.open_store()
        full = [join_key(location.path, k) for k in keys]
        stream = stream_objects(store, full, depth=settings.depth(mean))
        for key, value in zip(keys, stream, strict=True):
            out[key] = (
                None
                if value is None
                else {"size": len(value), "hash": hashlib.new(algorithm, value).hexdigest()}
            )
    return out


def _is_url(text: str) -> bool:
    return "://" in text and not text.startswith("file://")


def _check_algorithm(algorithm: str) -> str:
    if algorithm not in hashlib.algorithms_available:
        raise InvalidOptionError(
            f"Unknown hash algorithm {algorithm!r}. Use one of hashlib's, e.g. 'blake2b' or "
            "'sha256'."
        )
    return algorithm


def _hash_graph(
    op: Operation, sizes: Mapping[str, int], algorithm: str
) -> dict[str, dict[str, Any] | None]:
    """Hash the objects *sizes* names, in tasks of about ``integrity.hash-batch-bytes``."""
    location = op.locations["source"]
    batch = parse_bytes(str(get_option("integrity.hash-batch-bytes")))
    settings = StreamSettings.from_config()
    tasks = [
        delayed(hash_task, pure=False)(
            location,
            {k: sizes[k] for k in keys},
            algorithm,
            settings,
            dask_key_name=task_name(f"{op.name}-hash", location, i),
        )
        for i, keys in enumerate(partition_keys(sizes, batch))
    ]
    merged: dict[str, dict[str, Any] | None] = {}
    for part in op.run(tasks) if tasks else ():
        merged.update(part)
    return merged


def _list(op: Operation) -> dict[str, int]:
    """Every object of the source with its size: one listing task."""
    location = op.locations["source"]
    listing = delayed(list_sizes_task, pure=False)(
        location, dask_key_name=task_name(f"{op.name}-list", location)
    )
    [sizes] = op.run([listing])
    return dict(sizes)


def write_document(
    doc: Mapping[str, Any],
    output: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None,
) -> str:
    """Write *doc* as JSON to a local path (atomically) or an fsspec URL; return where."""
    data = json.dumps(doc, indent=1, sort_keys=False).encode()
    text = os.fspath(output)
    if _is_url(text):
        import fsspec

        with fsspec.open(text, "wb", **dict(storage_options or {})) as f:
            f.write(data)
        return redact(text)
    if storage_options:
        raise InvalidOptionError(
            f"output_storage_options were given for the local path {text!r}; leave them out "
            "for a local path."
        )
    path = Path(text.removeprefix("file://")).expanduser().resolve()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return str(path)


def read_document(
    manifest: str | os.PathLike[str] | Mapping[str, Any], storage_options: Mapping[str, Any] | None
) -> tuple[dict[str, Any], str]:
    """Load and validate a manifest from a path, URL or mapping; return it and its name."""
    if isinstance(manifest, Mapping):
        doc, name = dict(manifest), "<manifest object>"
    else:
        text = os.fspath(manifest)
        name = redact(text)
        try:
            if _is_url(text):
                import fsspec

                with fsspec.open(text, "rb", **dict(storage_options or {})) as f:
                    doc = json.loads(f.read())
            else:
                doc = json.loads(Path(text.removeprefix("file://")).expanduser().read_bytes())
        except (OSError, ValueError) as err:
            raise InvalidOptionError(
                f"Cannot read the manifest {name}: {err}. Pass the file written by "
                "`zdu manifest create` (or create_manifest)."
            ) from err
    if (
        not isinstance(doc, Mapping)
        or doc.get("format") != MANIFEST_FORMAT
        or not isinstance(doc.get("objects"), Mapping)
    ):
        raise InvalidOptionError(
            f"{name} is not a zarr-dask-utils manifest (expected a JSON object with "
            f'"format": {MANIFEST_FORMAT!r} and "objects"). Create one with `zdu manifest create`.'
        )
    if doc.get("version") != MANIFEST_VERSION:
        raise InvalidOptionError(
            f"{name} is manifest version {doc.get('version')!r}; this zarr-dask-utils reads "
            "version "
            f"{MANIFEST_VERSION}. Upgrade zarr-dask-utils or recreate the manifest."
        )
    _check_algorithm(str(doc.get("algorithm")))
    return doc, name


def create_manifest(
    store: StoreLike,
    output: str | os.PathLike[str] | None = None,
    *,
    algorithm: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    output_storage_options: Mapping[str, Any] | None = None,
    client: Client | None = None,
    progress: bool | None = None,
) -> ManifestReport:
    """Record every object's size and strong hash (a Dask graph), optionally write it as JSON.

    Parameters
    ----------
    store
        The hierarchy (path, URL, zarr Store/Group).
    output
        Local path or fsspec URL to write the manifest to (``None``: only return it in
        ``report.document``).
    algorithm
        Any hashlib algorithm (default ``integrity.manifest-algorithm``: ``blake2b``).
    storage_options, output_storage_options
        fsspec options for the store and for the output URL.
    client, progress
        Dask client; progress bar.

    Returns
    -------
    ManifestReport
        Counts, where it was written, and the manifest itself in ``document``.

    Raises
    ------
    OverlappingLocationsError
        *output* lies inside the store (or is the store); nothing was read.
    OutputNotWritableError
        An empty test write beside *output* failed; checked before the store is read.
    """
    algorithm = _check_algorithm(str(get_option("integrity.manifest-algorithm", algorithm)))
    if output is not None and output_storage_options and not _is_url(os.fspath(output)):
        raise InvalidOptionError(
            f"output_storage_options were given for the local path {os.fspath(output)!r}, where "
            "they would be ignored; leave them out, or write to a URL such as s3://bucket/m.json."
        )
    with operation("manifest", client=client, progress=progress) as op:
        location = op.open(store, storage_options=storage_options, probe=False)
        if output is not None:  # before any request to the store: never hash in vain
            where = canonical_of_url(os.fspath(output))
            refuse_overlap(location, where, what="manifest output", source_name="store")
            probe_file_writable(output, output_storage_options, what="manifest output")
            op.open(
                output,
                role="output",
                storage_options=output_storage_options,
                read_only=False,
                probe=False,
                in_graph=False,  # written here, by this process
            )
        op.probe("source")
        hashed = _hash_graph(op, _list(op), algorithm)
    objects = {k: v for k, v in sorted(hashed.items()) if v is not None}
    total_bytes = sum(int(v["size"]) for v in objects.values())
    doc = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "algorithm": algorithm,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "store": location.display,
        "count": len(objects),
        "total_bytes": total_bytes,
        "objects": objects,
    }
    written = None if output is None else write_document(doc, output, output_storage_options)
    return ManifestReport(
        location=location.display,
        engine=op.engine or "",
        algorithm=algorithm,
        objects=len(objects),
        total_bytes=total_bytes,
        output=written,
        document=doc,
    )


def verify_manifest(
    store: StoreLike,
    manifest: str | os.PathLike[str] | Mapping[str, Any],
    *,
    storage_options: Mapping[str, Any] | None = None,
    manifest_storage_options: Mapping[str, Any] | None = None,
    client: Client | None = None,
    progress: bool | None = None,
) -> ManifestVerificationReport:
    """Check a store against a manifest: changed (bit rot), truncated, missing, extra objects.

    Parameters
    ----------
    store
        The hierarchy the manifest was created from (or a copy of it).
    manifest
        Path or URL of the manifest JSON, or the manifest mapping itself.
    storage_options, manifest_storage_options
        fsspec options for the store and for the manifest URL.
    client, progress
        Dask client; progress bar.

    Returns
    -------
    ManifestVerificationReport
    """
    with operation("manifest-verify", client=client, progress=progress) as op:
        if not isinstance(manifest, Mapping):  # read here, by this process
            op.open(
                manifest,
                role="manifest",
                storage_options=manifest_storage_options,
                probe=False,
                in_graph=False,
            )
        doc, name = read_document(manifest, manifest_storage_options)
        algorithm = str(doc["algorithm"])
        expected: Mapping[str, Mapping[str, Any]] = doc["objects"]
        location = op.open(store, storage_options=storage_options, allow_missing_root=True)
        found, to_hash = compare_sizes(expected, _list(op))
        hash_findings(_hash_graph(op, to_hash, algorithm), expected, algorithm, found)
    findings = [f for items in found.values() for f in cap(items)]
    return ManifestVerificationReport(
        location=location.display,
        engine=op.engine or "",
        findings=sort_findings(findings),
        algorithm=algorithm,
        manifest=name,
        objects_checked=len(expected),
        changed=len(found["object-changed"])
        + len(found["object-truncated"])
        + len(found["object-size-changed"]),
        missing=len(found["object-missing"]),
        extra=len(found["object-extra"]),
    )
