"""The disk tier of the cache: whole objects as files in a local folder, bounded in bytes.

Layout of a tier folder::

    <root>/.lock               held (flock) by the one process using the folder
    <root>/tmp/                files being written; renamed into objects/ when complete
    <root>/objects/ab/abcd…    one file per cached object, named by a SHA-256 of its key

Each file starts with a small header (magic, fetch time, namespace and key as JSON), so the
tier rebuilds its index from the folder after a restart, checks on every read that a file
holds the key asked for, and deletes files it cannot read.  Writes go to ``tmp/`` and are
renamed into place (atomic on POSIX): a crash leaves the old state or a complete file.  The
bound counts whole files, headers included; files are deleted least recently used first
(order kept in memory, and in file modification times across restarts).

One process owns a folder at a time (an exclusive ``flock`` on ``.lock``): two processes
sharing one folder could not keep one bound.  Dask workers each get a subfolder (see
:func:`~zarr_dask_utils.cloud.caching.smart_caching`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from uuid import uuid4

from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils.cloud.cache_tiers import Entry, TierCounters, is_expired

try:  # POSIX only; elsewhere a folder is not protected against a second process
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["DiskTier", "disk_tier"]

_MAGIC = b"ZDUCACHE1\n"
_FIXED = struct.Struct(">dI")  # stored_at, header length


@dataclass(slots=True)
class _File:
    size: int
    stored_at: float


def _name(namespace: str, key: str) -> str:
    return hashlib.sha256(f"{namespace}\0{key}".encode()).hexdigest()


def _read_header(handle: IO[bytes]) -> tuple[float, str, str, int]:
    """Return (stored_at, namespace, key, header size) or raise ValueError."""
    if handle.read(len(_MAGIC)) != _MAGIC:
        raise ValueError("not a cache file")
    fixed = handle.read(_FIXED.size)
    if len(fixed) != _FIXED.size:
        raise ValueError("truncated header")
    stored_at, length = _FIXED.unpack(fixed)
    meta = json.loads(handle.read(length))
    return stored_at, meta["ns"], meta["key"], len(_MAGIC) + _FIXED.size + length


class DiskTier:
    """A byte-bounded LRU of files in *root*; thread-safe; one process per folder.

    Parameters
    ----------
    root
        The tier's folder (created if missing).
    max_bytes
        Bound on the total size of the cache files.

    Raises
    ------
    InvalidOptionError
        Another process uses the folder.
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.counters = TierCounters()
        self._files: OrderedDict[str, _File] = OrderedDict()
        self._keys: dict[str, tuple[str, str]] = {}  # file name -> (namespace, key)
        self._nbytes = 0
        self._lock = threading.Lock()
        (root / "objects").mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(exist_ok=True)
        self._lock_file = self._take_folder()
        self._load()

    # --- folder ownership and index ---------------------------------------------------------
    def _take_folder(self) -> IO[bytes] | None:
        handle = (self.root / ".lock").open("a+b")
        if fcntl is None:  # pragma: no cover - Windows
            return handle
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            handle.close()
            raise InvalidOptionError(
                f"The disk cache folder {str(self.root)!r} is in use by another process: one "
                "process at a time can keep a folder within its size bound. Give each process "
                "its own disk_cache folder (Dask workers get a subfolder each automatically), "
                "or stop the other process."
            ) from err
        return handle

    def _load(self) -> None:
        for stale in (self.root / "tmp").iterdir():  # writes a crash interrupted
            stale.unlink(missing_ok=True)
        found: list[tuple[float, str, _File, tuple[str, str]]] = []
        for path in (self.root / "objects").glob("*/*"):
            try:
                with path.open("rb") as handle:
                    stored_at, namespace, key, _ = _read_header(handle)
                stat = path.stat()
            except (OSError, ValueError, KeyError):
                path.unlink(missing_ok=True)
                continue
            found.append(
                (stat.st_mtime, path.name, _File(stat.st_size, stored_at), (namespace, key))
            )
        for _, name, info, owner in sorted(found):  # least recently used first
            self._files[name] = info
            self._keys[name] = owner
            self._nbytes += info.size
        with self._lock:
            self._evict_until(self.max_bytes)  # the bound may be smaller than last time

    def _path(self, name: str) -> Path:
        return self.root / "objects" / name[:2] / name

    @property
    def nbytes(self) -> int:
        """Bytes of cache files now (never more than ``max_bytes``)."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._files)

    # --- reads and writes -------------------------------------------------------------------
    def get(self, namespace: str, key: str, now: float, ttl: float | None) -> Entry | None:
        """Read the cached object for *key*, or ``None`` (absent, expired or unreadable)."""
        name = _name(namespace, key)
        with self._lock:
            info = self._files.get(name)
            if info is None:
                return None
            if is_expired(info.stored_at, now, ttl):
                self._remove(name)
                self.counters.expired += 1
                return None
            self._files.move_to_end(name)
        path = self._path(name)
        try:
            with path.open("rb") as handle:
                stored_at, ns, stored_key, _ = _read_header(handle)
                data = handle.read()
            os.utime(path)  # the LRU order survives a restart
        except (OSError, ValueError, KeyError):
            with self._lock:
                if name in self._files:
                    self._remove(name)
            return None
        if (ns, stored_key) != (namespace, key):  # pragma: no cover - a SHA-256 collision
            return None
        return Entry(data, stored_at)

    def put(self, namespace: str, key: str, entry: Entry, still_valid: Callable[[], bool]) -> bool:
        """Write *entry* for *key* unless *still_valid()* says a write made it stale meanwhile.

        The file is written in ``tmp/`` and renamed into place under the tier's lock, right
        after *still_valid* is checked, so an invalidation either comes first (no file) or
        removes the new file.  Returns whether the entry was stored.
        """
        if entry.data is None:  # absent keys are cached in memory only
            return False
        name = _name(namespace, key)
        meta = json.dumps({"ns": namespace, "key": key}).encode()
        header = _MAGIC + _FIXED.pack(entry.stored_at, len(meta)) + meta
        size = len(header) + len(entry.data)
        if size > self.max_bytes:
            return False
        tmp = self.root / "tmp" / uuid4().hex
        with tmp.open("wb") as handle:
            handle.write(header)
            handle.write(entry.data)
        with self._lock:
            if not still_valid():
                tmp.unlink(missing_ok=True)
                return False
            if name in self._files:
                self._remove(name)
            self._evict_until(self.max_bytes - size)
            target = self._path(name)
            target.parent.mkdir(exist_ok=True)
            os.replace(tmp, target)
            self._files[name] = _File(size, entry.stored_at)
            self._keys[name] = (namespace, key)
            self._nbytes += size
        return True

    def discard(self, namespace: str, key: str) -> bool:
        """Delete the file for *key*; return whether there was one."""
        name = _name(namespace, key)
        with self._lock:
            if name not in self._files:
                return False
            self._remove(name)
            return True

    def discard_prefix(self, namespace: str, prefix: str) -> int:
        """Delete the files of every key of *namespace* starting with *prefix*."""
        with self._lock:
            doomed = [
                name
                for name, (ns, key) in self._keys.items()
                if ns == namespace and key.startswith(prefix)
            ]
            for name in doomed:
                self._remove(name)
            return len(doomed)

    def resize(self, max_bytes: int) -> None:
        """Change the bound, deleting least recently used files if it shrank."""
        with self._lock:
            self.max_bytes = max_bytes
            self._evict_until(max_bytes)

    # --- under the lock ---------------------------------------------------------------------
    def _evict_until(self, limit: int) -> None:
        while self._files and self._nbytes > limit:
            name = next(iter(self._files))
            size = self._files[name].size
            self._remove(name)
            self.counters.evicted += 1
            self.counters.evicted_bytes += size

    def _remove(self, name: str) -> None:
        info = self._files.pop(name)
        self._keys.pop(name, None)
        self._nbytes -= info.size
        with contextlib.suppress(FileNotFoundError):
            self._path(name).unlink()


_TIERS: dict[str, DiskTier] = {}
_TIERS_LOCK = threading.Lock()


def disk_tier(root: str | os.PathLike[str], max_bytes: int) -> DiskTier:
    """The process's one :class:`DiskTier` for *root* (created on first use).

    Every cache of this process using the same folder shares the tier and its bound; the
    bound last asked for wins.
    """
    path = Path(root).expanduser().resolve()
    with _TIERS_LOCK:
        tier = _TIERS.get(str(path))
        if tier is None:
            tier = _TIERS[str(path)] = DiskTier(path, max_bytes)
        elif tier.max_bytes != max_bytes:
            tier.resize(max_bytes)
        return tier
