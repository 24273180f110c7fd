"""Decode chunks of plain codec chains with numcodecs directly, into one reused buffer.

zarr's codec pipeline is general (sharding, array-to-array codecs, GPU buffers) and pays for it
per chunk: an event-loop round trip and a thread hand-off per codec, fresh output buffers and
wrapper objects.  A deep scan only needs to know that each chunk decodes to the right number of
bytes (and, with a NaN check, its values), so for the chains nearly every store uses

* zarr 3: ``bytes`` followed by any of ``blosc``, ``zstd``, ``gzip``, ``crc32c`` and
  numcodecs' bytes-to-bytes codecs;
* zarr 2: a fixed-size dtype, no filters, any numcodecs compressor (or none),

:class:`DirectDecoder` checks and decodes the stored bytes in the calling thread, with blosc
writing straight into a buffer reused for every chunk.  Every other chain (sharding, transpose,
filters, variable-length types) returns ``None`` from :func:`direct_chain` and is decoded by
zarr's own pipeline (:func:`zarr_dask_utils.integrity.decode.decode_objects`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import google_crc32c
import numpy as np
import zarr
from numcodecs import blosc as numcodecs_blosc
from numcodecs.abc import Codec as Numcodec

from zarr_dask_utils._core.chunkgrid import ArrayGrid
from zarr_dask_utils._core.objectstream import stream_objects
from zarr_dask_utils._core.storeio import join_key
from zarr_dask_utils.integrity.decode import ArrayStats, DecodeResult
from zarr_dask_utils.integrity.plan import classify_decode_error

__all__ = ["DecodeFailure", "DirectChain", "DirectDecoder", "decode_direct", "direct_chain"]

#: A decode step: ``("blosc", None)``, ``("crc32c", None)`` or ``("codec", numcodecs codec)``.
Step = tuple[str, Numcodec | None]

_BLOSC_HEADER = 16


class DecodeFailure(Exception):
    """One chunk failed a check: *code* is the finding code, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class DirectChain:
    """What :class:`DirectDecoder` needs to decode one array's chunks.

    Attributes
    ----------
    steps
        Decode steps, outermost (last applied when encoding) first.
    dtype
        Stored element type, byte order included.
    chunk_shape
        Shape of one (unsharded) chunk.
    order
        Memory order of the decoded chunk (``"C"`` or ``"F"``).
    """

    steps: tuple[Step, ...]
    dtype: np.dtype[Any]
    chunk_shape: tuple[int, ...]
    order: str = "C"

    @property
    def nbytes(self) -> int:
        """Bytes of one decoded chunk."""
        return math.prod(self.chunk_shape) * self.dtype.itemsize


def _v3_step(codec: Any) -> Step | None:
    from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec
    from zarr.codecs.numcodecs import _NumcodecsBytesBytesCodec

    if isinstance(codec, BloscCodec):
        return ("blosc", None)
    if isinstance(codec, Crc32cCodec):
        return ("crc32c", None)
    if isinstance(codec, ZstdCodec):
        return ("codec", codec._zstd_codec)
    if isinstance(codec, GzipCodec):
        return ("codec", codec._gzip_codec)
    if isinstance(codec, _NumcodecsBytesBytesCodec):
        return ("codec", codec._codec)
    return None


def _v2_step(codec: Numcodec) -> Step:
    return ("blosc", None) if codec.codec_id == "blosc" else ("codec", codec)


def direct_chain(array: zarr.Array[Any]) -> DirectChain | None:
    """The direct decode chain of *array*, or ``None`` when zarr's pipeline must decode it."""
    md = array.metadata
    if md.zarr_format == 2:
        dtype = np.dtype(md.dtype.to_native_dtype())
        if md.filters or dtype.hasobject or dtype.itemsize == 0:
            return None
        steps = () if md.compressor is None else (_v2_step(md.compressor),)
        return DirectChain(steps, dtype, tuple(md.chunks), md.order)
    from zarr.codecs import BytesCodec

    codecs = list(md.codecs)
    if not codecs or not isinstance(codecs[0], BytesCodec):
        return None  # array-to-array codecs, sharding or a variable-length serializer
    dtype = np.dtype(md.data_type.to_native_dtype())
    if dtype.hasobject or dtype.itemsize == 0:
        return None
    if dtype.itemsize > 1 and codecs[0].endian is not None:
        dtype = dtype.newbyteorder("<" if codecs[0].endian.value == "little" else ">")
    steps: list[Step] = []
    for codec in reversed(codecs[1:]):
        step = _v3_step(codec)
        if step is None:
            return None
        steps.append(step)
    return DirectChain(tuple(steps), dtype, tuple(md.chunk_grid.chunk_shape), "C")


class DirectDecoder:
    """Decode chunks of one :class:`DirectChain`; the result is valid until the next call.

    Parameters
    ----------
    chain
        The array's decode chain.
    """

    def __init__(self, chain: DirectChain) -> None:
        self.chain = chain
        self._out = np.empty(chain.nbytes, dtype=np.uint8)

    def decode(self, raw: memoryview) -> np.ndarray[Any, Any]:
        """Check and decode one stored chunk into a flat ``uint8`` array of :attr:`nbytes`.

        Raises
        ------
        DecodeFailure
            With the finding code and the reason when the chunk is damaged.
        """
        data: Any = raw
        last = len(self.chain.steps) - 1
        for i, (kind, codec) in enumerate(self.chain.steps):
            if kind == "crc32c":
                data = _check_crc32c(data)
            elif kind == "blosc":
                data = self._blosc(data, into_out=i == last)
            else:
                assert codec is not None
                try:
                    data = codec.decode(data)
                except Exception as err:
                    raise _failure(err) from None
        flat = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
        if flat.nbytes != self.chain.nbytes:
            raise DecodeFailure(
                "chunk-wrong-size",
                f"decoded to {flat.nbytes} bytes, expected {self.chain.nbytes} "
                f"({self.chain.chunk_shape} of {self.chain.dtype})",
            )
        return flat.reshape(-1).view(np.uint8)

    def values(self, flat: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The decoded chunk as an array of its dtype and chunk shape."""
        return flat.view(self.chain.dtype).reshape(self.chain.chunk_shape, order=self.chain.order)

    def _blosc(self, data: Any, *, into_out: bool) -> Any:
        size = len(data)
        if size < _BLOSC_HEADER:
            raise DecodeFailure(
                "chunk-decode-error",
                f"decoding failed ({size} bytes is shorter than a blosc header: truncated)",
            )
        header = bytes(data[:_BLOSC_HEADER])
        nbytes = int.from_bytes(header[4:8], "little")
        announced = int.from_bytes(header[12:16], "little")
        if announced != size:
            raise DecodeFailure(
                "chunk-wrong-size",
                f"the blosc header announces {announced} compressed bytes, the object holds "
                f"{size}: truncated or overwritten",
            )
        out = self._out if into_out and nbytes == self.chain.nbytes else np.empty(nbytes, "u1")
        try:
            numcodecs_blosc.decompress(data, out)
        except Exception as err:
            raise _failure(err) from None
        return out


def _check_crc32c(data: Any) -> Any:
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
    if len(view) < 4:
        raise DecodeFailure(
            "chunk-checksum-mismatch",
            f"crc32c checksum missing: {len(view)} bytes cannot hold one (truncated)",
        )
    inner, stored = view[:-4], bytes(view[-4:])
    computed = int(google_crc32c.value(np.frombuffer(inner, np.uint8))).to_bytes(4, "little")
    if computed != stored:
        raise DecodeFailure(
            "chunk-checksum-mismatch",
            f"crc32c checksum mismatch: stored {stored.hex()}, computed {computed.hex()}",
        )
    return inner


def _failure(err: Exception) -> DecodeFailure:
    text = f"{type(err).__name__}: {err}"
    return DecodeFailure(classify_decode_error(text), f"decoding failed ({text[:300]})")


def decode_direct(
    array: zarr.Array[Any],
    chain: DirectChain,
    grid: ArrayGrid,
    indices: Sequence[int],
    *,
    result: DecodeResult,
    key_prefix: str,
    stats: bool = False,
    depth: int = 8,
) -> None:
    """Decode the objects at grid *indices* of *array* with *chain*, into *result*.

    Objects are streamed in reused buffers (:func:`stream_objects`), decoded in this thread
    and forgotten; only counts, bad keys and (with *stats*) value statistics are kept.

    Parameters
    ----------
    array
        The opened array (its store and path are read).
    chain
        From :func:`direct_chain`.
    grid
        Its storage grid.
    indices
        Flat C-order indices into the grid.
    result
        Accumulates bad keys and counts.
    key_prefix
        Array path relative to the hierarchy root, for the keys in findings.
    stats
        Also count NaN/Inf and the value range (inside the array bounds only).
    depth
        Objects read ahead of the decoder.
    """
    store = array.store_path.store
    base = array.store_path.path
    coords = [grid.coords(i) for i in indices]
    rel_keys = [grid.key(c) for c in coords]
    decoder = DirectDecoder(chain)
    summary = result.stats.setdefault(key_prefix, ArrayStats()) if stats else None
    stream = stream_objects(store, [join_key(base, k) for k in rel_keys], depth=depth)
    for c, rel, raw in zip(coords, rel_keys, stream, strict=True):
        if raw is None:
            result.missing += 1
            continue
        result.raw_bytes += len(raw)
        try:
            flat = decoder.decode(raw)
        except DecodeFailure as failure:
            result.add_bad(join_key(key_prefix, rel), failure.code, str(failure))
            continue
        result.decoded += 1
        result.decoded_bytes += chain.nbytes
        if summary is not None:
            region = grid.region(c)
            values = decoder.values(flat)
            summary.add(values[tuple(slice(0, r.stop - r.start) for r in region)])
