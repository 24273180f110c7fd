"""Request budgets: every store operation each public operation makes, counted exactly.

As xarray counts store calls in its instrumented-store tests, an I/O regression (an extra
``get`` of a document, a chunk read twice, a second listing) fails here instead of showing up
as a slower benchmark.  The counter is the project's own tracer, :class:`ZarrDebugger`: it
collects ``(op, key)`` records from the client and from the worker processes of the session
cluster, where the reads run.  A budget is compared with ``==``, so reading *less* fails too:
lower the budget in the same change that earns it.

What the tracer sees is the zarr Store API through a wrapper, so listings take the generic
path (one ``list`` plus one ``getsize`` per key) instead of ``os.scandir`` / one S3
``find(detail=True)``; ``get`` counts are the same on both paths.  Budgets hold for local
stores and the moto S3 server alike, formats 2 and 3 (the ``sample`` hierarchy: 3 groups,
4 arrays, 17 chunks, consolidated).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import zarr

from zarr_dask_utils import (
    ZarrDebugger,
    check_data_integrity,
    compare_stores,
    consolidate_metadata,
    validate_metadata,
    verify_chunks,
    walk_hierarchy,
)
from zarr_dask_utils.testing.builders import (
    SAMPLE_ARRAYS,
    SAMPLE_GROUPS,
    build_sample_hierarchy,
)

pytestmark = pytest.mark.cluster

Budget = Counter[tuple[str, str]]

_ROOT_NAMES = ("zarr.json", ".zarray", ".zgroup")
# a backup folder (beside the store since issue 12 item 10; legacy: inside, under .zdu/backups)
_BACKUP = re.compile(r"^(\.zdu/backups/)?\d{8}T\d{6}Z-[0-9a-f]{6}/")


# --- what the sample hierarchy holds -------------------------------------------------------------


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def _group_docs(fmt: int) -> list[str]:
    names = ("zarr.json",) if fmt == 3 else (".zgroup", ".zattrs")  # every sample group has attrs
    return [_join(p, n) for p in SAMPLE_GROUPS for n in names]


def _array_docs(fmt: int, arrays: Iterable[str] = SAMPLE_ARRAYS) -> list[str]:
    names = ("zarr.json",) if fmt == 3 else (".zarray", ".zattrs")
    return [_join(p, n) for p in arrays for n in names]


def _chunk_keys(fmt: int, arrays: Iterable[str] = SAMPLE_ARRAYS, *, relative: bool = False):
    keys = []
    for path in arrays:
        shape, chunks, _, _ = SAMPLE_ARRAYS[path]
        grid = [range(math.ceil(s / c)) for s, c in zip(shape, chunks, strict=True)]
        for index in itertools.product(*grid):
            name = "c/" + "/".join(map(str, index)) if fmt == 3 else ".".join(map(str, index))
            keys.append(name if relative else _join(path, name))
    return keys


def _documents(fmt: int, *, consolidated: bool = True) -> list[str]:
    extra = [".zmetadata"] if fmt == 2 and consolidated else []  # format 3: inside zarr.json
    return _group_docs(fmt) + _array_docs(fmt) + extra


def _ops(op: str, keys: Iterable[str]) -> Budget:
    return Counter((op, key) for key in keys)


# --- budget building blocks (each named for the step that spends it) -----------------------------


def probe() -> Budget:
    """Format detection: one ``get`` of each root document name, present or not."""
    return _ops("get", _ROOT_NAMES)


def walk(fmt: int, *, consolidated: bool = True) -> Budget:
    """The hierarchy walk: one listing, then every metadata document once."""
    return _ops("list", [""]) + _ops("get", _documents(fmt, consolidated=consolidated))


def sizes(fmt: int) -> Budget:
    """Object sizes through a wrapped store: one ``getsize`` per stored key (no ``get``)."""
    return _ops("getsize", _documents(fmt) + _chunk_keys(fmt))


def worker_array_opens(fmt: int) -> Budget:
    """Each array opened once more on the worker that reads its chunks (format known)."""
    return _ops("get", _array_docs(fmt))


def chunks(fmt: int) -> Budget:
    """Every chunk read exactly once."""
    return _ops("get", _chunk_keys(fmt))


# --- the budgets ---------------------------------------------------------------------------------


def _measure(client: Any, run: Callable[[], Any]) -> tuple[Any, Budget]:
    with ZarrDebugger(client) as dbg:
        report = run()
    seen = Counter((op.op, _BACKUP.sub("<stamp>/", op.key)) for op in dbg.operations)
    return report, seen


def _assert_budget(seen: Budget, budget: Budget) -> None:
    over, under = seen - budget, budget - seen
    assert seen == budget, f"over budget: {dict(over)}; under budget: {dict(under)}"


@pytest.fixture
def kw(sample: Any, client: Any) -> dict[str, Any]:
    return {"storage_options": sample.storage_options, "client": client, "progress": False}


def test_walk_hierarchy_reads_each_document_once(sample, client, kw):
    report, seen = _measure(client, lambda: walk_hierarchy(sample.url, **kw))
    assert len(report.arrays) == len(SAMPLE_ARRAYS)
    # probe: 3 gets (root document read twice: probe + walk; one probe should serve both)
    # walk: 1 list + each of the 15 (v2) / 7 (v3) documents once; no chunk is read
    _assert_budget(seen, probe() + walk(sample.zarr_format))


def test_validate_metadata_lists_once_and_reads_each_document_once(sample, client, kw):
    report, seen = _measure(client, lambda: validate_metadata(sample.url, **kw))
    assert report.ok, report
    # probe 3 gets + 1 list + each document once (consolidated metadata checked from the
    # documents already read: no second read of .zmetadata / zarr.json)
    _assert_budget(seen, probe() + walk(sample.zarr_format))


def test_shallow_integrity_check_reads_no_chunk(sample, client, kw):
    report, seen = _measure(client, lambda: check_data_integrity(sample.url, **kw))
    assert report.ok, report
    # probe + walk + sizes of every key (inventory); zero chunk gets
    _assert_budget(seen, probe() + walk(sample.zarr_format) + sizes(sample.zarr_format))


def test_deep_integrity_check_reads_each_chunk_once(sample, client, kw):
    fmt = sample.zarr_format
    report, seen = _measure(client, lambda: check_data_integrity(sample.url, deep=True, **kw))
    assert report.ok, report
    budget = (
        probe()  # 3 gets
        + walk(fmt)  # 1 list + every document once
        + sizes(fmt)  # inventory: one getsize per key
        + worker_array_opens(fmt)  # each array's document(s) once more, on its worker
        + chunks(fmt)  # 17 chunks, each exactly once
        # format 2: the deep plan reads .zmetadata once more (format 3 plans from the probe's
        # zarr.json, which embeds the consolidated metadata)
        + (_ops("get", [".zmetadata"]) if fmt == 2 else Counter())
    )
    _assert_budget(seen, budget)


def test_verify_chunks_reads_each_chunk_once(sample, client, kw):
    fmt = sample.zarr_format
    url = f"{sample.url}/climate/t2m"
    report, seen = _measure(client, lambda: verify_chunks(url, sample_rate=1, **kw))
    assert report.ok, report
    budget = (
        probe()  # 3 gets at the array's root
        # zarr opens the array on the client with the format unknown: it asks for all three
        + _ops("get", ["zarr.json", ".zarray", ".zattrs"])
        + _ops("get", ["zarr.json"] if fmt == 3 else [".zarray", ".zattrs"])  # worker open
        + _ops("get", _chunk_keys(fmt, ["climate/t2m"], relative=True))  # 8 chunks, once each
    )
    _assert_budget(seen, budget)


def test_compare_identical_stores_reads_each_chunk_of_each_side_once(sample, client, kw):
    fmt = sample.zarr_format
    other = sample.child("copy.zarr")
    build_sample_hierarchy(other, zarr_format=fmt, storage_options=sample.storage_options)
    report, seen = _measure(
        client,
        lambda: compare_stores(sample.url, other, b_storage_options=sample.storage_options, **kw),
    )
    assert report.ok, report
    # Both sides have the same keys, so each per-side budget counts twice: per side, probe +
    # 1 list + every document once + each array opened once more on a worker + each chunk once.
    one_side = probe() + walk(fmt) + worker_array_opens(fmt) + chunks(fmt)
    _assert_budget(seen, one_side + one_side)


def test_consolidate_current_metadata_reads_each_document_once_and_writes_nothing(
    sample, client, kw
):
    report, seen = _measure(client, lambda: consolidate_metadata(sample.url, **kw))
    assert report.ok, report
    # probe + 1 list + each document once; already current: zero writes, zero backups
    _assert_budget(seen, probe() + walk(sample.zarr_format))


@pytest.mark.parametrize("store_case", ["v2-local", "v3-local", "v3-s3"], indirect=True)
def test_consolidate_writes_only_the_consolidated_document(store_case, client):
    fmt = store_case.zarr_format
    so = store_case.storage_options
    build_sample_hierarchy(store_case.url, zarr_format=fmt, storage_options=so, consolidated=False)
    kw = {"storage_options": so, "client": client, "progress": False}
    report, seen = _measure(client, lambda: consolidate_metadata(store_case.url, **kw))
    assert report.ok, report
    if fmt == 2:
        writes = _ops("set", [".zmetadata"])  # a new document: nothing to back up
    else:  # the root zarr.json is rewritten: its old version is backed up first
        writes = _ops("set", ["<stamp>/zarr.json", "zarr.json"])  # <stamp>/ of the sibling
    # probe + 1 list + each (unconsolidated) document once, then the writes above only
    _assert_budget(seen, probe() + walk(fmt, consolidated=False) + writes)
    assert zarr.open_group(
        store_case.store(read_only=True), mode="r"
    ).metadata.consolidated_metadata
