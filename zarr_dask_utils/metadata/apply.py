"""Write metadata documents safely: back up what is replaced, then write each key atomically.

Each single-key write is atomic in zarr's stores (local files are written to a temporary
name and renamed; an object store PUT replaces the object whole).  Backups go under
``zarr-dask-utils.metadata.backup-prefix`` inside the store, one folder per run, written
before anything is replaced, so an interrupted run leaves either the old document or the new
one, and a copy of the old one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import ReadOnlyStoreError
from zarr_dask_utils._core.locations import Location
from zarr_dask_utils._core.storeio import join_key, storage_errors, write_keys

__all__ = ["backup_folder", "replace_documents"]


def backup_folder() -> str:
    """A fresh backup folder name: ``<prefix>/<UTC time>-<random>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{get_option('metadata.backup-prefix')}/{stamp}-{uuid.uuid4().hex[:6]}"


def replace_documents(
    location: Location,
    writes: Sequence[tuple[str, bytes]],
    old: Mapping[str, bytes | None],
    *,
    backup: bool = True,
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

    Returns
    -------
    written, backups
        Keys written and backup keys created (both relative to the node path).
    """
    if location.kind == "zip":
        raise ReadOnlyStoreError(
            f"{location.display} is a zip file: its members cannot be replaced in place. Extract "
            "it (unzip), repair the folder, and zip it again."
        )
    folder = backup_folder()
    backups = {
        join_key(folder, key): content
        for key, _ in writes
        if backup and (content := old.get(key)) is not None
    }
    with storage_errors(location.display):
        store = location.open_store()
        if backups:
            write_keys(store, {join_key(location.path, k): v for k, v in backups.items()})
        for key, content in writes:
            write_keys(store, {join_key(location.path, key): content})
    return [k for k, _ in writes], list(backups)
