"""``OpLogStore``: an independent witness of store operations, across processes.

Every operation appends one line (``op<TAB>key``) to a log file with a single ``O_APPEND``
write, which POSIX keeps whole even when several worker processes append at once.  Tests use it
to check that :class:`~zarr_dask_utils.ZarrDebugger` counts exactly what the store served.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zarr.abc.store import ByteRequest, Store
from zarr.storage import WrapperStore

if TYPE_CHECKING:
    from zarr.core.buffer import Buffer, BufferPrototype

__all__ = ["OpLogStore", "read_oplog"]


class OpLogStore(WrapperStore[Store]):
    """Wrap *store*; log each operation to *log_path* (picklable: workers log too).

    Parameters
    ----------
    store
        The store whose operations are logged.
    log_path
        File the lines are appended to (created if missing); ``None`` logs nothing (zarr's
        ``WrapperStore.open`` builds wrappers without it).
    """

    def __init__(self, store: Store, log_path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(store)
        self.log_path = None if log_path is None else str(log_path)

    def _with_store(self, store: Store) -> OpLogStore:
        return type(self)(store, self.log_path)

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self._store, "log_path": self.log_path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._store = state["store"]
        self.log_path = state["log_path"]

    def _log(self, op: str, key: str) -> None:
        if self.log_path is None:
            return
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{op}\t{key}\n".encode())
        finally:
            os.close(fd)

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Log ``get``."""
        self._log("get", key)
        return await self._store.get(key, prototype, byte_range)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        """Log one ``get`` per range."""
        ranges = list(key_ranges)
        for key, _ in ranges:
            self._log("get", key)
        return await self._store.get_partial_values(prototype, ranges)

    async def getsize(self, key: str) -> int:
        """Log ``getsize`` (forwarded: zarr's default would log a whole ``get``)."""
        self._log("getsize", key)
        return await self._store.getsize(key)

    async def exists(self, key: str) -> bool:
        """Log ``exists``."""
        self._log("exists", key)
        return await self._store.exists(key)

    async def set(self, key: str, value: Buffer) -> None:
        """Log ``set``."""
        self._log("set", key)
        await self._store.set(key, value)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        """Log ``set_if_not_exists``."""
        self._log("set_if_not_exists", key)
        await self._store.set_if_not_exists(key, value)

    async def delete(self, key: str) -> None:
        """Log ``delete``."""
        self._log("delete", key)
        await self._store.delete(key)

    def list(self) -> AsyncIterator[str]:
        """Log ``list``."""
        self._log("list", "")
        return self._store.list()

    def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        """Log ``list_prefix``."""
        self._log("list_prefix", prefix)
        return self._store.list_prefix(prefix)

    def list_dir(self, prefix: str) -> AsyncIterator[str]:
        """Log ``list_dir``."""
        self._log("list_dir", prefix)
        return self._store.list_dir(prefix)


def read_oplog(log_path: str | os.PathLike[str]) -> Counter[tuple[str, str]]:
    """Count the ``(op, key)`` pairs logged in *log_path* (empty when nothing was logged)."""
    path = Path(log_path)
    if not path.exists():
        return Counter()
    lines = path.read_text().splitlines()
    return Counter(tuple(line.split("\t", 1)) for line in lines)  # type: ignore[misc]
