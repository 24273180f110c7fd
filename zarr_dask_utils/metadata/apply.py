"""Write metadata documents safely: back up what is replaced, then write each key atomically.

Each single-key write is atomic in zarr's stores (local files are written to a temporary
name and renamed; an object store PUT replaces the object whole).  Backups go outside the
hierarchy (``<store>.zdu-backups/<time>-<random>/`` beside it, or ``backup_dir``; see
:mod:`zarr_dask_utils._core.storage.backups`), one folder per run, written before anything is
replaced, so an interrupted run leaves either the old document or the new one, and a copy of
the old one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import ReadOnlyStoreError
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.storage.backups import backup_place
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.storeio import storage_errors, write_keys

__all__ = ["backup_folder", "replace_documents"]


def backup_folder() -> str:
    """A fresh in-store backup folder name (legacy): ``<backup-prefix>/<UTC time>-<random>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{get_option('metadata.backup-prefix')}/{stamp}-{uuid.uuid4().hex[:6]}"


def replace_documents(
    location: Location,
    writes: Sequence[tuple[str, bytes]],
    old: Mapping[str, bytes | None],
    *,
    backup: bool = True,
    backup_dir: str | os.PathLike[str] | None = None,
) -> tuple[list[str], list[str]]:
    """Back up the documents *writes* replace, then write them in order.

    Parameters
    ----------
    location
        A writable location.
    writes
        ``(key, content)`` pairs, keys relative to the location's node path, in the order to
        write (the switch-over document, e.g. consolidated metadata, last).
    old
        Current content of the keys (``None`` when absent), as read before.
    backup
        Copy the documents replaced first (default).  ``False`` only for documents the
        caller itself wrote moments before (nobody else's data is replaced).
    backup_dir
        Folder or URL for the backups (default: ``zarr-dask-utils.metadata.backup-dir``, else
        ``<store>.zdu-backups`` beside the store); it must lie outside the store.

    Returns
    -------
    written, backups
        Keys written (relative to the node path) and the addresses of the backups created
        (credential-free, as reports show them).
    """
    if location.kind == "zip":
        raise ReadOnlyStoreError(
            f"{location.display} is a zip file: its members cannot be replaced in place. Extract "
            "it (unzip), repair the folder, and zip it again."
        )
    backups = {
        join_key(location.path, key): content
        for key, _ in writes
        if backup and (content := old.get(key)) is not None
    }
    shown: list[str] = []
    with storage_errors(location.display):
        if backups:
            place = backup_place(location, backup_dir)
            write_keys(place.store, {place.key(k): v for k, v in backups.items()})
            shown = [place.where(k) for k in backups]
        store = location.open_store()
        for key, content in writes:
            write_keys(store, {join_key(location.path, key): content})
    return [k for k, _ in writes], shown
