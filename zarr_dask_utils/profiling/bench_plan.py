"""Pure planning of ``benchmark_store``: what to read and write, in which order, and the sums.

Ints, tuples and dicts in; frozen dataclasses and dicts out; no zarr I/O, no Dask, no clock.
:func:`plan_benchmark` turns the options and a listing sample into a :class:`BenchPlan`
(the concurrency levels of the curve, object sizes, the objects each stage reads, the
pattern selections fitted to a byte budget, the scratch prefix); :func:`summarize_curve`,
:func:`percentiles` and :func:`calibrated_params` turn what the workers measured into the
numbers of the report and the calibrated cost-model parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.pure.access_patterns import AccessPattern
from zarr_dask_utils._core.pure.array_spec import ArraySpec, Selection, fit_selection
from zarr_dask_utils._core.pure.cost_model import CostParams
from zarr_dask_utils._core.pure.keys import join_key

__all__ = [
    "DEFAULT_LEVELS",
    "DEFAULT_SIZES",
    "ArraySpec",
    "BenchPlan",
    "PatternRead",
    "calibrated_params",
    "fit_selection",
    "percentiles",
    "plan_benchmark",
    "requests_at",
    "scratch_prefix",
    "summarize_curve",
]

#: Requests in flight, per worker, for the concurrency-vs-throughput curve.
DEFAULT_LEVELS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Object sizes read (ranges of stored objects) and, with ``write=True``, written.
DEFAULT_SIZES: tuple[int, ...] = (256 * 2**10, 4 * 2**20)
_MIN_REQUESTS = 8  # a level issues at least this many requests (and at least `level`)
_WRITE_LEVELS = (1, 16)
_METADATA = (".zarray", ".zgroup", ".zattrs", ".zmetadata", "zarr.json")


@dataclass(frozen=True, slots=True)
class PatternRead:
    """One access pattern on one array, its selections fitted to the byte budget."""

    array: str
    pattern: str
    selections: tuple[Selection, ...]
    fitted: bool = False


@dataclass(frozen=True, slots=True)
class BenchPlan:
    """Everything ``benchmark_store`` will do, decided before the first request.

    Attributes
    ----------
    levels
        Requests in flight per worker for the curve (``1 … 256``).
    sizes
        Object sizes (bytes) read per stream and, with ``write``, written.
    curve_size
        Object size read at every level of the curve (the smallest of *sizes*).
    objects
        ``(key, size)`` of stored objects the streams read (largest first).
    latency_keys
        Objects whose first byte is timed.
    latency_samples
        First-byte requests timed (sequentially).
    patterns
        Pattern reads on the real arrays.
    write_levels
        Requests in flight when writing (``()`` without ``write``).
    scratch
        Prefix that writes go to (``None`` without ``write``); removed afterwards.
    """

    levels: tuple[int, ...]
    sizes: tuple[int, ...]
    objects: tuple[tuple[str, int], ...]
    latency_keys: tuple[str, ...]
    latency_samples: int
    patterns: tuple[PatternRead, ...]
    write_levels: tuple[int, ...] = ()
    scratch: str | None = None
    listing_prefixes: tuple[str, ...] = field(default=("",))

    @property
    def curve_size(self) -> int:
        """Object size read at every level of the curve."""
        return min(self.sizes)

    def reads(self, size: int, count: int) -> tuple[tuple[str, int], ...]:
        """*count* ``(key, bytes to read)`` requests of *size* bytes, cycling over the objects.

        An object smaller than *size* is read whole (its own size).
        """
        if not self.objects:
            return ()
        return tuple(
            (key, min(size, have))
            for key, have in (self.objects[i % len(self.objects)] for i in range(count))
        )

    def writes(self, size: int, level: int) -> tuple[str, ...]:
        """Scratch keys written for one (size, level) step."""
        if self.scratch is None:
            return ()
        return tuple(
            join_key(self.scratch, f"{size}-{level}-{i}") for i in range(requests_at(level))
        )


def requests_at(level: int) -> int:
    """Requests issued at *level* in flight: enough to fill it, never fewer than eight."""
    return max(level, _MIN_REQUESTS)


def scratch_prefix(node_path: str, token: str, existing: Sequence[str]) -> str:
    """A prefix for scratch objects that no existing key uses.

    Raises
    ------
    InvalidOptionError
        An existing key already lives under the prefix (a token collision: pass another).
    """
    prefix = join_key(node_path, f".zdu-bench-{token}")
    if any(key == prefix or key.startswith(prefix + "/") for key in existing):
        raise InvalidOptionError(
            f"The scratch prefix {prefix!r} already holds objects; benchmark_store never "
            "writes where user data is. Remove them or run again (a new prefix is drawn)."
        )
    return prefix


def _stream_objects(sample: Mapping[str, int], limit: int = 64) -> tuple[tuple[str, int], ...]:
    """Stored objects to read: chunks (not metadata documents), largest first, non-empty."""
    chunks = [(k, s) for k, s in sample.items() if s > 0 and k.rsplit("/", 1)[-1] not in _METADATA]
    if not chunks:  # a store of metadata only: read what there is
        chunks = [(k, s) for k, s in sample.items() if s > 0]
    chunks.sort(key=lambda item: (-item[1], item[0]))
    return tuple(chunks[:limit])


def plan_benchmark(
    sample: Mapping[str, int],
    arrays: Sequence[ArraySpec],
    patterns: Sequence[AccessPattern] | Mapping[str, Sequence[AccessPattern]],
    *,
    levels: Sequence[int] = DEFAULT_LEVELS,
    sizes: Sequence[int] = DEFAULT_SIZES,
    latency_samples: int = 16,
    pattern_budget: int = 256 * 2**20,
    max_arrays: int = 4,
    write: bool = False,
    node_path: str = "",
    token: str = "0",
    scratch_taken: Sequence[str] = (),
) -> BenchPlan:
    """Decide what the benchmark reads and writes.

    Parameters
    ----------
    sample
        ``{key: size}`` of stored objects (a listing, or its largest part).
    arrays
        The arrays of the store; the *max_arrays* largest are read with the patterns.
    patterns
        Access patterns per array path (a mapping), or the same patterns for all arrays.
    levels, sizes
        Concurrency levels of the curve; object sizes read (and written).
    latency_samples
        First-byte requests to time.
    pattern_budget
        Largest decoded size one pattern selection may read (big arrays are cut).
    write
        Also write into a scratch prefix below *node_path*.
    token
        Makes the scratch prefix unique.
    scratch_taken
        Keys the listing found under the scratch prefix (a collision: refused).

    Returns
    -------
    BenchPlan

    Raises
    ------
    InvalidOptionError
        A level or size is not positive, or nothing is listed.
    """
    levels = tuple(sorted({int(v) for v in levels}))
    sizes = tuple(sorted({int(v) for v in sizes}))
    if not levels or levels[0] < 1 or not sizes or sizes[0] < 1:
        raise InvalidOptionError(
            f"Concurrency levels {levels} and chunk sizes {sizes} must be positive integers, "
            "e.g. levels (1, 4, 16) and chunk_sizes ('256KiB', '4MiB')."
        )
    objects = _stream_objects(sample)
    if not objects and not write:
        raise InvalidOptionError(
            "The store holds no object to read: there is nothing to benchmark. Write some "
            "data first, or pass write=True (zdu bench --write) to measure writes."
        )
    chosen = sorted(arrays, key=lambda a: (-a.nbytes, a.path))[:max_arrays]
    reads = []
    for spec in chosen:
        for pattern in patterns.get(spec.path, ()) if isinstance(patterns, Mapping) else patterns:
            fitted = [fit_selection(sel, spec, pattern_budget) for sel in pattern.selections]
            reads.append(
                PatternRead(
                    spec.path,
                    pattern.name,
                    tuple(s for s, _ in fitted),
                    any(cut for _, cut in fitted),
                )
            )
    return BenchPlan(
        levels=levels,
        sizes=sizes,
        objects=objects,
        latency_keys=tuple(k for k, _ in objects[: max(1, latency_samples)]),
        latency_samples=latency_samples,
        patterns=tuple(reads),
        write_levels=_WRITE_LEVELS if write else (),
        scratch=scratch_prefix(node_path, token, [*sample, *scratch_taken]) if write else None,
    )


# --- sums of what the workers measured -------------------------------------------------------


def percentiles(samples: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    """Nearest-rank percentiles ``{"p50": …}`` of *samples* (``{}`` when empty)."""
    ordered = sorted(samples)
    if not ordered:
        return {}
    out = {}
    for q in qs:
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        out[f"p{q:g}"] = ordered[rank - 1]
    return out


def summarize_curve(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Add ``throughput`` (bytes/s) to stream rows, measured from first start to last end.

    Rows of one ``(scope, op, level, size)`` step (one per worker) are merged: requests and
    bytes add up, time runs from the earliest start to the latest end.
    """
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (row["scope"], row["op"], row["level"], row["size"])
        step = merged.setdefault(
            key,
            {
                "scope": row["scope"],
                "op": row["op"],
                "level": row["level"],
                "size": row["size"],
                "workers": 0,
                "requests": 0,
                "bytes": 0,
                "start": row["start"],
                "end": row["end"],
            },
        )
        step["workers"] += 1
        step["requests"] += row["requests"]
        step["bytes"] += row["bytes"]
        step["start"] = min(step["start"], row["start"])
        step["end"] = max(step["end"], row["end"])
    out = []
    for step in merged.values():
        seconds = max(step.pop("end") - step.pop("start"), 1e-9)
        step["seconds"] = seconds
        step["throughput"] = step["bytes"] / seconds
        out.append(step)
    return out


def calibrated_params(
    latencies: Sequence[float],
    curve: Sequence[Mapping[str, Any]],
    patterns: Sequence[Mapping[str, Any]],
    *,
    concurrency: int,
    source: str,
) -> CostParams:
    """Cost-model parameters measured on the store, for ``estimate_performance(params=…)``.

    ``latency`` is the median first-byte time; ``bandwidth`` the read rate of one worker in the
    step that moved the most bytes at a level up to the concurrency zarr uses, once the latency
    of each wave of requests is taken out (the model adds it back); ``decode_rate`` and
    ``compression_ratio`` come from the pattern reads (decoded bytes per second spent outside
    store requests; decoded / stored bytes).
    """
    defaults = CostParams()
    latency = percentiles(latencies).get("p50", defaults.latency)
    reads = [r for r in curve if r["scope"] == "worker" and r["op"] == "read"]
    under = [r for r in reads if r["level"] <= concurrency] or reads
    # the model adds latency per wave itself: bandwidth is what is left of a step's time, on
    # the step that moved the most bytes (small steps are all latency: their rest is noise)
    moved = [r for r in under if r["bytes"]]
    step = max(moved, key=lambda r: (r["bytes"], r["level"])) if moved else None
    rest = (
        max(
            step["seconds"] - math.ceil(step["requests"] / step["level"]) * latency,
            0.1 * step["seconds"],
            1e-9,
        )
        if step
        else 0.0
    )
    bandwidth = step["bytes"] / rest if step else defaults.bandwidth
    decoded = sum(p["bytes_decoded"] for p in patterns)
    stored = sum(p["bytes_read"] for p in patterns)
    decode_s = sum(p["decode_seconds"] for p in patterns)
    return CostParams(
        latency=max(latency, 1e-6),
        bandwidth=max(bandwidth, 1.0),
        decode_rate=decoded / decode_s if decoded and decode_s > 0 else defaults.decode_rate,
        concurrency=concurrency,
        compression_ratio=decoded / stored if decoded and stored else 1.0,
        source=source,
    )
