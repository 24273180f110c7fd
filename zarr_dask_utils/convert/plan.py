"""Pure planning of a conversion: codec translation, chunk choice, regions.  No I/O, no Dask.

- :func:`translate_encoding`: a netCDF/HDF5 variable's ``zlib``/``complevel``/``shuffle`` (keys
  zarr does not know, which ``to_zarr`` silently drops) → a zarr compressor name
  (:mod:`~zarr_dask_utils._core.pure.compressors` spelling) at least as good, and why.
- :func:`choose_chunks`: target chunks per variable from the access pattern (the cost model
  ``analyze_chunks`` uses), not the netCDF chunking; user chunks by dimension name win;
  variables sharing a dimension agree along it.
- :func:`choose_regions`: the write regions (whole shards or chunks) grown to whole source
  chunks, so no source chunk is decompressed by several tasks.
- :func:`block_regions`: the write regions in C order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.pure.access_patterns import resolve_patterns
from zarr_dask_utils._core.pure.chunk_choice import consistent_chunks, recommend_chunks

__all__ = [
    "CodecChoice",
    "VariableShape",
    "block_regions",
    "choose_chunks",
    "choose_regions",
    "choose_shards",
    "translate_encoding",
]

#: zarr's default when the source is not compressed (netCDF-3, uncompressed netCDF-4).
DEFAULT_COMPRESSOR = "zstd:3"


@dataclass(frozen=True, slots=True)
class CodecChoice:
    """The compressor of one target variable and why it was chosen."""

    compressor: str  # a name of _core.pure.compressors, e.g. "blosc-zstd:4"
    source: str  # the source encoding in words, e.g. "zlib level 4 + shuffle"
    reason: str

    def to_dict(self) -> dict[str, str]:
        """JSON-safe form."""
        return {"compressor": self.compressor, "source": self.source, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class VariableShape:
    """What chunk choice needs of one variable."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    itemsize: int


def _source_words(encoding: Mapping[str, Any]) -> str:
    words = []
    if encoding.get("zlib"):
        words.append(f"zlib level {int(encoding.get('complevel') or 4)}")
    for name in ("zstd", "bzip2", "szip", "blosc"):
        if encoding.get(name):
            words.append(name)
    if encoding.get("compression") and not words:
        words.append(str(encoding["compression"]))
    if not words:
        return "uncompressed"
    if encoding.get("shuffle"):
        words.append("shuffle")
    return " + ".join(words)


def translate_encoding(encoding: Mapping[str, Any], requested: str | None = None) -> CodecChoice:
    """Map a netCDF variable's compression settings to a zarr compressor name.

    Parameters
    ----------
    encoding
        ``variable.encoding`` as the netCDF4/h5netcdf backend reports it (``zlib``,
        ``complevel``, ``shuffle``, ``compression``…).
    requested
        The user's compressor name (``"zstd:3"``): used as is, the source noted.

    Returns
    -------
    CodecChoice

    Examples
    --------
    >>> translate_encoding({"zlib": True, "complevel": 4, "shuffle": True}).compressor
    'blosc-zstd:4'
    >>> translate_encoding({}).compressor
    'zstd:3'
    """
    source = _source_words(encoding)
    if requested:
        return CodecChoice(requested, source, "requested")
    if source == "uncompressed":
        return CodecChoice(DEFAULT_COMPRESSOR, source, "source not compressed: zarr's default")
    level = int(encoding.get("complevel") or 4) if encoding.get("zlib") else 5
    level = min(max(level, 1), 9)
    reason = (
        f"{source} -> Blosc zstd level {level} with byte shuffle: zstd compresses at least as "
        "well as zlib at the same level and decodes several times faster"
    )
    return CodecChoice(f"blosc-zstd:{level}", source, reason)


def _check_dims(request: Mapping[str, Any], dims: set[str], what: str) -> dict[str, int]:
    unknown = sorted(set(request) - dims)
    if unknown:
        raise InvalidOptionError(
            f"{what} names dimension(s) {', '.join(unknown)} that no variable has; the "
            f"dimensions are {', '.join(sorted(dims)) or 'none'}. Use time=365,lat=10 with "
            "those names."
        )
    out = {}
    for k, v in request.items():
        if not isinstance(v, int) or isinstance(v, bool) or v == 0 or v < -1:
            raise InvalidOptionError(f"{what}: {k}={v!r} is not a positive size (or -1).")
        out[str(k)] = int(v)
    return out


def choose_chunks(
    variables: Sequence[VariableShape],
    requested: Mapping[str, int] | None,
    *,
    access_pattern: Any = "sequential",
    min_bytes: int,
    max_bytes: int,
) -> dict[str, tuple[int, ...]]:
    """Target chunks per variable: *requested* sizes by dimension, the rest from the cost model.

    ``-1`` means the whole dimension.  A dimension the request does not name is chosen for
    the access pattern within ``[min_bytes, max_bytes]``; variables sharing a dimension get
    one size along it (the largest variable decides).
    """
    all_dims = {d for v in variables for d in v.dims}
    request = _check_dims(requested or {}, all_dims, "chunks")
    rows = []
    for v in variables:
        if not v.shape or math.prod(v.shape) == 0:
            rows.append({"path": v.name, "dims": v.dims, "shape": v.shape, "nbytes": 0,
                         "chunks": tuple(max(n, 1) for n in v.shape)})  # fmt: skip
            continue
        patterns = resolve_patterns(access_pattern, v.shape, v.dims, strict=False)
        rec = recommend_chunks(
            v.shape,
            v.itemsize,
            patterns,
            current=v.shape,
            min_bytes=min_bytes,
            max_bytes=max_bytes,
            zarr_format=2,  # shards are the user's choice here
            dims=v.dims,
        )
        rows.append(
            {
                "path": v.name,
                "dims": v.dims,
                "shape": v.shape,
                "nbytes": math.prod(v.shape) * v.itemsize,
                "chunks": rec.chunks,
            }
        )
    aligned = consistent_chunks(rows)
    out = {}
    for v in variables:
        chunks = aligned[v.name]
        out[v.name] = tuple(
            max(1, n if request.get(d) == -1 else min(request.get(d, c), max(n, 1)))
            for d, c, n in zip(v.dims, chunks, v.shape, strict=True)
        )
    return out


def choose_shards(
    variables: Sequence[VariableShape],
    chunks: Mapping[str, tuple[int, ...]],
    requested: Mapping[str, int] | None,
) -> dict[str, tuple[int, ...] | None]:
    """Shards by dimension name (multiples of the chunks, clipped to the shape); ``None``: none."""
    if not requested:
        return {v.name: None for v in variables}
    request = _check_dims(requested, {d for v in variables for d in v.dims}, "shards")
    out: dict[str, tuple[int, ...] | None] = {}
    for v in variables:
        shard = []
        for d, c, n in zip(v.dims, chunks[v.name], v.shape, strict=True):
            s = request.get(d, c)
            s = -(-max(n, 1) // c) * c if s == -1 else s
            if s % c:
                raise InvalidOptionError(
                    f"Shard size {d}={s} of {v.name} is not a multiple of its chunk size {c}. "
                    "Pick shards that are whole multiples of the chunks."
                )
            shard.append(min(s, -(-max(n, 1) // c) * c))
        out[v.name] = tuple(shard) if tuple(shard) != chunks[v.name] else None
    return out


def block_regions(shape: Sequence[int], block: Sequence[int]) -> list[tuple[tuple[int, int], ...]]:
    """``(start, stop)`` per axis of every block of *block* over *shape*, in C order.

    Examples
    --------
    >>> block_regions((5,), (2,))
    [((0, 2),), ((2, 4),), ((4, 5),)]
    """
    axes = [
        [(lo, min(lo + b, n)) for lo in range(0, max(n, 1), b)]
        for n, b in zip(shape, block, strict=True)
    ]
    return [tuple(r) for r in itertools.product(*axes)]


def choose_regions(
    variables: Sequence[VariableShape],
    units: Mapping[str, tuple[int, ...]],
    source_chunks: Mapping[str, int],
    max_bytes: int,
) -> dict[str, tuple[int, ...]]:
    """Write regions per variable: its *units* (shards, else chunks) grown to whole source chunks.

    A task reads its region from the files: where a source chunk spans several target units
    along a dimension (netCDF chunks of one whole ``(lat, lon)`` field, target chunks of a
    quarter of it), regions of one unit would decompress every source chunk once per unit.
    Along each such dimension the region becomes the least common multiple of the unit and
    the source chunk (else the unit multiple just covering the source chunk), clipped to the
    dimension, while the largest variable's region stays within *max_bytes*; dimensions
    that grow least go first.  A region is still a whole number of units, so no two tasks
    write one stored object.

    Parameters
    ----------
    variables
        The task-written variables.
    units
        Their shards, else chunks, by variable name.
    source_chunks
        The source's chunk size by dimension name (dimensions not given are not grown).
    max_bytes
        Largest region of one variable, in bytes.

    Returns
    -------
    dict
        Region shape per variable name.

    Examples
    --------
    >>> v = VariableShape("t2m", ("time", "lat", "lon"), (2064, 180, 360), 4)
    >>> choose_regions([v], {"t2m": (129, 45, 360)}, {"time": 1, "lat": 180, "lon": 360}, 2**26)
    {'t2m': (129, 180, 360)}
    """
    unit: dict[str, int] = {}
    length: dict[str, int] = {}
    for v in variables:
        for d, u, n in zip(v.dims, units[v.name], v.shape, strict=True):
            unit.setdefault(d, u)
            length[d] = max(length.get(d, 0), n)
    candidates: dict[str, list[int]] = {}
    for d, s in source_chunks.items():
        if d not in unit or s <= unit[d]:
            continue  # a source chunk within one unit is read by one or two regions
        u = unit[d]
        whole = -(-max(length[d], 1) // u) * u
        candidates[d] = [min(math.lcm(u, s), whole), min(-(-s // u) * u, whole)]

    def fits(grown: Mapping[str, int]) -> bool:
        return all(
            math.prod(
                grown.get(d, u) if u == unit[d] else u
                for d, u in zip(v.dims, units[v.name], strict=True)
            )
            * v.itemsize
            <= max_bytes
            for v in variables
        )

    chosen: dict[str, int] = {}
    for d in sorted(candidates, key=lambda d: (candidates[d][-1] / unit[d], d)):
        for size in candidates[d]:
            if fits({**chosen, d: size}):
                chosen[d] = size
                break
    return {
        v.name: tuple(
            chosen.get(d, u) if u == unit[d] else u
            for d, u in zip(v.dims, units[v.name], strict=True)
        )
        for v in variables
    }
