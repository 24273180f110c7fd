"""CPU µs per key of the listing and the inventory steps of a deep scan, each on its own.

Writes stores of tiny chunk files (the listing never reads them; only the key count matters):
a format 3 array with ``c/i/j/k`` keys and a format 2 array with ``i.j`` keys, each with
``--keys`` objects, then times, in this one process and back to back, every step the
inventory graph runs (:func:`~zarr_dask_utils._core.storage.listing.list_sizes_task`,
``drop_prefix_task``, :func:`~zarr_dask_utils._core.compute.inventory_graph.inventory_task`)
with ``time.process_time`` (user + system CPU, which other processes' load inflates less than
wall time), min of ``--repeat`` interleaved runs.  With ``--old DIR`` it also times copies of
the previous modules (``DIR/old_listing.py``, ``old_inventory.py``, ``old_inventory_graph.py``)
and checks that both give the same listing and the same inventory::

    python benchmarks/profile_inventory.py                       # 16,384 and 262,144 keys
    python benchmarks/profile_inventory.py --keys 16384 --repeat 9 --old /tmp/inv_bench
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import zarr
from zarr.storage import LocalStore

from zarr_dask_utils._core.compute import inventory_graph
from zarr_dask_utils._core.storage import listing
from zarr_dask_utils._core.storage.locations import resolve_location

STEPS = ("list_sizes_task", "drop_prefix_task", "inventory_task")


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def make_store(root: Path, nkeys: int, fmt: int, deep: bool = False) -> None:
    """An array at ``root/a`` with *nkeys* chunk files of 16 bytes (blosc: any size fits).

    Format 3: a 3-D grid, ``c/i/j/k`` (*deep*: one file per folder, ``c/i/j/0``); format 2:
    a 2-D grid, ``i.j`` in one folder.
    """
    ndim = 3 if fmt == 3 else 2
    side = 2 ** int(math.log2(nkeys) / (ndim - deep))  # grid (nkeys / side**(ndim-1), side, …)
    grid = (nkeys // side ** (ndim - 1 - deep),) + (side,) * (ndim - 1 - deep) + (1,) * deep
    assert math.prod(grid) == nkeys, "--keys must be a power of two"
    zarr.create_array(
        LocalStore(root),
        name="a",
        shape=tuple(g * 4 for g in grid),
        chunks=(4,) * ndim,
        dtype="uint8",
        zarr_format=fmt,  # type: ignore[arg-type]
    )
    blob = b"x" * 16
    base = root / "a"
    for index in range(nkeys):
        coords, rest = [], index
        for g in reversed(grid):
            rest, rem = divmod(rest, g)
            coords.append(str(rem))
        coords.reverse()
        if fmt == 3:
            folder = base.joinpath("c", *coords[:-1])
            folder.mkdir(parents=True, exist_ok=True)
            (folder / coords[-1]).write_bytes(blob)
        else:
            (base / ".".join(coords)).write_bytes(blob)


def cpu_us(fn: Callable[[], Any], nkeys: int) -> tuple[float, Any]:
    """CPU µs per key of one call, and its result."""
    start = time.process_time()
    out = fn()
    return (time.process_time() - start) / nkeys * 1e6, out


def as_plain(inv: Any) -> Any:
    """An inventory as nested dicts (so two modules' classes compare)."""
    return dataclasses.asdict(inv)


def profile(root: Path, nkeys: int, repeat: int, old: dict[str, ModuleType]) -> None:
    loc = resolve_location(str(root))
    backup = "zarr-dask-utils-backups"
    new = {"listing": listing, "graph": inventory_graph}
    sides: dict[str, dict[str, ModuleType]] = {"new": new}
    if old:
        sides["old"] = old
    best: dict[tuple[str, str], float] = {}
    results: dict[str, tuple[Any, ...]] = {}
    for _ in range(repeat):
        for side, mods in sides.items():
            t_list, sizes = cpu_us(lambda m=mods: m["listing"].list_sizes_task(loc), nkeys)
            t_drop, kept = cpu_us(
                lambda m=mods, s=sizes: m["graph"].drop_prefix_task(s, backup), nkeys
            )
            raw = {k: (root / k).read_bytes() for k in kept if k.endswith((".zarray", "zarr.json"))}
            t_inv, inv = cpu_us(
                lambda m=mods, k=kept, r=raw: m["graph"].inventory_task(k, r), nkeys
            )
            for step, t in zip(STEPS, (t_list, t_drop, t_inv), strict=True):
                best[(side, step)] = min(best.get((side, step), math.inf), t)
            results[side] = (list(sizes.items()), list(kept.items()), as_plain(inv))
    if old:
        assert results["old"] == results["new"], "old and new disagree"
    for step in STEPS:
        row = "  ".join(f"{side} {best[(side, step)]:6.2f}" for side in sides)
        print(f"  {step:18s} CPU µs/key (min of {repeat}): {row}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", default="16384,262144", help="key counts (powers of two)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--old", type=Path, default=None, help="folder with the old modules")
    args = parser.parse_args()
    old: dict[str, ModuleType] = {}
    if args.old:
        old = {
            "listing": _load(args.old / "old_listing.py", "old_listing"),
            "inventory": _load(args.old / "old_inventory.py", "old_inventory"),
            "graph": _load(args.old / "old_inventory_graph.py", "old_inventory_graph"),
        }
        old["graph"].build_inventory = old["inventory"].build_inventory  # type: ignore[attr-defined]
    tmp = Path(tempfile.mkdtemp(prefix="zdu-inventory-"))
    try:
        for nkeys in (int(n) for n in args.keys.split(",")):
            for fmt, deep in ((3, False), (3, True), (2, False)):
                root = tmp / f"f{fmt}-{nkeys}"
                make_store(root, nkeys, fmt, deep)
                layout = (
                    "c/i/j/0, one file per folder" if deep else ("c/i/j/k" if fmt == 3 else "i.j")
                )
                print(f"{nkeys:,} keys, format {fmt} ({layout}), load {os.getloadavg()[0]:.1f}")
                profile(root, nkeys, args.repeat, old)
                print(f"  load after {os.getloadavg()[0]:.1f}")
                shutil.rmtree(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
