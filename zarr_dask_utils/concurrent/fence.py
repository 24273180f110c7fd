"""Fencing: write a storage key only if it is unchanged since it was read.

A lease-based lock can be lost by a holder that stalls; the next holder then works at the same
time.  A *fence* closes that gap: the generation token of a key is read together with the key,
and the write is made conditional on the token being unchanged.

=============  ==========================================  =====================================
store          generation token                            conditional write
=============  ==========================================  =====================================
S3 (s3fs)      the object's ``ETag`` (``HEAD``)             ``PutObject`` with ``If-Match`` (or
                                                           ``If-None-Match: *`` for a new key):
                                                           atomic on the server
local disk     ``inode:size:mtime_ns`` of the file          compare, then zarr's ``LocalStore``
               (zarr writes a temporary file and renames   writes a temporary file and renames
               it, so every write makes a new inode)       it: a window of microseconds
                                                           between compare and rename remains
other fsspec   ``ETag`` or ``size`` + ``mtime`` from        compare, then write (same window)
               ``fs.info``
other stores   none (memory, zip): writes are not fenced   plain write
=============  ==========================================  =====================================
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from zarr.abc.store import Store
from zarr.core.buffer import Buffer
from zarr.storage import FsspecStore, LocalStore, WrapperStore

from zarr_dask_utils._core.errors import ConcurrentModificationError

__all__ = ["UNFENCED", "Fence", "innermost_store"]

#: Token of stores that cannot be fenced: always equal to itself.
UNFENCED = "unfenced"

# Above this size s3fs uploads in parts, and parts cannot carry If-Match.
_MULTIPART = 100 * 2**20


def innermost_store(store: Store) -> Store:
    """The innermost store below zarr `WrapperStore` layers."""
    while isinstance(store, WrapperStore):
        store = store._store
    return store


def _precondition_failed(err: BaseException) -> bool:
    """Whether s3fs's error is S3's 412 Precondition Failed (If-Match / If-None-Match)."""
    if isinstance(err, FileExistsError):  # s3fs's mapping for If-None-Match
        return True
    response = getattr(err.__cause__, "response", None) or {}
    return bool(response.get("Error", {}).get("Code") == "PreconditionFailed")


def _stat_token(path: str) -> str | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


class Fence:
    """Generation tokens and conditional writes for the keys of one store.

    Parameters
    ----------
    store
        The store written through (wrappers are unwrapped to find the backend).
    where
        Display name of the store for error messages (no credentials).
    """

    def __init__(self, store: Store, where: str = "") -> None:
        self.store = store
        self.where = where
        inner = innermost_store(store)
        self._inner = inner
        if isinstance(inner, LocalStore):
            self.kind = "local"
        elif isinstance(inner, FsspecStore):
            protocol = inner.fs.protocol
            protocols = {protocol} if isinstance(protocol, str) else set(protocol)
            self.kind = "s3" if protocols & {"s3", "s3a"} else "fsspec"
        else:
            self.kind = "none"

    @property
    def atomic(self) -> bool:
        """Whether the compare and the write are one server-side step (S3 ``If-Match``)."""
        return self.kind == "s3"

    def _path(self, key: str) -> str:
        inner: Any = self._inner
        if self.kind == "local":
            return os.path.join(str(inner.root), key)
        return f"{inner.path.rstrip('/')}/{key}" if inner.path else key

    async def token(self, key: str) -> str | None:
        """The generation token of *key*: ``None`` when absent, :data:`UNFENCED` if unknown."""
        if self.kind == "none":
            return UNFENCED
        path = self._path(key)
        if self.kind == "local":
            return await asyncio.to_thread(_stat_token, path)
        fs: Any = self._inner.fs  # type: ignore[attr-defined]
        try:
            info = await fs._info(path, refresh=True) if self.kind == "s3" else await fs._info(path)
        except FileNotFoundError:
            return None
        if info.get("type") == "directory":
            return None
        etag = info.get("ETag") or info.get("etag")
        if etag:
            return str(etag).strip('"')
        stamp = info.get("mtime") or info.get("LastModified") or info.get("created")
        return f"{info.get('size')}:{stamp}"

    def _conflict(
        self, key: str, expected: str | None, found: str | None
    ) -> ConcurrentModificationError:
        where = f"{self.where.rstrip('/')}/{key}" if self.where else key
        return ConcurrentModificationError(
            f"The storage key {where!r} changed between this writer's read and its write "
            f"(generation {expected!r} when read, {found!r} now): another writer wrote it in "
            "between, so writing now would silently drop that update. This happens when a "
            "lock's lease expired under a stalled holder, or when a writer bypasses the locks. "
            "The write was not made; retry the read-modify-write (synchronized_write retries "
            "on its own up to zarr-dask-utils.concurrent.max-retries times)."
        )

    async def set(self, key: str, value: Buffer, expected: str | None) -> None:
        """Write *value* to *key* only if its token still equals *expected*.

        Raises
        ------
        ConcurrentModificationError
            The key changed since *expected* was read; nothing was written.
        """
        if self.kind == "s3" and len(value) < _MULTIPART:
            match = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
            fs: Any = self._inner.fs  # type: ignore[attr-defined]
            self.store._check_writable()
            try:
                await fs._pipe_file(self._path(key), value.to_bytes(), **match)
            except OSError as err:
                if not _precondition_failed(err):
                    raise
                raise self._conflict(key, expected, await self.token(key)) from err
            return
        if expected != UNFENCED:
            found = await self.token(key)
            if found != expected:
                raise self._conflict(key, expected, found)
        await self.store.set(key, value)

    async def delete(self, key: str, expected: str | None) -> None:
        """Delete *key* only if its token still equals *expected* (compare, then delete)."""
        if expected != UNFENCED:
            found = await self.token(key)
            if found != expected:
                raise self._conflict(key, expected, found)
        await self.store.delete(key)
