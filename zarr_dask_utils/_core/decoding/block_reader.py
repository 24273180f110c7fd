"""Read blocks of whole storage chunks with the direct decoder, as an array for Dask.

``dask.array.from_zarr`` reads every block through zarr's codec pipeline (~0.4 GB/s per thread
for zstd here).  :class:`DirectBlockReader` is an array-like for ``dask.array.from_array``:
its ``__getitem__`` streams the stored chunks a block covers (:func:`stream_objects`) and
decodes them with :class:`~zarr_dask_utils._core.decoding.direct_decoder.DirectDecoder`,
placing each into the block.  Chunks that are not stored and arrays whose chain the direct
decoder does not take (filters, transposes, ...) are read by zarr itself, so the values are
exactly what zarr returns; a chunk that cannot be decoded raises
:class:`ChunkUnreadableError` naming its key.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import zarr

from zarr_dask_utils._core.decoding.direct_decoder import DecodeFailure, DirectDecoder, direct_chain
from zarr_dask_utils._core.decoding.pipeline_decoder import grid_of, open_array
from zarr_dask_utils._core.errors import ChunkUnreadableError
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.storage.heap import heap_allocations
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.objectstream import stream_objects
from zarr_dask_utils._core.storage.storeio import storage_errors, translate_storage_error

__all__ = ["DirectBlockReader", "NamedErrorsArray", "read_region", "read_selection"]


def read_region(array: zarr.Array[Any], region: tuple[slice, ...], key: str, where: str) -> Any:
    """``array[region]``, with a chunk zarr cannot decode reported as :class:`ChunkUnreadableError`.

    Storage errors (missing bucket, credentials, network) keep their own translation.
    """
    try:
        return array[region]
    except Exception as err:
        if translate_storage_error(err, where) is not None:
            raise
        raise unreadable(key, where, f"{type(err).__name__}: {err}") from err


def unreadable(key: str, where: str, reason: str) -> ChunkUnreadableError:
    """The error for a chunk whose values cannot be read."""
    if "UnknownCodecError" in reason:  # the codec is not installed: the data may be fine
        return ChunkUnreadableError(
            f"Chunk {key!r} of {where} cannot be decoded here: its codec is not installed "
            f"({reason[:300]}); the stored data may be fine. Install the codec's package here "
            f"and on every Dask worker (`zdu validate {where}` names it), then run this again."
        )
    return ChunkUnreadableError(
        f"Chunk {key!r} of {where} could not be decoded here ({reason[:300]}), so its values "
        "cannot be read. That alone does not prove the stored data bad: a codec or codec "
        "pipeline that cannot handle it fails the same way (setting "
        "zarr-dask-utils.codec-pipeline to 'zarr' rules out the zarrs pipeline). Run "
        f"`zdu check --deep {where}`, which reads each chunk on its own and names the damaged "
        "ones; only a chunk it reports damaged needs a good copy. Then run this again."
    )


def read_selection(
    array: zarr.Array[Any], selection: tuple[slice, ...], where: str, path: str
) -> Any:
    """``array[selection]``; a chunk zarr cannot decode raises :class:`ChunkUnreadableError`.

    On a decode error each storage chunk (shard) the selection covers is read on its own to
    name the first one that fails (only on the error path: the common case reads once); keys
    are named relative to the hierarchy, *path* being the array's path in it.
    Storage errors keep their own translation.
    """
    try:
        return array[selection]
    except Exception as err:
        if translate_storage_error(err, where) is not None:
            raise
        first = err
    grid = grid_of(array, "")
    spans = [
        range(s.start // c, -(-s.stop // c)) for s, c in zip(selection, grid.chunks, strict=True)
    ]
    for coords in itertools.product(*spans):
        key = join_key(path, grid.key(coords))
        read_region(array, grid.region(coords), key, where)
    raise unreadable(f"a chunk of {path or '/'}", where, f"{type(first).__name__}: {first}")


class NamedErrorsArray:
    """A zarr array for ``dask.array.from_array`` whose undecodable chunks are named.

    Reads go through :func:`read_selection`, so a damaged chunk raises
    :class:`ChunkUnreadableError` with its key instead of the codec's bare exception.
    """

    def __init__(self, array: zarr.Array[Any], where: str, path: str) -> None:
        self.array = array
        self.where = where
        self.path = path
        self.shape: tuple[int, ...] = tuple(array.shape)
        self.dtype: np.dtype[Any] = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: tuple[slice, ...]) -> Any:
        region = tuple(slice(*k.indices(n)[:2]) for k, n in zip(key, self.shape, strict=True))
        return read_selection(self.array, region, self.where, self.path)


class DirectBlockReader:
    """The array at *path* of *location*, read block by block for ``dask.array.from_array``.

    Parameters
    ----------
    location
        The hierarchy's root.
    path
        Array path inside it.
    zarr_format
        Its format (2 or 3).
    heap_threshold
        See :func:`~zarr_dask_utils._core.storage.heap.heap_allocations` (decode scratch buffers).
    """

    def __init__(
        self,
        location: Location,
        path: str,
        zarr_format: int,
        heap_threshold: int | None = None,
    ) -> None:
        self.location = location
        self.path = path
        self.zarr_format = zarr_format
        self.heap_threshold = heap_threshold
        self._array: zarr.Array[Any] | None = None
        self.shape: tuple[int, ...] = tuple(self.array.shape)
        self.dtype: np.dtype[Any] = np.dtype(self.array.dtype)
        self.ndim = len(self.shape)
        self.grid = grid_of(self.array, path)

    @property
    def array(self) -> zarr.Array[Any]:
        """The opened array (once per process: the reader is shipped without it)."""
        if self._array is None:
            with storage_errors(self.location.display):
                store = self.location.open_store()
                self._array = open_array(store, self.location.path, self.path, self.zarr_format)
        return self._array

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray[Any, Any]:
        with heap_allocations(self.heap_threshold):
            return self._read(key)

    def _read(self, key: tuple[slice, ...]) -> np.ndarray[Any, Any]:
        array = self.array
        region = tuple(slice(*k.indices(n)[:2]) for k, n in zip(key, self.shape, strict=True))
        chain = direct_chain(array)
        grid = self.grid
        if chain is None:
            where = f"block {tuple((r.start, r.stop) for r in region)} of {self.path or '/'}"
            return np.asarray(read_region(array, region, where, self.location.display))
        out = np.empty(tuple(r.stop - r.start for r in region), dtype=self.dtype)
        spans = [
            range(r.start // c, -(-r.stop // c)) for r, c in zip(region, grid.chunks, strict=True)
        ]
        coords = list(itertools.product(*spans))
        keys = [join_key(array.store_path.path, grid.key(c)) for c in coords]
        decoder = DirectDecoder(chain)
        with storage_errors(self.location.display):
            stream = stream_objects(array.store_path.store, keys, depth=4)
            for c, raw in zip(coords, stream, strict=True):
                # the part of chunk c inside the block, in array and in chunk coordinates
                inside = tuple(
                    slice(max(i * n, r.start), min((i + 1) * n, r.stop))
                    for i, n, r in zip(c, grid.chunks, region, strict=True)
                )
                target = tuple(
                    slice(s.start - r.start, s.stop - r.start)
                    for s, r in zip(inside, region, strict=True)
                )
                if raw is None:
                    out[target] = array[inside]  # not stored: zarr's fill value
                    continue
                try:
                    values = decoder.values(decoder.decode(raw))
                except DecodeFailure as failure:
                    raise unreadable(
                        join_key(self.path, grid.key(c)), self.location.display, str(failure)
                    ) from None
                out[target] = values[
                    tuple(
                        slice(s.start - i * n, s.stop - i * n)
                        for s, i, n in zip(inside, c, grid.chunks, strict=True)
                    )
                ]
        return out
