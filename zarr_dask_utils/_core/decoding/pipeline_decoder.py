"""Decode stored objects with zarr's own codec pipeline, one key at a time (worker side).

The raw bytes of a batch are read concurrently through the Store API, then every object is
decoded by the array's codec pipeline (``AsyncArray.codec_pipeline``; zarr's own
``BatchedCodecPipeline`` of the same codecs when another pipeline such as zarrs is configured)
with the chunk spec zarr itself would use, so a failure is attributed to its key.  Sharded
arrays decode whole shards (the shard index checksum included).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from zarr_dask_utils._core.decoding.classify import classify_decode_error
from zarr_dask_utils._core.pure.chunkgrid import ArrayGrid
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.storage.storeio import concurrent_map

__all__ = ["ArrayStats", "DecodeResult", "blosc_threads", "decode_objects", "open_array"]

MAX_BAD_PER_TASK = 1000
MAX_MISSING_NAMED = 10  # keys not stored, named per result


@contextlib.contextmanager
def blosc_threads(n: int | None) -> Iterator[None]:
    """Run the block with blosc using *n* threads (``None``: leave blosc alone)."""
    if n is None:
        yield
        return
    from numcodecs import blosc

    previous = blosc.set_nthreads(int(n))
    try:
        yield
    finally:
        blosc.set_nthreads(previous)


@dataclass
class ArrayStats:
    """Value statistics of one array's decoded data (finite values only for min/max)."""

    nan: int = 0
    inf: int = 0
    min: float | None = None
    max: float | None = None
    elements: int = 0

    def add(self, values: np.ndarray[Any, Any]) -> None:
        """Fold the values of one decoded chunk in.

        Two passes when every value is finite (min and max propagate NaN, so finite extremes
        prove there is no NaN or Inf); the NaN/Inf counts and a masked range only otherwise.
        """
        self.elements += int(values.size)
        if values.dtype.kind not in "biufc" or values.size == 0:
            return
        if values.dtype.kind == "c":
            values = np.abs(values)
        lo, hi = values.min(), values.max()
        if values.dtype.kind == "f" and not (np.isfinite(lo) and np.isfinite(hi)):
            nan = np.isnan(values)
            inf = np.isinf(values)
            self.nan += int(np.count_nonzero(nan))
            self.inf += int(np.count_nonzero(inf))
            finite = values[~(nan | inf)]
            if finite.size == 0:
                return
            lo, hi = finite.min(), finite.max()
        lo, hi = lo.item(), hi.item()
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)

    def merge(self, other: ArrayStats) -> None:
        """Fold another partial result in."""
        self.nan += other.nan
        self.inf += other.inf
        self.elements += other.elements
        for name, pick in (("min", min), ("max", max)):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(
                self,
                name,
                theirs if mine is None else mine if theirs is None else pick(mine, theirs),
            )


@dataclass
class DecodeResult:
    """What one task found: bad keys, counts and (optionally) value statistics."""

    bad: list[tuple[str, str, str]] = field(default_factory=list)  # key, code, message
    bad_count: int = 0
    decoded: int = 0
    missing: int = 0
    raw_bytes: int = 0
    decoded_bytes: int = 0
    stats: dict[str, ArrayStats] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # array path → error
    missing_keys: list[str] = field(default_factory=list)  # the first MAX_MISSING_NAMED

    def add_missing(self, key: str) -> None:
        """Count one grid position with no stored object; name the first few."""
        self.missing += 1
        if len(self.missing_keys) < MAX_MISSING_NAMED:
            self.missing_keys.append(key)

    def add_bad(self, key: str, code: str, message: str) -> None:
        """Record one bad object (the first :data:`MAX_BAD_PER_TASK` with their reasons)."""
        self.bad_count += 1
        if len(self.bad) < MAX_BAD_PER_TASK:
            self.bad.append((key, code, message))

    def merge(self, other: DecodeResult) -> DecodeResult:
        """Fold another task's result in (returns ``self``)."""
        for item in other.bad:
            if len(self.bad) < MAX_BAD_PER_TASK:
                self.bad.append(item)
        self.bad_count += other.bad_count
        self.decoded += other.decoded
        self.missing += other.missing
        room = MAX_MISSING_NAMED - len(self.missing_keys)
        self.missing_keys.extend(other.missing_keys[: max(0, room)])
        self.raw_bytes += other.raw_bytes
        self.decoded_bytes += other.decoded_bytes
        self.unreadable.update(other.unreadable)
        for path, stats in other.stats.items():
            self.stats.setdefault(path, ArrayStats()).merge(stats)
        return self


#: zarr's warning on a folder holding both zarr.json and .zarray (the Rust zarrs writer's
#: two-format layout): zarr reads the zarr.json, and zdu's ``validate`` reports the layout
#: itself (``v2-document-shadowed``), so the warning is noise here
_BOTH_FORMATS = r"Both zarr\.json .* Zarr v3 will be used"


def open_array(store: Store, root: str, path: str, zarr_format: int | None) -> zarr.Array[Any]:
    """Open the array at *path* (relative to the hierarchy root *root*) read-only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _BOTH_FORMATS, UserWarning)
        return zarr.open_array(
            store,
            path=join_key(root, path) if path else root,
            mode="r",
            zarr_format=zarr_format,  # type: ignore[arg-type]
        )


def chunk_decoder(aa: Any) -> Any:
    """A codec pipeline of *aa* that decodes single chunks: zarr's own ``BatchedCodecPipeline``.

    Alternative pipelines (``zarrs.ZarrsCodecPipeline``, chosen by
    ``zarr-dask-utils.codec-pipeline``) read and decode through the store themselves and
    refuse ``decode`` of bytes handed to them, so the same codecs are rebuilt as zarr's
    pipeline, exactly as zarr does for a store such a pipeline does not support.
    """
    from zarr.codecs._v2 import V2Codec
    from zarr.core.codec_pipeline import BatchedCodecPipeline
    from zarr.core.metadata import ArrayV3Metadata

    if isinstance(aa.codec_pipeline, BatchedCodecPipeline):
        return aa.codec_pipeline
    md = aa.metadata
    if isinstance(md, ArrayV3Metadata):
        return BatchedCodecPipeline.from_codecs(md.codecs)
    return BatchedCodecPipeline.from_codecs([V2Codec(filters=md.filters, compressor=md.compressor)])


def _blosc_length(raw: bytes) -> int | None:
    """The compressed size a blosc header announces (bytes 12-16), or ``None``."""
    return int.from_bytes(raw[12:16], "little") if len(raw) >= 16 else None


def is_blosc_last(array: zarr.Array[Any]) -> bool:
    """``True`` when an unsharded array's outermost codec is blosc (its header has a length)."""
    md = array.metadata
    if md.zarr_format == 2:
        comp = md.compressor
        return comp is not None and getattr(comp, "codec_id", None) == "blosc"
    codecs = md.codecs
    return bool(codecs) and type(codecs[-1]).__name__ == "BloscCodec"


def decode_objects(
    array: zarr.Array[Any],
    grid: ArrayGrid,
    indices: Sequence[int],
    *,
    result: DecodeResult,
    key_prefix: str,
    concurrency: int = 64,
    stats: bool = False,
) -> None:
    """Read and decode the objects at grid *indices* of *array*, folding findings into *result*.

    Parameters
    ----------
    array
        The opened array.
    grid
        Its storage grid (shards when sharded).
    indices
        Flat C-order indices into the storage grid.
    result
        Accumulates bad keys and counts.
    key_prefix
        Array path relative to the hierarchy root, for the keys in findings.
    concurrency
        Reads in flight.
    stats
        Also count NaN/Inf and the value range (inside the array bounds only).
    """
    store = array.store_path.store
    base = array.store_path.path
    coords = [grid.coords(i) for i in indices]
    rel_keys = [grid.key(c) for c in coords]
    aa = array._async_array
    pipeline = chunk_decoder(aa)
    proto = default_buffer_prototype()
    check_blosc = is_blosc_last(array)
    f_order = array.metadata.zarr_format == 2 and array.metadata.order == "F"

    async def one(c: tuple[int, ...], rel: str) -> tuple[str, Any, Any, int]:
        # read and decode one object, so reads and decodes of a batch overlap
        buf = await store.get(join_key(base, rel), prototype=proto)
        if buf is None:
            return "missing", None, None, 0
        size = len(buf)
        head = buf[:16].to_bytes() if check_blosc and size >= 16 else b""
        if head and (announced := _blosc_length(head)) != size:
            return "blosc", announced, None, size
        spec = aa.metadata.get_chunk_spec(c, aa.config, prototype=proto)
        try:
            out = next(iter(await pipeline.decode([(buf, spec)])))
        except Exception as err:  # attributed to this key below
            return "error", err, spec, size
        return "ok", out, spec, size

    outcomes = sync(
        concurrent_map(list(zip(coords, rel_keys, strict=True)), one, limit=concurrency)
    )
    for c, rel, (status, out, spec, size) in zip(coords, rel_keys, outcomes, strict=True):
        key = join_key(key_prefix, rel)
        result.raw_bytes += size
        if status == "missing":
            result.add_missing(key)
            continue
        if status == "blosc":
            result.add_bad(
                key,
                "chunk-wrong-size",
                f"the blosc header announces {out} compressed bytes, the object holds "
                f"{size}: truncated or overwritten",
            )
            continue
        if status == "error":
            text = f"{type(out).__name__}: {out}"
            result.add_bad(key, classify_decode_error(text), f"decoding failed ({text[:300]})")
            continue
        values = None if out is None else out.as_numpy_array()
        if values is None or tuple(values.shape) != tuple(spec.shape):
            found = None if values is None else values.shape
            result.add_bad(
                key, "chunk-wrong-size", f"decoded to shape {found}, expected {tuple(spec.shape)}"
            )
            continue
        result.decoded += 1
        result.decoded_bytes += int(values.nbytes)
        if stats:
            if f_order and values.ndim > 1 and values.flags.c_contiguous:
                # zarr's pipeline hands an order-"F" chunk over in storage order, C-shaped
                values = values.reshape(-1).reshape(values.shape, order="F")
            region = grid.region(c)
            inside = values[tuple(slice(0, r.stop - r.start) for r in region)]
            result.stats.setdefault(key_prefix, ArrayStats()).add(inside)


def grid_of(array: zarr.Array[Any], path: str) -> ArrayGrid:
    """The storage grid of an opened array (shards when sharded)."""
    from zarr_dask_utils._core.pure.chunkgrid import grid_from_document

    md = array.metadata
    doc: Mapping[str, Any] = md.to_dict()
    name = ".zarray" if md.zarr_format == 2 else "zarr.json"
    doc = _jsonish(doc)
    grid = grid_from_document(path, name, doc)
    if grid is None:  # pragma: no cover - zarr opened it, so its grid is valid
        raise ValueError(f"array {path!r} has no regular chunk grid")
    return grid


def _jsonish(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _jsonish(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonish(v) for v in value]
    return value
