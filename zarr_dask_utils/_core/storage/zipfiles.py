"""Zip files as stores: opened read-only, one handle per process, nodes addressed inside them.

zarr-python 3's ``ZipStore`` must be *opened* before use (its lock and ``ZipFile`` handle are
made then); a store object that was only constructed fails with ``AttributeError: _lock``.
Locations of zip files are path-based, so each Dask worker process opens its own read handle
(a ``ZipFile`` cannot be shared between processes).  zarr-dask-utils never writes into a zip:
a member cannot be replaced in place, and worker processes cannot share one zip writer.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from zarr.abc.store import Store
from zarr.core.sync import sync
from zarr.storage import WrapperStore, ZipStore

from zarr_dask_utils._core.errors import (
    InvalidOptionError,
    StoreNotFoundError,
    StoreUnreadableError,
)

__all__ = [
    "ensure_zip_open",
    "file_version",
    "inside_zip",
    "open_zip",
    "refuse_writable_wrapped_zip",
]


def file_version(path: str) -> tuple[int, int, int] | None:
    """Identity of a file's current content (inode, size, mtime), ``None`` when missing.

    Part of the per-process store cache key, so a zip rewritten since is reopened (a
    ``ZipFile`` reads the archive's index once, when it is opened).
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def open_zip(path: str, display: str) -> Store:
    """Open the zip file at *path* read-only (*display* names it in messages).

    Raises
    ------
    StoreNotFoundError
        The file does not exist.
    StoreUnreadableError
        It is not a readable zip (damaged, or still being written by an open ``ZipStore``).
    """
    try:
        return sync(ZipStore.open(path, mode="r", read_only=True))
    except FileNotFoundError as err:
        raise StoreNotFoundError(
            f"No Zarr store at {display}: the zip file does not exist. Check the path."
        ) from err
    except (zipfile.BadZipFile, OSError) as err:
        raise StoreUnreadableError(
            f"{display} cannot be read as a zip file ({type(err).__name__}: {err}). If a "
            "zarr ZipStore is still writing it, close that store first (a zip file's index is "
            "written when it is closed); otherwise the file is damaged or not a zip."
        ) from err


def ensure_zip_open(store: Store | None) -> None:
    """Open *store* if it is a ``ZipStore`` given unopened (e.g. inside a wrapper store)."""
    if isinstance(store, ZipStore):
        sync(store._ensure_open())


def inside_zip(path: str) -> tuple[str, str] | None:
    """``(zip file, node path)`` for ``…/data.zip/group/array``, a node inside a zip file.

    Examples
    --------
    >>> inside_zip("/data/plain.zarr/a") is None
    True
    """
    if ".zip/" not in path.lower():
        return None
    candidate = Path(path)
    for parent in candidate.parents:
        if parent.name.lower().endswith(".zip") and parent.is_file():
            return str(parent), candidate.relative_to(parent).as_posix()
    return None


def refuse_writable_wrapped_zip(store: Store, display: str) -> None:
    """Refuse a wrapper store (``LoggingStore``, …) around a ``ZipStore`` open for writing.

    A bare ``ZipStore`` becomes a path-based location that every worker reopens read-only;
    a wrapper cannot be taken apart that way, so it is pickled to the workers as it is, and
    unpickling a ``ZipStore`` reopens its file in its own mode: ``"w"`` would truncate the zip
    in every worker process, ``"a"`` would let several processes append to it at once.  A
    wrapper around a read-only ``ZipStore`` (mode ``"r"``) is safe: each worker opens its own
    read handle.

    Raises
    ------
    InvalidOptionError
        The innermost store is a ``ZipStore`` opened for writing.
    """
    inner: Store = store
    while isinstance(inner, WrapperStore):
        inner = inner._store
    if inner is store or not isinstance(inner, ZipStore):
        return
    mode = getattr(inner, "_zmode", "r")
    if mode == "r" and inner.read_only:
        return
    raise InvalidOptionError(
        f"{display} wraps a zarr ZipStore on {inner.path!r} opened for writing (mode "
        f"{mode!r}). zarr-dask-utils runs on Dask worker processes, each of which would reopen "
        "that zip in the same mode (mode 'w' truncates the file), and it never writes into "
        "zip files. Wrap a read-only store instead (ZipStore(path, mode='r')), or close the "
        "writing store and pass the zip's path."
    )
