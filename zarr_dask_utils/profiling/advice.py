"""The exact ``zdu rechunk`` line for an array whose chunks are too small (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from zarr_dask_utils.profiling.verdict import TARGET_REQUEST_BYTES, grow_chunks

__all__ = ["rechunk_advice"]


def rechunk_advice(
    store: str,
    array: str,
    shape: Sequence[int],
    chunks: Sequence[int],
    stored_chunk_bytes: int,
    *,
    target_bytes: int = TARGET_REQUEST_BYTES,
) -> str | None:
    """Advice naming the ``zdu rechunk`` command that makes each request carry ~*target_bytes*.

    ``None`` when the chunks are big enough already or cannot grow.

    Examples
    --------
    >>> print(rechunk_advice("/d/x.zarr", "t2m", (1000, 1000), (10, 10), 100, target_bytes=1600))
    ... # doctest: +NORMALIZE_WHITESPACE
    bigger chunks (16x fewer requests): `zdu rechunk /d/x.zarr/t2m /d/x.rechunked.zarr
    --chunks 40,40 --max-mem 1GiB` (10,10 -> 40,40, ~1.6 kB stored per chunk)
    """
    factor = target_bytes / max(stored_chunk_bytes, 1)
    if factor < 2:
        return None
    new = grow_chunks(shape, chunks, 2 ** math.ceil(math.log2(factor)))
    grown = math.prod(new) / max(math.prod(chunks), 1)
    if grown < 2:
        return None
    src = f"{store.rstrip('/')}/{array}" if array else store
    stem = store.rstrip("/")
    stem = stem[: -len(".zarr")] if stem.endswith(".zarr") else stem
    old_s, new_s = ",".join(map(str, chunks)), ",".join(map(str, new))
    size = stored_chunk_bytes * grown
    unit = "MB" if size >= 1e6 else "kB"
    amount = size / (1e6 if size >= 1e6 else 1e3)
    return (
        f"bigger chunks ({grown:.0f}x fewer requests): `zdu rechunk {src} {stem}.rechunked.zarr "
        f"--chunks {new_s} --max-mem 1GiB` ({old_s} -> {new_s}, ~{amount:.1f} {unit} stored "
        "per chunk)"
    )
