"""Force write races deterministically, for tests of concurrent writers.

:class:`RaceStore` is a zarr ``WrapperStore`` that acts right after each full read of a data
key (the "read" half of zarr's read-modify-write of a partial chunk or shard):

``barrier``
    wait until *parties* writers have read the same key (a file barrier in a shared directory),
    so every writer reads the old value before any writes: without locks, all but one update
    of every shared key is lost, deterministically;
``pause``
    sleep *seconds* (widens the read→write window);
``hold``
    write a marker file holding this process id, then wait for ever (for kill tests);
``interfere``
    once, write *payload* to the key behind the writer's back (a second writer that got the
    lock after a lease expired): a fenced write must notice.

The module-level ``write_*`` functions are tasks for worker processes.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore

__all__ = [
    "RaceStore",
    "add_block_in_place",
    "open_on",
    "write_plain",
    "write_safe_store",
    "write_synchronized",
]

_METADATA = ("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata")


class RaceStore(WrapperStore[Store]):
    """Wrap *store* and act after every full read of a data key (see module docstring).

    Parameters
    ----------
    store
        The real store.
    action
        ``"barrier"``, ``"pause"``, ``"hold"`` or ``"interfere"``.
    directory
        Shared directory for barrier arrivals and hold markers.
    parties
        Writers the barrier waits for.
    seconds
        Pause length, or the barrier's give-up time.
    payload
        Bytes written by ``"interfere"``.
    """

    def __init__(
        self,
        store: Store,
        *,
        action: str = "pause",
        directory: str = "",
        parties: int = 1,
        seconds: float = 60.0,
        payload: bytes = b"",
    ) -> None:
        super().__init__(store)
        self.action = action
        self.directory = directory
        self.parties = parties
        self.seconds = seconds
        self.payload = payload
        self.me = uuid.uuid4().hex
        self.interfered = False

    def _with_store(self, store: Store) -> RaceStore:
        return type(self)(
            store,
            action=self.action,
            directory=self.directory,
            parties=self.parties,
            seconds=self.seconds,
            payload=self.payload,
        )

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Read, then act (only for full reads of data keys)."""
        value = await self._store.get(key, prototype, byte_range)
        if byte_range is None and not key.rsplit("/", 1)[-1].startswith(_METADATA):
            await self._act(key, prototype)
        return value

    async def _act(self, key: str, prototype: BufferPrototype) -> None:
        if self.action == "pause":
            await asyncio.sleep(self.seconds)
        elif self.action == "barrier":
            await asyncio.to_thread(self._barrier, key)
        elif self.action == "hold":
            marker = Path(self.directory) / "holding"
            if marker.exists():  # one-shot: a re-run after the kill proceeds normally
                return
            marker.write_text(str(os.getpid()))
            while True:  # until the process is killed
                await asyncio.sleep(0.1)
        elif self.action == "interfere" and not self.interfered:
            self.interfered = True
            await self._store.set(key, prototype.buffer.from_bytes(self.payload))

    def _barrier(self, key: str) -> None:
        folder = Path(self.directory) / key.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / self.me).touch()
        deadline = time.monotonic() + self.seconds
        while len(list(folder.iterdir())) < self.parties:
            if time.monotonic() > deadline:
                raise TimeoutError(f"barrier for {key!r} did not fill ({self.parties} parties)")
            time.sleep(0.01)


def open_on(array: zarr.Array[Any], store: Store) -> zarr.Array[Any]:
    """Reopen *array* (same metadata and path) on another store object, e.g. a wrapper."""
    return zarr.open_array(store, path=array.path, mode="r+")


def write_plain(
    array: zarr.Array[Any], region: tuple[slice, ...], value: float, race: dict[str, Any]
) -> int:
    """Task: unprotected ``array[region] = value`` through a :class:`RaceStore`."""
    target = open_on(array, RaceStore(array.store_path.store, **race))
    target[region] = value
    return os.getpid()


def write_synchronized(
    array: zarr.Array[Any],
    regions: list[tuple[slice, ...]],
    value: float,
    race: dict[str, Any] | None = None,
    timeout: str | float | None = None,
) -> int:
    """Task: :func:`synchronized_write` of *value* into each region, in the given order."""
    from zarr_dask_utils.concurrent import synchronized_write

    target = open_on(array, RaceStore(array.store_path.store, **race)) if race else array
    attempts = 0
    for region in regions:
        data = np.full([s.stop - s.start for s in region], value, dtype=array.dtype)
        attempts += synchronized_write(target, region, data, timeout=timeout).attempts
    return attempts


def write_safe_store(
    array: zarr.Array[Any],
    regions: list[tuple[slice, ...]],
    value: float,
    race: dict[str, Any] | None = None,
) -> int:
    """Task: partial writes through a :class:`SafeZarrStore` in ``writing()`` blocks."""
    from zarr_dask_utils.concurrent import SafeZarrStore

    inner = array.store_path.store
    safe = SafeZarrStore(RaceStore(inner, **race) if race else inner)
    target = open_on(array, safe)
    for region in regions:
        with safe.writing():  # locks each key on its first read (one key per region here)
            target[region] = value
    return os.getpid()


def add_block_in_place(block: np.ndarray, array: zarr.Array[Any], block_info: Any = None) -> Any:
    """``map_blocks`` function: write *block* + 1 to the same place of *array*, synchronized.

    Returns the number of storage keys it had to lock, as a 1-element array per block.
    """
    from zarr_dask_utils.concurrent import synchronized_write

    location = block_info[0]["array-location"]
    region = tuple(slice(lo, hi) for lo, hi in location)
    result = synchronized_write(array, region, block + 1)
    return np.full((1,) * block.ndim, len(result.locked))
