"""Large objects to local files in ranged GETs: many requests in flight, bounded memory.

A few large objects would otherwise keep only a few requests in flight (one per object),
far from what the latency rig (or a real object store) needs to fill its link.  An object
larger than ``part_bytes`` going to a plain :class:`zarr.storage.LocalStore` is read as
``ceil(size / part_bytes)`` ranged GETs, all subject to the task's request and byte limits,
each written at its offset into a temporary ``<key>.<uuid>.partial`` file as it lands (zarr's
own temp-file name, which a resumed download clears) that replaces the target file in one
atomic rename once every part is in.

What is checked, per part: the part has the requested length, and (with ``verify``, as for
whole objects) what was written at its offset is read back from the file and compared byte for
byte with the bytes received.  The
whole object is hashed once, in order (a part waits for the parts before it to be hashed,
holding its bytes and its share of the byte budget): that hash goes into the resume record.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Any

import numpy as np
from zarr.abc.store import RangeByteRequest, Store
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import LocalStore

__all__ = ["buffer_view", "copy_ranged", "hold_now", "ranged_parts", "supports_ranged"]


def ranged_parts(size: int, part_bytes: int) -> list[tuple[int, int]]:
    """``(offset, length)`` of the parts of an object of *size* bytes (one part if small).

    Examples
    --------
    >>> ranged_parts(10, 4)
    [(0, 4), (4, 4), (8, 2)]
    >>> ranged_parts(3, 4)
    [(0, 3)]
    """
    step = max(1, part_bytes)
    return [(off, min(step, size - off)) for off in range(0, max(size, 1), step)]


def supports_ranged(dst_store: Store) -> bool:
    """Whether objects can be written to *dst_store* at offsets (a plain local folder)."""
    return type(dst_store) is LocalStore


def buffer_view(buf: Any) -> memoryview:
    """The bytes of a zarr CPU ``Buffer``, without a copy."""
    return memoryview(buf.as_buffer_like()).cast("B")


async def hold_now(
    hold: Callable[[int], AbstractAsyncContextManager[Any]], nbytes: int
) -> AsyncExitStack:
    """Take *nbytes* of a byte budget now, for a task started next to give back when done.

    Awaiting this part by part, in order, gives the budget to parts in that order (no part
    waits for budget behind a later one), while each part's task releases its own share:
    ``async with held:`` in the task, or ``await held.aclose()`` (idempotent) if the task
    never ran.

    Parameters
    ----------
    hold
        The budget: ``hold(n)`` is an async context manager holding *n* bytes.
    nbytes
        Bytes to take.

    Returns
    -------
    contextlib.AsyncExitStack
        Holding the bytes until it is closed.
    """
    held = AsyncExitStack()
    await held.enter_async_context(hold(nbytes))
    return held


def _write_and_check(fd: int, data: memoryview, offset: int, verify: bool) -> bool:
    """Write *data* at *offset* of the open file *fd*; with *verify*, read it back and compare."""
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)
    if not verify:
        return True
    back = os.pread(fd, len(data), offset)
    # numpy compares at memory speed (a memoryview compares item by item, ~10x slower)
    return len(back) == len(data) and bool(
        np.array_equal(np.frombuffer(back, dtype=np.uint8), np.frombuffer(data, dtype=np.uint8))
    )


async def copy_ranged(
    src_store: Store,
    src_key: str,
    dst_root: Path,
    dst_key: str,
    size: int,
    *,
    part_bytes: int,
    algorithm: str,
    hold: Callable[[int], AbstractAsyncContextManager[Any]],
    limit: asyncio.Semaphore,
    verify: bool = True,
) -> tuple[int, str | None, bool]:
    """Copy one object in ranged GETs into the file *dst_key* under *dst_root*.

    Parameters
    ----------
    hold
        The task's byte budget: ``hold(n)`` is an async context manager holding *n* bytes.
    limit
        The task's requests in flight.
    verify
        Read each part back from the file and compare it with the bytes received.

    Returns
    -------
    tuple
        ``(bytes copied, hash, verified)``; hash ``None``: the object vanished (bytes 0) or
        changed size on the source (bytes 1); nothing replaces the target file then.
    """
    prototype = default_buffer_prototype()
    path = dst_root / dst_key
    tmp = Path(f"{path}.{uuid.uuid4().hex}.partial")
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    fd = await asyncio.to_thread(os.open, tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    hasher = hashlib.new(algorithm)
    parts = ranged_parts(size, part_bytes)
    turns = [asyncio.Event() for _ in range(len(parts) + 1)]
    turns[0].set()
    state = {"ok": True, "gone": False, "resized": False}

    async def one(i: int, offset: int, length: int, held: AsyncExitStack) -> None:
        async with held:  # this part's share of the byte budget, given back when it is done
            try:
                async with limit:
                    buf = await src_store.get(
                        src_key,
                        prototype=prototype,
                        byte_range=RangeByteRequest(offset, offset + length),
                    )
                if buf is None or len(buf) != length:
                    state["gone" if buf is None else "resized"] = True
                    return
                view = buffer_view(buf)
                if not await asyncio.to_thread(_write_and_check, fd, view, offset, verify):
                    state["ok"] = False
                await turns[i].wait()
                await asyncio.to_thread(hasher.update, view)
            finally:
                turns[i + 1].set()

    tasks: list[asyncio.Task[None]] = []
    shares: list[AsyncExitStack] = []
    try:
        for i, (offset, length) in enumerate(parts):
            # parts take budget in order: no part waits for budget behind a later one
            shares.append(await hold_now(hold, length))
            tasks.append(asyncio.ensure_future(one(i, offset, length, shares[-1])))
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for share in shares:  # a task cancelled before it ran never gave its share back
            await share.aclose()
        await asyncio.to_thread(os.close, fd)
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
        raise
    await asyncio.to_thread(os.close, fd)
    if state["gone"] or state["resized"]:
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
        return (0 if state["gone"] else 1), None, False
    await asyncio.to_thread(os.replace, tmp, path)
    return size, hasher.hexdigest(), bool(state["ok"])
