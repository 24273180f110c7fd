"""Serve a batch of samples by reading each chunk it needs once (per process).

:class:`VariableReader` opens its array lazily in the process that reads (so a reader shipped
to a forked, spawned or Dask worker opens its own store there: an S3 store opened in a parent
is bound to the parent's event loop), keeps the last decoded chunks in a small LRU cache (the
sampler's buffer of k chunks), and fetches the chunks a batch needs that are not cached in one
concurrent stream (:func:`~zarr_dask_utils._core.storage.objectstream.stream_objects`),
decoding them with the direct decoder integrity's deep scan uses; chains it does not take
(filters, transposes, ...) and chunks not stored are read by zarr itself.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.storage import FsspecStore

from zarr_dask_utils._core.decoding.block_reader import read_region, unreadable
from zarr_dask_utils._core.decoding.direct_decoder import DecodeFailure, DirectDecoder, direct_chain
from zarr_dask_utils._core.decoding.pipeline_decoder import grid_of, open_array
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.storage.locations import Location, _freeze, _unwrap
from zarr_dask_utils._core.storage.objectstream import stream_objects
from zarr_dask_utils._core.storage.storeio import storage_errors
from zarr_dask_utils.ml.patches import PatchPlan
from zarr_dask_utils.ml.source import VariableSpec

__all__ = ["VariableReader", "reader_for"]

_READERS: dict[tuple[Any, ...], VariableReader] = {}
_STORES: dict[tuple[Any, ...], Store] = {}
_PID = os.getpid()
_LOCK = threading.Lock()


def _forget_parent() -> None:
    """Drop stores and readers inherited from a parent process (fork)."""
    global _PID
    if os.getpid() != _PID:
        _READERS.clear()
        _STORES.clear()
        _PID = os.getpid()


def store_here(location: Location) -> Store:
    """The location's store, opened by this process (never one inherited across fork)."""
    with _LOCK:
        _forget_parent()
        key = (location.url, location.kind, _freeze(location.storage_options), location.path)
        store = _STORES.get(key)
        if store is None:
            store = _open_fresh(location)
            _STORES[key] = store
        return store


def _open_fresh(location: Location) -> Store:
    if location.kind in ("fsspec", "zip"):
        return location.open_store()  # the core's cache forgets a forked parent's stores
    inner = _unwrap(location.store)
    if location.kind == "object" and isinstance(inner, FsspecStore) and location.is_remote:
        fs = inner.fs
        proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        options = {k: v for k, v in fs.storage_options.items() if k != "asynchronous"}
        return FsspecStore.from_url(
            f"{proto}://{inner.path}", storage_options=options, read_only=True
        )
    return location.open_store()


def reader_for(location: Location, var: VariableSpec, cache_chunks: int) -> VariableReader:
    """Return this process's reader of *var* (shared by every dataset and task reading it)."""
    key = (location.url, location.kind, location.path, var.path, _freeze(location.storage_options))
    with _LOCK:
        _forget_parent()
        reader = _READERS.get(key)
        if reader is None:
            reader = _READERS[key] = VariableReader(location, var)
    reader.capacity = max(reader.capacity, cache_chunks)
    return reader


class VariableReader:
    """Read samples of one variable, each needed chunk decoded once, the last few kept.

    Parameters
    ----------
    location
        The hierarchy (or array) the variable lives in.
    var
        The variable.
    """

    def __init__(self, location: Location, var: VariableSpec) -> None:
        self.location = location
        self.var = var
        self.capacity = 1
        self.cache: OrderedDict[tuple[int, ...], np.ndarray[Any, Any]] = OrderedDict()
        self.reads = 0  # chunks fetched and decoded (for tests and reports)
        self._array: zarr.Array[Any] | None = None
        self._chain: Any = None
        self._grid: Any = None
        self._lock = threading.Lock()

    @property
    def array(self) -> zarr.Array[Any]:
        """The opened array."""
        with self._lock:
            return self._open()

    def _open(self) -> zarr.Array[Any]:
        if self._array is None:
            with storage_errors(self.location.display):
                store = store_here(self.location)
                self._array = open_array(
                    store, self.location.path, self.var.path, self.var.zarr_format
                )
            self._chain = direct_chain(self._array)
            self._grid = grid_of(self._array, "")
        return self._array

    def read(self, plan: PatchPlan, ids: Sequence[int], pad_value: Any = 0) -> np.ndarray[Any, Any]:
        """The samples *ids* of this variable, stacked (sample dimension first, then the rest)."""
        var = self.var
        t, starts = plan.locate(ids)
        axis = var.dims.index(plan.sample_dim)
        patch_len = dict(zip(plan.patch_dims, plan.sizes, strict=True))
        patch_start = dict(zip(plan.patch_dims, starts, strict=True))
        # per dimension (array order): window start and length per sample
        lo, length = [], []
        for dim, n in zip(var.dims, var.shape, strict=True):
            if dim == plan.sample_dim:
                lo.append(t)
                length.append(1)
            elif dim in patch_len:
                lo.append(patch_start[dim])
                length.append(patch_len[dim])
            else:
                lo.append(np.zeros(len(t), np.int64))
                length.append(n)
        out_shape = (len(t), *(m for d, m in enumerate(length) if d != axis))
        dtype = var.dtype.newbyteorder("=")
        padded = any(
            int((lo[d] + length[d]).max(initial=0)) > var.shape[d] for d in range(len(var.shape))
        )
        out = np.full(out_shape, pad_value, dtype) if padded else np.empty(out_shape, dtype)
        needed = self._chunks_needed(lo, length)
        self._assemble(out, self._fetch(needed), lo, length, axis)
        return out

    def _chunks_needed(self, lo: list[Any], length: list[int]) -> list[tuple[int, ...]]:
        var = self.var
        spans = []
        for d, (c, n) in enumerate(zip(var.chunks, var.shape, strict=True)):
            first = lo[d] // c
            last = (np.minimum(lo[d] + length[d], n) - 1) // c
            spans.append((first, last))
        needed: set[tuple[int, ...]] = set()
        for j in range(len(lo[0])):
            ranges = [range(int(f[j]), int(la[j]) + 1) for f, la in spans]
            needed.update(itertools.product(*ranges))
        return sorted(needed)

    def _fetch(self, needed: list[tuple[int, ...]]) -> dict[tuple[int, ...], np.ndarray[Any, Any]]:
        """The decoded chunks *needed*: cached ones, the others read now.

        Reads run outside the lock, so threads reading batches in parallel decode in parallel.
        """
        have = {}
        with self._lock:
            for c in needed:
                if c in self.cache:
                    self.cache.move_to_end(c)
                    have[c] = self.cache[c]
        missing = [c for c in needed if c not in have]
        decoded = self._decode(missing)
        with self._lock:
            for c, values in zip(missing, decoded, strict=True):
                have[c] = self.cache[c] = values
                self.reads += 1
            while len(self.cache) > max(self.capacity, 1):
                self.cache.popitem(last=False)
        return have

    def _region(self, c: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(
            slice(i * n, min((i + 1) * n, s))
            for i, n, s in zip(c, self.var.chunks, self.var.shape, strict=True)
        )

    def _decode(self, coords: list[tuple[int, ...]]) -> list[np.ndarray[Any, Any]]:
        """Fetch and decode chunks *coords* (the stored objects read concurrently)."""
        if not coords:
            return []
        array = self.array
        chain = self._chain
        where = self.location.display
        if chain is None:
            return [np.asarray(read_region(array, self._region(c), str(c), where)) for c in coords]
        names = [self._grid.key(c) for c in coords]
        keys = [join_key(array.store_path.path, k) for k in names]
        values = []
        with storage_errors(where):
            stream = stream_objects(array.store_path.store, keys, depth=8)
            for c, name, raw in zip(coords, names, stream, strict=True):
                if raw is None:  # not stored: zarr's fill value
                    values.append(np.asarray(array[self._region(c)]))
                    continue
                decoder = DirectDecoder(chain)  # its own buffer: the chunk is kept
                try:
                    values.append(decoder.values(decoder.decode(raw)))
                except DecodeFailure as failure:
                    raise unreadable(join_key(self.var.path, name), where, str(failure)) from None
        return values

    def _assemble(
        self,
        out: np.ndarray[Any, Any],
        chunks: dict[tuple[int, ...], np.ndarray[Any, Any]],
        lo: list[Any],
        length: list[int],
        axis: int,
    ) -> None:
        """Copy each sample's parts out of the decoded chunks into *out*."""
        var = self.var
        for j in range(out.shape[0]):
            start = [int(lo[d][j]) for d in range(len(var.shape))]
            stop = [min(s + m, n) for s, m, n in zip(start, length, var.shape, strict=True)]
            ranges = [
                range(s // c, (e - 1) // c + 1)
                for s, e, c in zip(start, stop, var.chunks, strict=True)
            ]
            for c in itertools.product(*ranges):
                src: list[slice] = []
                dst: list[slice] = []
                for d, (i, n) in enumerate(zip(c, var.chunks, strict=True)):
                    a, b = max(start[d], i * n), min(stop[d], (i + 1) * n)
                    src.append(slice(a - i * n, b - i * n))
                    if d != axis:
                        dst.append(slice(a - start[d], b - start[d]))
                block = chunks[c][tuple(src)]
                out[(j, *dst)] = np.squeeze(block, axis=axis)  # type: ignore[index]
