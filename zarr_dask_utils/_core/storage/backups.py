"""Where rewritten metadata documents are backed up: outside the hierarchy, by default beside it.

A backup inside the store (older versions used ``.zdu/backups``) is an object zarr-python does
not recognise ("Object at .zdu is not recognized as a component of a Zarr hierarchy"), so
backups go to a sibling location: ``<store>.zdu-backups/<UTC time>-<random>/<key>`` for a
local folder or an object-store prefix, or the folder/URL given as ``backup_dir`` /
``zarr-dask-utils.metadata.backup-dir``.  Stores that have no sibling (in-memory stores, store
objects of unknown kind) keep the old in-store prefix ``zarr-dask-utils.metadata.backup-prefix``,
which listings still skip (existing in-store backups are never reported as junk).
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore

from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.storage.canonical import refuse_overlap
from zarr_dask_utils._core.storage.locations import (
    Location,
    _unwrap,
    redact,
    resolve_location,
)

__all__ = ["SIBLING_SUFFIX", "BackupPlace", "backup_place"]

#: Suffix of the default backup location beside a store: ``data.zarr`` → ``data.zarr.zdu-backups``.
SIBLING_SUFFIX = ".zdu-backups"


@dataclass(frozen=True, slots=True)
class BackupPlace:
    """One run's backup folder: a store and a prefix in it, and how to show it.

    Attributes
    ----------
    store
        The writable zarr store the backups are written to.
    prefix
        Key prefix of this run's folder inside *store*.
    display
        Credential-free address of the folder, for reports.
    in_store
        ``True`` when the backups are inside the hierarchy (no sibling location exists).
    """

    store: Store
    prefix: str
    display: str
    in_store: bool

    def key(self, relative: str) -> str:
        """The store key of the backup of *relative* (a key relative to the store root)."""
        return join_key(self.prefix, relative)

    def where(self, relative: str) -> str:
        """The credential-free address of the backup of *relative*, for reports."""
        return f"{self.display.rstrip('/')}/{relative}"


def _stamp() -> str:
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def _sibling(location: Location) -> Location | None:
    """The default backup root beside *location*'s store, or ``None`` when there is none."""
    if location.kind == "local":
        return resolve_location(location.url + SIBLING_SUFFIX, read_only=False)
    if location.kind == "fsspec":
        proto, _, rest = location.url.partition("://")
        if proto in ("memory",) or "/" not in rest.strip("/"):
            return None  # in memory, or a bucket root: no sibling prefix in the same bucket
        return resolve_location(
            location.url + SIBLING_SUFFIX,
            storage_options=location.storage_options,
            read_only=False,
        )
    inner = _unwrap(location.store) if location.kind == "object" else None
    if isinstance(inner, LocalStore):
        return resolve_location(os.fspath(inner.root) + SIBLING_SUFFIX, read_only=False)
    if isinstance(inner, FsspecStore) and "/" in inner.path.strip("/"):
        protocol = inner.fs.protocol
        proto = protocol if isinstance(protocol, str) else protocol[0]
        if proto in ("memory",):
            return None
        store = FsspecStore(inner.fs, path=inner.path.rstrip("/") + SIBLING_SUFFIX)
        return resolve_location(store, read_only=False)
    return None


def backup_place(
    location: Location, backup_dir: str | os.PathLike[str] | None = None
) -> BackupPlace:
    """A fresh backup folder for documents of *location*'s store.

    Parameters
    ----------
    location
        The (writable) location whose documents are about to be replaced.
    backup_dir
        A folder or URL to keep backups in (default: ``zarr-dask-utils.metadata.backup-dir``,
        else ``<store>.zdu-backups`` beside the store).  URLs get the store's
        ``storage_options``.  It must lie outside the store.

    Raises
    ------
    OverlappingLocationsError
        When *backup_dir* lies inside the store (zarr would see the backups as junk).
    """
    chosen = get_option("metadata.backup-dir", backup_dir)
    root = dataclasses.replace(location, path="")
    stamp = _stamp()
    if chosen is not None:
        chosen = os.fspath(chosen)
        options = location.storage_options if "://" in chosen else None
        target = resolve_location(chosen, storage_options=options, read_only=False)
    else:
        sibling = _sibling(root)
        if sibling is None:
            prefix = f"{get_option('metadata.backup-prefix')}/{stamp}"
            return BackupPlace(root.open_store(), prefix, f"{root.display}/{prefix}", True)
        target = sibling
    refuse_overlap(root, target, what="backup directory", source_name="store")
    display = f"{redact(target.url)}/{stamp}" if target.kind != "object" else stamp
    if target.kind == "object" and isinstance(_unwrap(target.store), FsspecStore):
        display = f"{target.url}/{stamp}"
    return BackupPlace(target.open_store(), stamp, display, False)
