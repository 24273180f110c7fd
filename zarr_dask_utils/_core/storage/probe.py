"""Probe a location before any graph runs: does it exist, is it Zarr, which format.

Runs in the calling process with a handful of requests, so a wrong path, a missing bucket,
bad credentials or an unreachable endpoint fail in a second with a clear message, before a
cluster is started.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from zarr.abc.store import Store
from zarr.core.sync import sync
from zarr.storage import FsspecStore

from zarr_dask_utils._core.errors import NotAZarrStoreError, StoreNotFoundError
from zarr_dask_utils._core.pure.keys import ARRAY_V2, GROUP_V2, ZARR_JSON, join_key, parse_document
from zarr_dask_utils._core.storage.draft_v3 import check_not_draft_v3
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.storeio import list_dir, read_keys, storage_errors

__all__ = ["Probe", "probe_location"]

_MAX_CHILDREN_CHECKED = 50
_BUCKET_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


@dataclass(frozen=True, slots=True)
class Probe:
    """What the root of a location holds.

    ``root_kind`` is ``"group"``, ``"array"``, ``"unknown"`` (a root ``zarr.json`` that is not
    a JSON object, e.g. empty or not valid JSON) or ``None`` (no root document).

    ``zarr_format`` is the format of the root document, or of the documents one level down
    when the root has none (``root_missing``); ``mixed`` is ``True`` when the root holds
    documents of both formats.  ``documents`` keeps the root documents the probe read
    (``zarr.json``, ``.zgroup``, ``.zarray`` → raw bytes or ``None``), so callers need not
    read them again.
    """

    zarr_format: int
    root_kind: str | None
    root_missing: bool
    mixed: bool
    children_with_documents: tuple[str, ...] = ()
    documents: Mapping[str, bytes | None] = field(default_factory=dict, compare=False, repr=False)


def _nearest_existing(path: Path) -> Path | None:
    for parent in path.parents:
        if parent.exists():
            return parent
    return None  # pragma: no cover - "/" always exists


def _missing_bucket(store: Store) -> str | None:
    """The bucket of an object-store location when it does not exist, else ``None``."""
    if not isinstance(store, FsspecStore):
        return None
    protocol = store.fs.protocol
    protocols = {protocol} if isinstance(protocol, str) else set(protocol)
    if not protocols & _BUCKET_PROTOCOLS:
        return None
    bucket = store.path.strip("/").partition("/")[0]
    if not bucket:
        return None
    return None if sync(store.fs._exists(bucket)) else bucket


def probe_location(location: Location, *, allow_missing_root: bool = False) -> Probe:
    """Check that *location* holds Zarr data and detect its format.

    Parameters
    ----------
    location
        Where to look.
    allow_missing_root
        Accept a location whose root document is missing when documents exist one level down
        (validate and repair want to report and fix exactly that).

    Raises
    ------
    StoreNotFoundError
        Nothing exists there.
    NotAZarrStoreError
        Something exists, but no Zarr document at the root (nor one level down when
        ``allow_missing_root``).
    StoreAccessDeniedError, EndpointUnreachableError
        From the storage service.
    """
    where = location.display
    if location.kind in ("local", "zip"):
        path = Path(location.url)
        if not path.exists():
            near = _nearest_existing(path)
            raise StoreNotFoundError(
                f"No Zarr store at {where}: the path does not exist"
                + (f" (the nearest existing folder is {str(near)!r})." if near else ".")
                + " Check the path, or create the store first."
            )
        if location.kind == "local" and not path.is_dir():
            raise NotAZarrStoreError(
                f"{where} is a file, not a Zarr store (a directory, or a .zip file). Pass the "
                "directory that holds zarr.json or .zgroup/.zarray."
            )
    with storage_errors(where):
        store = location.open_store()
        names = (ZARR_JSON, GROUP_V2, ARRAY_V2)
        docs = read_keys(store, [join_key(location.path, n) for n in names])
        found = {n: docs[join_key(location.path, n)] is not None for n in names}
        if found[ZARR_JSON] or found[GROUP_V2] or found[ARRAY_V2]:
            is_v3 = found[ZARR_JSON]
            kind = "array" if found[ARRAY_V2] else "group"
            if is_v3:
                doc, _ = parse_document(docs[join_key(location.path, ZARR_JSON)])
                check_not_draft_v3(store, location.path, where, root_doc=doc)
                is_array = isinstance(doc, dict) and doc.get("node_type") == "array"
                # a root document that is not a JSON object says nothing about the node's kind
                kind = "array" if is_array else "group" if isinstance(doc, dict) else "unknown"
            return Probe(
                zarr_format=3 if is_v3 else 2,
                root_kind=kind,
                root_missing=False,
                mixed=is_v3 and (found[GROUP_V2] or found[ARRAY_V2]),
                documents={n: docs[join_key(location.path, n)] for n in names},
            )
        entries = list_dir(store, location.path)
        bucket = None if entries else _missing_bucket(store)
    if not entries:
        if bucket is not None:
            raise StoreNotFoundError(
                f"No Zarr store at {where}: the bucket {bucket!r} does not exist. Check the "
                "bucket name and the endpoint_url/region in storage_options."
            )
        raise StoreNotFoundError(
            f"No Zarr store at {where}: nothing is stored there (no objects under that prefix). "
            "Check the path or URL; for S3 check the bucket, prefix and endpoint_url."
        )
    children = [e.rstrip("/").rpartition("/")[2] for e in entries][:_MAX_CHILDREN_CHECKED]
    with storage_errors(where):
        check_not_draft_v3(store, location.path, where, children=children)
    probe_keys = [join_key(join_key(location.path, c), n) for c in children for n in names]
    with storage_errors(where):
        child_docs = read_keys(store, probe_keys)
    stores = sorted({k.rpartition("/")[0] for k, v in child_docs.items() if v is not None})
    v3 = any(k.endswith(ZARR_JSON) and v is not None for k, v in child_docs.items())
    if stores and allow_missing_root:
        rel = tuple(s[len(location.path.strip("/")) :].lstrip("/") for s in stores)
        return Probe(
            3 if v3 else 2, None, root_missing=True, mixed=False, children_with_documents=rel
        )
    if "attributes.json" in children:
        _refuse_n5(store, location.path, where)
    hint = (
        "Zarr nodes found one level down: "
        + ", ".join(repr(f"{where.rstrip('/')}/{s.rpartition('/')[2]}") for s in stores[:5])
        + ". Pass one of those, or run `zdu repair` to write the missing root group document."
        if stores
        else "Nothing one level down is Zarr either. Check that this is the store's root."
    )
    raise NotAZarrStoreError(
        f"No Zarr data at {where}: it exists but holds neither zarr.json nor .zgroup/.zarray. "
        + hint
    )


def _refuse_n5(store: Store, path: str, where: str) -> None:
    """Name an N5 container (``attributes.json`` with ``"n5": "2.x"`` at its root) as such."""
    with storage_errors(where):
        raw = read_keys(store, [join_key(path, "attributes.json")])
    doc, _ = parse_document(next(iter(raw.values())))
    if not (isinstance(doc, dict) and "n5" in doc):
        return
    raise NotAZarrStoreError(
        f"{where} is an N5 container (attributes.json says n5 {doc['n5']!r}), not a Zarr store: "
        "zarr-python 3 and zarr-dask-utils read only Zarr formats 2 and 3. Open it with "
        "zarr-python 2's N5Store / N5FSStore, z5py or tensorstore, or convert it to Zarr "
        "first (e.g. read it with one of those and write with zarr.create_array / "
        "xarray.Dataset.to_zarr), then run zdu on the copy."
    )
