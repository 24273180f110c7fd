"""List a store with the size of every object, in one pass where the backend allows it.

Local directories are walked with ``os.scandir`` (sizes come with the listing), fsspec
stores (S3, GCS, …) use one recursive ``find(detail=True)``, and any other zarr store falls
back to its key listing plus concurrent ``getsize`` calls.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from zarr.abc.store import Store
from zarr.core.sync import sync
from zarr.storage import FsspecStore, LocalStore

from zarr_dask_utils._core.errors import StoreUnreadableError
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.storeio import concurrent_map, list_keys, storage_errors

__all__ = ["KeyListing", "list_sizes", "list_sizes_task", "unreadable_error", "walk_local"]


def _reason(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "a symbolic link loop: the link leads back to itself"
    if err.errno == errno.ENOENT:
        return "a broken symbolic link: its target does not exist"
    return f"{type(err).__name__}: {err.strerror or err}"


#: Folders with at least this many entries are opened once and their files ``stat``-ed relative
#: to that descriptor (``fstatat``) instead of resolving each file's whole path again.
_STAT_AT_FROM = 8
_BY_FD = os.stat in os.supports_dir_fd and os.open in os.supports_dir_fd
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def _walk(
    folder: str,
    rel_folder: str,
    out: dict[str, int],
    unreadable: dict[str, str],
    open_names: frozenset[str],
) -> None:
    """List *folder* (a path) whose key prefix is *rel_folder* (``""`` or ending with ``/``).

    Keys are built from the prefix by string concatenation: ``Path.relative_to`` per entry
    took 40 % of a listing of 4,096 chunk files (benchmarks/README.md, deep scan section).
    In a folder of many files, ``stat`` relative to the open folder: 3.9 to 6.0 → 3.0 to 3.7
    CPU µs a file (benchmarks/README.md, listing and inventory section); a folder of one or
    two chunk files (``c/i/j/0``) would pay more for opening it than it saves.
    """
    try:
        with os.scandir(folder) as scan:
            entries = list(scan)
    except OSError as err:
        unreadable[rel_folder or "./"] = _reason(err)
        return
    fd = _open_folder(folder) if len(entries) >= _STAT_AT_FROM else None
    try:
        for entry in entries:
            name = entry.name
            rel = rel_folder + name
            try:
                if entry.is_dir(follow_symlinks=False):
                    _walk(entry.path, rel + "/", out, unreadable, open_names)
                    continue
                # follows a symbolic link, as zarr's LocalStore does
                info = entry.stat() if fd is None else os.stat(name, dir_fd=fd)
                if name in open_names and stat.S_ISREG(info.st_mode):
                    with open(entry.path, "rb"):  # readable by this user? (permissions)
                        pass
            except OSError as err:
                unreadable[rel] = _reason(err)
                continue
            if stat.S_ISREG(info.st_mode):
                out[rel] = info.st_size
    finally:
        if fd is not None:
            os.close(fd)


def _open_folder(folder: str) -> int | None:
    """A descriptor of *folder* to ``stat`` its files relative to (``None``: by path)."""
    if not _BY_FD:
        return None
    try:
        return os.open(folder, _DIR_FLAGS)
    except OSError:
        return None


def walk_local(
    base: Path, prefix: str = "", *, open_names: Iterable[str] = ()
) -> tuple[dict[str, int], dict[str, str]]:
    """Every file below *base*/*prefix* with its size, and every entry that could not be read.

    Unlike ``Path.rglob`` (zarr's ``LocalStore.list``), nothing is skipped silently: a folder
    that cannot be listed (permissions), a symbolic link loop or a broken link is returned
    with its reason.  Links to folders are not followed (as in zarr's listing), so a link
    pointing to a parent folder cannot make the walk endless.

    Parameters
    ----------
    base
        The store's root folder; keys are relative to it (``/``-separated).
    prefix
        Node path to list below (``""``: the whole store).
    open_names
        File names (e.g. the metadata documents) that are also opened, so one this user may
        not read is reported as unreadable instead of failing a later read of the whole set.

    Returns
    -------
    sizes, unreadable
        ``{key: size}`` sorted by key, and ``{path: reason}`` (folders end with ``/``).
    """
    out: dict[str, int] = {}
    unreadable: dict[str, str] = {}
    start = base / prefix if prefix else base
    if start.is_dir():
        rel = start.relative_to(base).as_posix() + "/" if prefix else ""
        _walk(str(start), "" if rel == "./" else rel, out, unreadable, frozenset(open_names))
    return _sorted(out), unreadable


def _sorted(sizes: dict[str, int]) -> dict[str, int]:
    """*sizes* in key order (sorting the keys alone: no tuple per item)."""
    return {key: sizes[key] for key in sorted(sizes)}


class KeyListing(list[str]):
    """A sorted list of keys that also says which paths could not be listed (``unreadable``).

    A plain ``list`` everywhere it is used as one (it pickles with its attribute), so tasks
    that take a listing need not change; ``unreadable`` maps a store-relative path (folders
    end with ``/``) to the reason.  ``excluded`` counts the keys left out on purpose (the
    legacy in-store backups under ``zarr-dask-utils.metadata.backup-prefix``).
    """

    unreadable: dict[str, str]
    excluded: int

    def __init__(
        self,
        keys: Iterable[str] = (),
        unreadable: Mapping[str, str] | None = None,
        excluded: int = 0,
    ):
        super().__init__(keys)
        self.unreadable = dict(unreadable or {})
        self.excluded = excluded


def unreadable_error(where: str, unreadable: Mapping[str, str]) -> StoreUnreadableError:
    """The error naming what a listing of *where* could not read (first few paths)."""
    first = list(unreadable.items())[:3]
    shown = "; ".join(f"{where.rstrip('/')}/{p.rstrip('/')}: {r}" for p, r in first)
    more = f" (and {len(unreadable) - 3} more)" if len(unreadable) > 3 else ""
    return StoreUnreadableError(
        f"Cannot read everything inside {where}: {shown}{more}. Fix the permissions or the "
        "symbolic link (or move that entry out of the store), then run again "
        "(`zdu validate` lists every such path)."
    )


def list_sizes(store: Store, prefix: str = "", *, concurrency: int = 64) -> dict[str, int]:
    """Every key under *prefix* with its size in bytes, sorted by key.

    Parameters
    ----------
    store
        Any zarr store.
    prefix
        Node path to list below (``""``: the whole store); keys stay relative to the store.
    concurrency
        ``getsize`` requests in flight for stores that cannot list sizes.

    Raises
    ------
    StoreUnreadableError
        A local folder cannot be listed, or a symbolic link loops or is broken.
    """
    prefix = prefix.strip("/")
    out: dict[str, int] = {}
    if isinstance(store, LocalStore):
        out, unreadable = walk_local(Path(store.root), prefix)
        if unreadable:
            raise unreadable_error(str(store.root), unreadable)
        return out  # sorted already
    if isinstance(store, FsspecStore):
        store.fs.invalidate_cache()
        root = f"{store.path}/{prefix}" if prefix else store.path
        found = sync(store.fs._find(root, detail=True, withdirs=False))
        strip = store.path.rstrip("/") + "/"
        for path, info in found.items():
            if info.get("type", "file") != "directory":
                out[path.removeprefix(strip)] = int(info.get("size") or 0)
    else:
        keys = list_keys(store, prefix)
        sizes = sync(concurrent_map([(k,) for k in keys], store.getsize, limit=concurrency))
        out = dict(zip(keys, (int(s) for s in sizes), strict=True))
    return _sorted(out)


def list_sizes_task(location: Location) -> dict[str, int]:
    """Worker task: ``{key: size}`` below the location's node path (keys relative to it)."""
    with storage_errors(location.display):
        sizes = list_sizes(location.open_store(), location.path)
    strip = location.path.strip("/")
    if strip:
        sizes = {k[len(strip) + 1 :]: v for k, v in sizes.items() if k.startswith(strip + "/")}
    return sizes
