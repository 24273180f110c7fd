"""Pure planning for the integrity checks: batches, samples, probabilities, findings.

No I/O and no Dask: grids and inventories in, batches and findings out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from zarr_dask_utils._core.chunkgrid import ArrayGrid
from zarr_dask_utils._core.inventory import MAX_LISTED, ArrayInventory, Inventory, KeyList
from zarr_dask_utils._core.reports import Finding, Severity

__all__ = [
    "MISSING_NOTE",
    "Segment",
    "aligned_block",
    "batch_bounds",
    "classify_decode_error",
    "inventory_findings",
    "largest_first",
    "miss_probability",
    "partition_keys",
    "plan_batches",
    "sample_indices",
    "smallest_detectable",
]

MissingPolicy = Literal["info", "warning", "error"]

#: Said in every report that counts missing chunks.
MISSING_NOTE = (
    "zarr reads a chunk that is not stored as the fill value (and zarr 3 does not store chunks "
    "equal to the fill value), so a deleted chunk is invisible to decoding; only a checksum "
    "manifest (`zdu manifest create` now, `zdu manifest verify` later) or a comparison with "
    "a copy (`zdu compare`) can tell a deleted chunk from one never written"
)


@dataclass(frozen=True, slots=True)
class Segment:
    """Objects ``start <= index < stop`` (C order over the storage grid) of one array."""

    path: str
    start: int
    stop: int


def batch_bounds(total: int, batch_bytes: int, parallelism: int = 1) -> list[int]:
    """Byte offsets where batches end, for *total* bytes run by *parallelism* threads.

    The number of batches is the smallest that keeps them under *batch_bytes*, rounded up to
    a multiple of *parallelism* (so every thread gets the same work) unless that would make
    batches smaller than a quarter of *batch_bytes*.  With several threads each batch of the
    last round is cut into a half and two quarters: run largest first, threads that finish
    early take the small pieces, so the run ends within a quarter batch of its ideal time even
    when the scheduler has handed one thread an extra batch ahead of time.

    Examples
    --------
    >>> batch_bounds(800, 100, parallelism=1)
    [100, 200, 300, 400, 500, 600, 700, 800]
    >>> batch_bounds(800, 100, parallelism=2)
    [100, 200, 300, 400, 500, 600, 650, 675, 700, 750, 775, 800]
    """
    if total <= 0:
        return []
    count = -(-total // max(1, batch_bytes))
    if parallelism > 1:
        rounded = -(-count // parallelism) * parallelism
        if total // rounded >= batch_bytes // 4:
            count = rounded
    bounds = [(k + 1) * total // count for k in range(count)]
    if parallelism > 1 and count >= 2 * parallelism:
        head, tail = bounds[:-parallelism], bounds[-parallelism - 1 :]
        cuts = [a + (b - a) * k // 4 for a, b in itertools.pairwise(tail) for k in (2, 3)]
        bounds = head + sorted(cuts + tail[1:])
    return bounds


def aligned_block(
    shape: Sequence[int], chunks: Sequence[int], itemsize: int, limit: int
) -> tuple[int, ...]:
    """A block shape made of whole *chunks*, at most about *limit* bytes (at least one chunk).

    Grows the last dimensions first (contiguous in C order), doubling the chunks per block
    while it fits, never beyond the array.

    Examples
    --------
    >>> aligned_block((512, 256, 256), (512, 32, 32), 4, 32 * 2**20)
    (512, 128, 128)
    >>> aligned_block((100,), (10,), 8, 1)
    (10,)
    """
    block = [min(c, s) if s else c for c, s in zip(chunks, shape, strict=True)]
    grown = True
    while grown:
        grown = False
        for d in reversed(range(len(block))):
            bigger = min(block[d] * 2, max(shape[d], block[d]))
            if bigger == block[d]:
                continue
            if math.prod(block[:d]) * bigger * math.prod(block[d + 1 :]) * itemsize > limit:
                continue
            block[d] = bigger
            grown = True
    return tuple(block)


def plan_batches(
    arrays: Mapping[str, tuple[int, int]], batch_bytes: int, parallelism: int = 1
) -> list[tuple[Segment, ...]]:
    """Split every array's objects into batches of at most about *batch_bytes* bytes.

    Batches are cut at the byte offsets of :func:`batch_bounds` over the concatenated arrays
    (sorted by path); an object belongs to the batch its first byte falls in, so small arrays
    share a batch.  Run them in order: the small ones of the last round come last.

    Parameters
    ----------
    arrays
        Array path → (number of objects in the grid, uncompressed bytes per object).
    batch_bytes
        Largest uncompressed bytes per batch (one task each), give or take one object.
    parallelism
        Threads that will run the batches.

    Returns
    -------
    list of tuple of Segment
        Every object of every array exactly once, in path and index order.
    """
    items = [(path, arrays[path][0], max(1, arrays[path][1])) for path in sorted(arrays)]
    items = [item for item in items if item[1] > 0]
    total = sum(n * per for _, n, per in items)
    bounds = batch_bounds(total, batch_bytes, parallelism)
    batches: list[list[Segment]] = [[] for _ in bounds]
    offset = 0
    k = 0
    for path, n, per in items:
        j = 0
        while j < n:
            while bounds[k] <= offset + j * per:  # the batch this object's first byte is in
                k += 1
            # objects of batch k start below bounds[k]
            stop = min(n, max(j + 1, -(-(bounds[k] - offset) // per)))
            batches[k].append(Segment(path, j, stop))
            j = stop
        offset += n * per
    return [tuple(b) for b in batches if b]


def largest_first(
    batches: Sequence[tuple[Segment, ...]], arrays: Mapping[str, tuple[int, int]]
) -> list[tuple[Segment, ...]]:
    """*batches* by uncompressed bytes, largest first (ties keep their order).

    The order to run them in: the small pieces :func:`batch_bounds` cuts for the last round
    come last.  *arrays* is what :func:`plan_batches` was given.
    """
    return sorted(batches, key=lambda b: -sum((x.stop - x.start) * arrays[x.path][1] for x in b))


def sample_indices(n_total: int, sample_rate: float, seed: int) -> list[int]:
    """A reproducible sample (sorted, without replacement) of ``ceil(rate * n)`` indices."""
    if n_total == 0:
        return []
    n = min(n_total, max(1, math.ceil(sample_rate * n_total)))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_total, size=n, replace=False))


def miss_probability(n_total: int, n_sampled: int, n_bad: int) -> float:
    """Chance that a sample of *n_sampled* of *n_total* chunks misses all *n_bad* bad ones.

    Hypergeometric: ``C(N - k, n) / C(N, n)``, computed in log space for large grids.
    """
    if n_bad <= 0:
        return 1.0
    if n_sampled > n_total - n_bad:
        return 0.0
    log_p = (
        math.lgamma(n_total - n_bad + 1)
        - math.lgamma(n_total - n_bad - n_sampled + 1)
        - math.lgamma(n_total + 1)
        + math.lgamma(n_total - n_sampled + 1)
    )
    return min(1.0, math.exp(log_p))


def smallest_detectable(n_total: int, n_sampled: int, confidence: float = 0.95) -> int:
    """The smallest number of bad chunks the sample finds at least one of with *confidence*."""
    if n_sampled <= 0 or n_total <= 0:
        return n_total + 1
    low, high = 1, n_total
    while low < high:
        mid = (low + high) // 2
        if 1.0 - miss_probability(n_total, n_sampled, mid) >= confidence:
            high = mid
        else:
            low = mid + 1
    return low


_ERROR_PATTERNS: Sequence[tuple[str, str]] = (
    ("checksum", "chunk-checksum-mismatch"),
    ("reshape", "chunk-wrong-size"),
    ("buffer size", "chunk-wrong-size"),
    ("size", "chunk-wrong-size"),
)


def classify_decode_error(message: str) -> str:
    """Finding code for a decode exception message (a table, first match wins)."""
    lowered = message.lower()
    for pattern, code in _ERROR_PATTERNS:
        if pattern in lowered:
            return code
    return "chunk-decode-error"


# --- findings from an inventory ---------------------------------------------------------------

_CLASS_FINDINGS: Mapping[str, tuple[Severity, str, str, str]] = {
    "out_of_grid": (
        "error",
        "chunk-key-outside-grid",
        "chunk key lies outside the grid {grid} of array {path!r}: the shape was shrunk after "
        "writing (this data is invisible), or the object belongs elsewhere",
        "if the array should be larger, restore its shape; otherwise delete the stray object",
    ),
    "invalid": (
        "warning",
        "chunk-key-invalid",
        "object inside array {path!r} is not a chunk key of its encoding",
        "remove the stray object, or fix the chunk key encoding in the array metadata",
    ),
    "partial": (
        "warning",
        "partial-write-leftover",
        "temporary file of an interrupted write (zarr writes <key>.<uuid>.partial, then "
        "renames it); the write it belonged to did not finish",
        "check the chunk it was meant to replace, then delete the leftover once no writer runs",
    ),
    "zero_byte": (
        "error",
        "chunk-zero-bytes",
        "chunk object is empty (0 bytes): no codec decodes it; a writer or copy failed",
        "rewrite the chunk from the source (or delete it to read it as fill value)",
    ),
    "too_small": (
        "error",
        "chunk-too-small",
        "chunk object is smaller than its codecs allow ({low} bytes): it is truncated",
        "rewrite the chunk from the source; `zdu check --deep` shows whether it decodes",
    ),
    "too_large": (
        "warning",
        "chunk-too-large",
        "chunk object is larger than its codecs could produce (at most {high} bytes)",
        "check that the metadata (dtype, chunks, codecs) belongs to this data",
    ),
}


def _listed(severity: Severity, code: str, kl: KeyList, message: str, fix: str) -> list[Finding]:
    found = [Finding(severity, code, k, message, fix) for k in kl.keys]
    if kl.count > len(kl.keys):
        more = f"... and {kl.count - len(kl.keys)} more like the above ({kl.count} in all)"
        found.append(Finding(severity, code, kl.keys[-1] if kl.keys else "", more, fix))
    return found


def _array_findings(arr: ArrayInventory, missing_chunks: MissingPolicy) -> list[Finding]:
    found: list[Finding] = []
    low, high = arr.expected_size or (None, None)
    for cls, (severity, code, message, fix) in _CLASS_FINDINGS.items():
        text = message.format(grid=arr.grid.grid, path=arr.path or "/", low=low, high=high)
        found += _listed(severity, code, arr.lists[cls], text, fix)
    if arr.missing:
        what = "shards" if arr.grid.inner else "chunks"
        found.append(
            Finding(
                missing_chunks,
                "chunks-missing",
                arr.path,
                f"{arr.missing} of {arr.expected} {what} of array {arr.path or '/'!r} are not "
                f"stored and read as the fill value; {MISSING_NOTE}",
                None
                if missing_chunks == "info"
                else "restore the missing chunks from a copy, or accept them as fill value",
            )
        )
    return found


def inventory_findings(
    inventory: Inventory, *, missing_chunks: MissingPolicy = "info"
) -> list[Finding]:
    """Findings for every anomaly an :class:`~zarr_dask_utils._core.inventory.Inventory` holds."""
    found: list[Finding] = []
    for path in sorted(inventory.arrays):
        found += _array_findings(inventory.arrays[path], missing_chunks)
    severity, code, message, fix = _CLASS_FINDINGS["partial"]
    found += _listed(severity, code, inventory.partial, message, fix)
    found += _listed(
        "info",
        "unexpected-key",
        inventory.unexpected,
        "object is neither metadata nor chunk data of any array; zarr ignores it",
        "leave it if it is yours; otherwise remove it",
    )
    for path in inventory.unusable:
        found.append(
            Finding(
                "error",
                "array-grid-unknown",
                path,
                "the array document does not give a valid shape and chunk shape, so its chunks "
                "cannot be checked",
                "run `zdu validate` and fix the array metadata",
            )
        )
    return found


def uncompressed_bytes(grid: ArrayGrid, itemsize: int) -> int:
    """Uncompressed bytes of one stored object of *grid*."""
    return math.prod(grid.chunks) * itemsize


def cap(items: Iterable[Finding], limit: int = MAX_LISTED) -> list[Finding]:
    """At most *limit* findings plus one summary finding for the rest."""
    items = list(items)
    if len(items) <= limit:
        return items
    rest = items[limit]
    more = Finding(rest.severity, rest.code, rest.location, f"... and {len(items) - limit} more")
    return [*items[:limit], more]


def partition_keys(
    sizes: Mapping[str, int], batch_bytes: int, max_keys: int = 10_000
) -> list[list[str]]:
    """Split keys (in order) into batches of about *batch_bytes* stored bytes each."""
    batches: list[list[str]] = []
    current: list[str] = []
    total = 0
    for key, size in sizes.items():
        if current and (total + size > batch_bytes or len(current) >= max_keys):
            batches.append(current)
            current, total = [], 0
        current.append(key)
        total += size
    if current:
        batches.append(current)
    return batches
