"""Pure diagnosis: per-array facts in, findings with evidence and fixes out (no I/O, no Dask)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zarr_dask_utils._core.checks.missing_keys import name_missing
from zarr_dask_utils._core.pure.chunk_choice import suggest_chunks
from zarr_dask_utils._core.pure.reports import Finding

__all__ = [
    "ArrayDiagnosis",
    "Limits",
    "array_findings",
    "dimension_findings",
    "human_bytes",
    "limits_from",
    "store_findings",
]

_COMPRESSORS_NOT = frozenset({"bytes", "crc32c", "transpose", "vlen-utf8", "vlen-bytes"})
_TIME_NAMES = frozenset({"time", "t", "valid_time", "date", "datetime", "step", "forecast_time"})


def human_bytes(n: float) -> str:
    """``1536`` → ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class Limits:
    """Thresholds of the diagnosis (``zarr-dask-utils.doctor.*`` in dask config)."""

    min_chunk_bytes: int = 1 << 20
    max_chunk_bytes: int = 100 << 20
    target_chunk_bytes: int = 16 << 20
    max_objects: int = 100_000
    shard_hint_chunks: int = 10_000
    long_axis: int = 100


@dataclass(frozen=True, slots=True)
class ArrayDiagnosis:
    """The facts ``zdu doctor`` reports for one array.

    ``chunk_bytes`` is the uncompressed size of one full read/write chunk, ``object_bytes``
    of one full stored object (the shard when sharded); ``objects_*`` count stored objects.
    """

    path: str
    zarr_format: int
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    codecs: tuple[str, ...]
    fill_value: Any
    dimension_names: tuple[str | None, ...] | None
    itemsize: int | None
    objects_expected: int
    objects_present: int
    stored_bytes: int
    #: The first grid keys with no stored object (bounded; ``objects_expected -
    #: objects_present`` counts them all).
    missing_keys: tuple[str, ...] = ()

    @property
    def chunk_bytes(self) -> int | None:
        """Uncompressed bytes of one full chunk (``None``: variable-size dtype)."""
        return None if self.itemsize is None else math.prod(self.chunks) * self.itemsize

    @property
    def object_bytes(self) -> int | None:
        """Uncompressed bytes of one full stored object (shard or chunk)."""
        if self.itemsize is None:
            return None
        return math.prod(self.shards or self.chunks) * self.itemsize

    @property
    def mean_stored_bytes(self) -> float | None:
        """Mean size of a stored object."""
        return self.stored_bytes / self.objects_present if self.objects_present else None

    @property
    def compression_ratio(self) -> float | None:
        """Uncompressed / stored bytes of the stored objects (edge objects counted full)."""
        if not self.stored_bytes or self.object_bytes is None:
            return None
        return self.objects_present * self.object_bytes / self.stored_bytes

    @property
    def compressed(self) -> bool:
        """Whether any codec compresses (not only bytes/crc32c/transpose)."""
        return any(c.split("-")[0] not in _COMPRESSORS_NOT for c in self.codecs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe facts, derived sizes included."""
        from zarr_dask_utils._core.pure.reports import json_safe

        data = {name: json_safe(getattr(self, name)) for name in self.__slots__}
        for name in ("chunk_bytes", "object_bytes", "mean_stored_bytes", "compression_ratio"):
            data[name] = getattr(self, name)
        return data

    def describe(self) -> str:
        """One line for the text report."""
        shard = f" shards {self.shards}" if self.shards else ""
        size = human_bytes(self.chunk_bytes) if self.chunk_bytes is not None else "?"
        mean = self.mean_stored_bytes
        ratio = self.compression_ratio
        return (
            f"/{self.path}: {self.shape} {self.dtype} chunks {self.chunks}{shard} ({size} each), "
            f"{self.objects_present}/{self.objects_expected} objects stored"
            + (f", mean {human_bytes(mean)}" if mean is not None else "")
            + (f", compression {ratio:.2f}x" if ratio is not None else "")
            + f", codecs [{', '.join(self.codecs) or 'none'}], fill {self.fill_value!r}"
        )


def _fix_size(arr: ArrayDiagnosis, limits: Limits) -> str:
    assert arr.itemsize is not None
    better = suggest_chunks(arr.shape, arr.chunks, arr.itemsize, limits.target_chunk_bytes)
    size = human_bytes(math.prod(better) * arr.itemsize)
    return (
        f"rechunk to about {better} ({size} per chunk): `zdu rechunk SRC DST --chunks "
        f"{','.join(map(str, better))} --max-mem 1GiB`"
    )


def _shard_options(arr: ArrayDiagnosis) -> str:
    """``--chunks`` (unchanged) and ``--shards`` (whole chunks, about 128 MiB) for the advice."""
    grown = suggest_chunks(arr.shape, arr.chunks, arr.itemsize or 1, 128 << 20)
    shards = [c * max(1, g // c) for c, g in zip(arr.chunks, grown, strict=True)]
    return f"--chunks {','.join(map(str, arr.chunks))} --shards {','.join(map(str, shards))}"


def array_findings(arr: ArrayDiagnosis, limits: Limits) -> list[Finding]:
    """Size, compression, sharding, sparsity and access-pattern findings for one array."""
    found: list[Finding] = []
    where = arr.path
    chunk, obj = arr.chunk_bytes, arr.object_bytes
    if chunk is not None and obj is not None:
        if obj < limits.min_chunk_bytes and arr.objects_expected > 1:
            what = "shards" if arr.shards else "chunks"
            found.append(
                Finding(
                    "warning",
                    "chunks-too-small",
                    where,
                    f"{what} hold {human_bytes(obj)} uncompressed ({arr.objects_expected} "
                    f"objects); far below {human_bytes(limits.min_chunk_bytes)}, so reads "
                    "spend their time on per-request latency and task overhead",
                    _fix_size(arr, limits),
                )
            )
        if chunk > limits.max_chunk_bytes:
            found.append(
                Finding(
                    "warning",
                    "chunks-too-large",
                    where,
                    f"one chunk is {human_bytes(chunk)} uncompressed (more than "
                    f"{human_bytes(limits.max_chunk_bytes)}): every read of a single value "
                    "decodes it whole, and Dask workers need that much memory per task",
                    _fix_size(arr, limits),
                )
            )
    if not arr.compressed and arr.objects_present:
        found.append(
            Finding(
                "warning",
                "uncompressed",
                where,
                f"stored without compression (codecs: {', '.join(arr.codecs) or 'none'}): "
                f"{human_bytes(arr.stored_bytes)} on storage",
                "rewrite with a compressor (e.g. zstd or blosc-zstd with shuffle) using "
                f"`zdu rechunk SRC DST --chunks {','.join(map(str, arr.chunks))} "
                "--max-mem 256MiB --compressor zstd:3`",
            )
        )
    if (
        arr.zarr_format == 2
        and arr.objects_expected >= limits.shard_hint_chunks
        and chunk is not None
        and chunk < limits.min_chunk_bytes
    ):
        found.append(
            Finding(
                "warning",
                "sharding-recommended",
                where,
                f"{arr.objects_expected} small chunk objects in a format 2 array: object "
                "stores pay one request per object for every listing and copy",
                "convert to zarr format 3 with shards (many chunks per object), e.g. "
                f"`zdu rechunk SRC DST --zarr-format 3 {_shard_options(arr)} --max-mem 1GiB`",
            )
        )
    if arr.objects_present < arr.objects_expected:
        missing = arr.objects_expected - arr.objects_present
        found.append(
            Finding(
                "info",
                "chunks-not-stored",
                where,
                f"{missing} of {arr.objects_expected} objects are not stored "
                f"({name_missing(arr.missing_keys, missing)}); zarr reads them as the fill "
                f"value {arr.fill_value!r}",
                "expected for sparse data; if data should be there, `zdu check STORE --deep` "
                "and a checksum manifest (`zdu manifest create STORE MANIFEST.json`, later "
                "`zdu manifest verify STORE MANIFEST.json`) tell deleted from never-written",
            )
        )
    found += _access_findings(arr, limits)
    return found


def _access_findings(arr: ArrayDiagnosis, limits: Limits) -> list[Finding]:
    names = arr.dimension_names or ()
    if len(arr.shape) < 3 or len(names) != len(arr.shape):
        return []
    time_axes = [i for i, n in enumerate(names) if isinstance(n, str) and n.lower() in _TIME_NAMES]
    if not time_axes:
        return []
    t = time_axes[0]
    length, step = arr.shape[t], arr.chunks[t]
    others = [i for i in range(len(arr.shape)) if i != t]
    if step == 1 and length >= limits.long_axis:
        return [
            Finding(
                "warning",
                "chunking-fights-time-series",
                arr.path,
                f"chunks hold one step of '{names[t]}' ({length} steps): reading the time "
                f"series at one point touches {length} chunks",
                "if time series are read, chunk along time too (e.g. tens to hundreds of "
                "steps per chunk, smaller in space); `zdu analyze STORE --pattern "
                "time-series` computes a balanced shape",
            )
        ]
    tiny_space = all(arr.chunks[i] == 1 for i in others)
    if tiny_space and math.prod(arr.shape[i] for i in others) >= limits.long_axis:
        count = math.prod(arr.shape[i] for i in others)
        return [
            Finding(
                "warning",
                "chunking-fights-maps",
                arr.path,
                f"chunks hold a single spatial point: reading one map (one '{names[t]}' "
                f"step) touches {count} chunks",
                "chunk in space too (e.g. 100-1000 points per spatial axis); `zdu analyze "
                "STORE --pattern spatial` computes a balanced shape",
            )
        ]
    return []


def dimension_findings(arrays: Sequence[ArrayDiagnosis]) -> list[Finding]:
    """xarray-style groups: one length per dimension name, names on every array."""
    by_group: dict[str, list[ArrayDiagnosis]] = defaultdict(list)
    for arr in arrays:
        by_group[arr.path.rpartition("/")[0]].append(arr)
    found: list[Finding] = []
    for group, members in sorted(by_group.items()):
        named = [a for a in members if a.dimension_names]
        if not named:
            continue
        lengths: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
        for arr in named:
            for name, size in zip(arr.dimension_names or (), arr.shape, strict=False):
                if isinstance(name, str):
                    lengths[name][size].append(arr.path)
        for name, sizes in sorted(lengths.items()):
            if len(sizes) > 1:
                detail = "; ".join(f"{n} in {', '.join(p)}" for n, p in sorted(sizes.items()))
                found.append(
                    Finding(
                        "error",
                        "dimension-length-mismatch",
                        group,
                        f"dimension '{name}' has different lengths in one group ({detail}): "
                        "xarray cannot open the group as a Dataset",
                        "rename the dimension of the odd arrays, or move them to their own group",
                    )
                )
        unnamed = [a.path for a in members if not a.dimension_names]
        if unnamed:
            found.append(
                Finding(
                    "warning",
                    "dimension-names-missing",
                    group,
                    f"{len(unnamed)} array(s) have no dimension names while others do "
                    f"({', '.join(unnamed[:5])}): xarray.open_zarr fails on this group",
                    "add dimension_names (format 3) or the _ARRAY_DIMENSIONS attribute "
                    "(format 2) to those arrays",
                )
            )
    return found


def store_findings(objects: int, limits: Limits) -> list[Finding]:
    """Store-level findings (object count)."""
    if objects <= limits.max_objects:
        return []
    return [
        Finding(
            "warning",
            "too-many-objects",
            "",
            f"the store holds {objects} objects (more than {limits.max_objects}): listing, "
            "copying and deleting it cost one request per object",
            "use larger chunks or format 3 shards; keep consolidated metadata current so "
            "readers never list",
        )
    ]


def limits_from(options: Mapping[str, Any]) -> Limits:
    """Build :class:`Limits` from the ``doctor`` config mapping (sizes as str or int)."""
    from dask.utils import parse_bytes

    def size(key: str, default: int) -> int:
        value = options.get(key)
        return default if value is None else int(parse_bytes(value))

    default = Limits()
    return Limits(
        min_chunk_bytes=size("min-chunk-size", default.min_chunk_bytes),
        max_chunk_bytes=size("max-chunk-size", default.max_chunk_bytes),
        target_chunk_bytes=size("target-chunk-size", default.target_chunk_bytes),
        max_objects=int(options.get("max-objects") or default.max_objects),
        shard_hint_chunks=int(options.get("shard-hint-chunks") or default.shard_hint_chunks),
        long_axis=int(options.get("long-axis") or default.long_axis),
    )
