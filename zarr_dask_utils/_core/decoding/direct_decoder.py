"""Decode chunks of plain codec chains with numcodecs directly, into one reused buffer.

zarr's codec pipeline is general (sharding, array-to-array codecs, GPU buffers) and pays for it
per chunk: an event-loop round trip and a thread hand-off per codec, fresh output buffers and
wrapper objects.  A deep scan only needs to know that each chunk decodes to the right number of
bytes (and, with a NaN check, its values), so for the chains nearly every store uses

* zarr 3: ``bytes`` followed by any of ``blosc``, ``zstd``, ``gzip``, ``crc32c`` and
  numcodecs' bytes-to-bytes codecs, also as the inner chunks of a ``sharding_indexed`` shard
  (little-endian index, with or without its crc32c, at either end);
* zarr 2: a fixed-size dtype, no filters, any numcodecs compressor (or none),

:class:`DirectDecoder` checks and decodes the stored bytes in the calling thread, with blosc
writing straight into a buffer reused for every chunk (into the shard's buffer, in place, when
an inner chunk is one run of it).  Every other chain (transpose, filters, variable-length
types, nested sharding) returns ``None`` from :func:`direct_chain` and is decoded by zarr's own
pipeline (:func:`zarr_dask_utils._core.decoding.pipeline_decoder.decode_objects`).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import google_crc32c
import numpy as np
import zarr
from numcodecs import blosc as numcodecs_blosc
from numcodecs.abc import Codec as Numcodec

from zarr_dask_utils._core.decoding.classify import classify_decode_error
from zarr_dask_utils._core.decoding.pipeline_decoder import ArrayStats, DecodeResult
from zarr_dask_utils._core.pure.chunkgrid import ArrayGrid
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.storage.objectstream import stream_objects

__all__ = [
    "DecodeFailure",
    "DirectChain",
    "DirectDecoder",
    "ShardLayout",
    "decode_direct",
    "direct_chain",
]

#: A decode step: ``("blosc", None)``, ``("crc32c", None)`` or ``("codec", numcodecs codec)``.
Step = tuple[str, Numcodec | None]

_BLOSC_HEADER = 16
#: Blosc header: version bytes, uncompressed size, block size, compressed size (little-endian).
_BLOSC_SIZES = struct.Struct("<4sIII")
_EMPTY = 2**64 - 1  # offset and length of an inner chunk the shard does not store


class DecodeFailure(Exception):
    """One chunk failed a check: *code* is the finding code, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ShardLayout:
    """How the inner chunks of a shard are found (zarr 3 sharding codec).

    Attributes
    ----------
    inner
        Decode chain of one inner chunk.
    per_shard
        Inner chunks per shard along each dimension.
    index_at_end
        The index (offset, length per inner chunk, little-endian uint64) ends the shard.
    index_crc
        The index carries a crc32c checksum.
    fill
        One fill-value element, as stored (for inner chunks the index marks empty).
    """

    inner: DirectChain
    per_shard: tuple[int, ...]
    index_at_end: bool
    index_crc: bool
    fill: bytes


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
        Shape of one stored object (a chunk, or a shard).
    order
        Memory order of the decoded chunk (``"C"`` or ``"F"``).
    shard
        For sharded arrays, how to find the inner chunks (``steps`` is then empty).
    """

    steps: tuple[Step, ...]
    dtype: np.dtype[Any]
    chunk_shape: tuple[int, ...]
    order: Literal["C", "F"] = "C"
    shard: ShardLayout | None = None

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
    from zarr.codecs import ShardingCodec

    codecs = list(md.codecs)
    chunk_shape = tuple(md.chunk_grid.chunk_shape)  # type: ignore[attr-defined]  # regular grid
    dtype = np.dtype(md.data_type.to_native_dtype())
    if len(codecs) == 1 and isinstance(codecs[0], ShardingCodec):
        return _sharded_chain(codecs[0], dtype, chunk_shape, md.fill_value)
    return _v3_chain(codecs, dtype, chunk_shape)


def _v3_chain(
    codecs: Sequence[Any], dtype: np.dtype[Any], shape: tuple[int, ...]
) -> DirectChain | None:
    from zarr.codecs import BytesCodec

    if not codecs or not isinstance(codecs[0], BytesCodec):
        return None  # array-to-array codecs, nested sharding or a variable-length serializer
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
    return DirectChain(tuple(steps), dtype, shape, "C")


def _sharded_chain(
    codec: Any, dtype: np.dtype[Any], shard_shape: tuple[int, ...], fill_value: Any
) -> DirectChain | None:
    from zarr.codecs import BytesCodec, Crc32cCodec

    inner_shape = tuple(codec.chunk_shape)
    inner = _v3_chain(list(codec.codecs), dtype, inner_shape)
    index = list(codec.index_codecs)
    plain_index = (
        index
        and isinstance(index[0], BytesCodec)
        and (index[0].endian is None or index[0].endian.value == "little")
        and all(isinstance(c, Crc32cCodec) for c in index[1:])
        and len(index) <= 2
    )
    if (
        inner is None
        or not plain_index
        or any(s % i for s, i in zip(shard_shape, inner_shape, strict=True))
    ):
        return None
    layout = ShardLayout(
        inner=inner,
        per_shard=tuple(s // i for s, i in zip(shard_shape, inner_shape, strict=True)),
        index_at_end=codec.index_location.value == "end",
        index_crc=len(index) == 2,
        fill=np.asarray(fill_value, dtype=inner.dtype).tobytes(),
    )
    return DirectChain((), inner.dtype, shard_shape, "C", layout)


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
        self._inner = None if chain.shard is None else DirectDecoder(chain.shard.inner)
        # the chain of nearly every store: one call per chunk, no step loop nor new views
        self._blosc_only = chain.shard is None and chain.steps == (("blosc", None),)

    def decode(
        self, raw: memoryview, into: np.ndarray[Any, Any] | None = None
    ) -> np.ndarray[Any, Any]:
        """Check and decode one stored chunk into a flat ``uint8`` array of :attr:`nbytes`.

        Blosc decompresses straight into *into* (a flat ``uint8`` array of :attr:`nbytes`)
        when given, else into the decoder's own buffer; the result may be either.

        Raises
        ------
        DecodeFailure
            With the finding code and the reason when the chunk is damaged.
        """
        target = self._out if into is None else into
        if self._blosc_only:
            data: Any = self._blosc(raw, into=target)
            if data is target:  # blosc filled it: exactly nbytes (checked against the header)
                return target
            return self._checked(data)
        if self.chain.shard is not None:
            return self._decode_shard(raw, self.chain.shard)
        data = raw
        last = len(self.chain.steps) - 1
        for i, (kind, codec) in enumerate(self.chain.steps):
            if kind == "crc32c":
                data = _check_crc32c(data)
            elif kind == "blosc":
                data = self._blosc(data, into=target if i == last else None)
            else:
                assert codec is not None
                try:
                    data = codec.decode(data)
                except Exception as err:
                    raise _failure(err) from None
        return self._checked(data)

    def _checked(self, data: Any) -> np.ndarray[Any, Any]:
        """*data* as a flat ``uint8`` array, checked to hold exactly one decoded chunk."""
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

    def _decode_shard(self, raw: memoryview, layout: ShardLayout) -> np.ndarray[Any, Any]:
        """Check the index, decode every inner chunk into place, fill the empty ones."""
        assert self._inner is not None
        n = math.prod(layout.per_shard)
        size = 16 * n + (4 if layout.index_crc else 0)
        if len(raw) < size:
            code = "chunk-checksum-mismatch" if layout.index_crc else "chunk-wrong-size"
            raise DecodeFailure(
                code, f"{len(raw)} bytes cannot hold the shard index of {size} bytes: truncated"
            )
        index_bytes = raw[len(raw) - size :] if layout.index_at_end else raw[:size]
        if layout.index_crc:
            index_bytes = _check_crc32c(index_bytes, what="shard index crc32c")
        index = np.frombuffer(index_bytes, dtype="<u8").reshape(n, 2)
        shard = self._out.view(self.chain.dtype).reshape(self.chain.chunk_shape)
        inner_shape = layout.inner.chunk_shape
        inner_bytes = layout.inner.nbytes
        # C order: inner chunk k is bytes [k * inner_bytes, (k + 1) * inner_bytes) of the shard
        # when it spans the shard in every dimension but the first
        contiguous = inner_shape[1:] == self.chain.chunk_shape[1:]
        for k, tile in enumerate(np.ndindex(*layout.per_shard)):
            offset, length = (int(v) for v in index[k])
            where = tuple(slice(t * i, (t + 1) * i) for t, i in zip(tile, inner_shape, strict=True))
            if offset == _EMPTY and length == _EMPTY:
                shard[where] = np.frombuffer(layout.fill, dtype=self.chain.dtype)[0]
                continue
            if offset + length > len(raw):
                raise DecodeFailure(
                    "chunk-wrong-size",
                    f"inner chunk {tile} ends at byte {offset + length} of a {len(raw)}-byte "
                    "shard: truncated",
                )
            if contiguous:  # the inner chunk is one run of the shard's bytes: decode in place
                target = self._out[k * inner_bytes : (k + 1) * inner_bytes]
                flat = self._inner.decode(raw[offset : offset + length], into=target)
                if flat is not target:
                    target[:] = flat
            else:
                flat = self._inner.decode(raw[offset : offset + length])
                shard[where] = self._inner.values(flat)
        return self._out

    def _blosc(self, data: Any, *, into: np.ndarray[Any, Any] | None) -> Any:
        size = len(data)
        if size < _BLOSC_HEADER:
            raise DecodeFailure(
                "chunk-decode-error",
                f"decoding failed ({size} bytes is shorter than a blosc header: truncated)",
            )
        _, nbytes, _, announced = _BLOSC_SIZES.unpack_from(data)
        if announced != size:
            raise DecodeFailure(
                "chunk-wrong-size",
                f"the blosc header announces {announced} compressed bytes, the object holds "
                f"{size}: truncated or overwritten",
            )
        out = into if into is not None and nbytes == into.nbytes else np.empty(nbytes, "u1")
        try:
            numcodecs_blosc.decompress(data, out)
        except Exception as err:
            raise _failure(err) from None
        return out


def _check_crc32c(data: Any, what: str = "crc32c checksum") -> Any:
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
            f"{what} mismatch: stored {stored.hex()}, computed {computed.hex()}",
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
    rel_keys = [grid.key(grid.coords(i)) for i in indices]
    decoder = DirectDecoder(chain)
    summary = result.stats.setdefault(key_prefix, ArrayStats()) if stats else None
    stream = stream_objects(store, [join_key(base, k) for k in rel_keys], depth=depth)
    raw_bytes = decoded = 0  # counted here, added to *result* once
    try:
        for i, rel, raw in zip(indices, rel_keys, stream, strict=True):
            if raw is None:
                result.add_missing(join_key(key_prefix, rel))
                continue
            raw_bytes += len(raw)
            try:
                flat = decoder.decode(raw)
            except DecodeFailure as failure:
                result.add_bad(join_key(key_prefix, rel), failure.code, str(failure))
                continue
            decoded += 1
            if summary is not None:
                region = grid.region(grid.coords(i))
                values = decoder.values(flat)
                summary.add(values[tuple(slice(0, r.stop - r.start) for r in region)])
    finally:
        result.raw_bytes += raw_bytes
        result.decoded += decoded
        result.decoded_bytes += decoded * chain.nbytes
