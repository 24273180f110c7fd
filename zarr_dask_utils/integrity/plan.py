"""Pure planning for the integrity checks: samples, probabilities, findings.

No I/O and no Dask: grids and inventories in, samples and findings out.  Batches of objects
come from the shared :mod:`~zarr_dask_utils._core.pure.partition`, decode error codes from
:mod:`~zarr_dask_utils._core.decoding.classify`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal

import numpy as np

from zarr_dask_utils._core.checks.missing_keys import name_missing
from zarr_dask_utils._core.pure.chunkgrid import ArrayGrid
from zarr_dask_utils._core.pure.inventory import MAX_LISTED, ArrayInventory, Inventory, KeyList
from zarr_dask_utils._core.pure.reports import Finding, Severity, keys_finding

__all__ = [
    "MISSING_NOTE",
    "cap",
    "inventory_findings",
    "miss_probability",
    "name_missing",
    "sample_indices",
    "scan_workload",
    "smallest_detectable",
    "uncompressed_bytes",
]

MissingPolicy = Literal["info", "warning", "error"]

#: Said in every report that counts missing chunks.
MISSING_NOTE = (
    "zarr reads a chunk that is not stored as the fill value (and zarr 3 does not store chunks "
    "equal to the fill value), so a deleted chunk is invisible to decoding; only a checksum "
    "manifest (`zdu manifest create` now, `zdu manifest verify` later) or a comparison with "
    "a copy (`zdu compare`) can tell a deleted chunk from one never written"
)


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


# --- findings from an inventory ---------------------------------------------------------------

_CLASS_FINDINGS: Mapping[str, tuple[Severity, str, str, str]] = {
    "out_of_grid": (
        "error",
        "chunk-key-outside-grid",
        "chunk key lies outside the grid {grid} of array {path!r}: the shape was shrunk after "
        "writing (this data is invisible), or the object belongs elsewhere",
        "if the array should be larger, restore its shape (the data reappears); otherwise move "
        "the object out of the array, keeping a copy until you know what it is",
    ),
    "invalid": (
        "warning",
        "chunk-key-invalid",
        "object inside array {path!r} is not a chunk key of its encoding",
        "check the array's chunk key encoding first (the object may be data written with "
        "another encoding); if it is not data, move it out of the array",
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
        "rewrite the chunk from the source or a good copy (`zdu compare` finds one)",
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
        named = name_missing(arr.missing_keys, arr.missing)
        found.append(
            Finding(
                missing_chunks,
                "chunks-missing",
                arr.path,
                f"{arr.missing} of {arr.expected} {what} of array {arr.path or '/'!r} ({named}) "
                "are not stored and read as the fill value (why that can hide a deleted chunk: "
                "see the report's note, given once)",
                None
                if missing_chunks == "info"
                else "restore the missing chunks from a copy, or accept them as fill value",
            )
        )
    return found


def inventory_findings(
    inventory: Inventory, *, missing_chunks: MissingPolicy = "info"
) -> list[Finding]:
    """Findings for every anomaly of an :class:`~zarr_dask_utils._core.pure.inventory.Inventory`."""
    found: list[Finding] = []
    for path in sorted(inventory.arrays):
        found += _array_findings(inventory.arrays[path], missing_chunks)
    severity, code, message, fix = _CLASS_FINDINGS["partial"]
    found += _listed(severity, code, inventory.partial, message, fix)
    if inventory.unexpected.count:
        found.append(
            keys_finding(
                "info",
                "unexpected-key",
                "",
                inventory.unexpected.keys,
                inventory.unexpected.count,
                "neither metadata nor chunk data of any array; zarr ignores them",
                "nothing to fix: zarr ignores them (move them elsewhere only if you know they "
                "are stray)",
            )
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


def scan_workload(chunks: Mapping[str, tuple[int, int]], threshold: int | None) -> str | None:
    """Why decoding *chunks* (a deep scan, a sample) wants worker processes, or ``None``.

    Parameters
    ----------
    chunks
        Per array path: ``(number of chunks, uncompressed bytes of one chunk)``.
    threshold
        Chunk count from which processes pay off (``integrity.processes-from-chunks``);
        ``None`` or ``0``: never.

    Returns
    -------
    str or None
        E.g. ``"40,000 chunks of 64 KiB on average to decode (...): ..."``, for the engine
        line.

    Notes
    -----
    Each chunk costs the scan some Python work (key, read call, bookkeeping) that holds the
    GIL, so threads in one process serialise it, while decoding and I/O release it.  Worker
    processes pay a start-up of a few CPU-seconds instead; measured on 2 cores (see
    ``benchmarks/README.md``, "Threads or processes for the embedded deep scan") they win from
    tens of thousands of chunks, whatever their size.
    """
    total = sum(n for n, _ in chunks.values())
    if not threshold or total < threshold:
        return None
    mean = sum(n * size for n, size in chunks.values()) // max(total, 1)
    return (
        f"{total:,} chunks of {_size_text(mean)} on average to decode (integrity."
        f"processes-from-chunks={threshold:,}): per-chunk Python work holds the GIL on threads"
    )


def _size_text(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.3g} {unit}"
        size /= 1024
    return f"{size:.3g} GiB"


def cap(items: Iterable[Finding], limit: int = MAX_LISTED) -> list[Finding]:
    """At most *limit* findings plus one summary finding for the rest."""
    items = list(items)
    if len(items) <= limit:
        return items
    rest = items[limit]
    more = Finding(rest.severity, rest.code, rest.location, f"... and {len(items) - limit} more")
    return [*items[:limit], more]
