"""stream_objects on a traced LocalStore: the direct file path, each read in the tracer.

A ``LocalStore`` wrapped by the store-operation tracer (``TracingStore``) is read from its files
as a plain one is, and every read is recorded as the tracer's own ``get`` would record it: one
``get`` per key with the bytes returned (0 for a missing object).  Checked against the records
of reading the same keys through ``TracingStore.get`` and against a counting store.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from zarr_dask_utils import ZarrDebugger
from zarr_dask_utils._core.storage import objectstream
from zarr_dask_utils._core.storage.objectstream import stream_objects
from zarr_dask_utils._core.storage.storeio import list_keys, read_keys
from zarr_dask_utils._core.storage.trace import TracingStore
from zarr_dask_utils.testing.counting import CountingStore


def _fill(store: zarr.storage.LocalStore, n: int = 12) -> list[str]:
    arr = zarr.create_array(store, shape=(n * 100,), chunks=(100,), dtype="i4", fill_value=-1)
    arr[:] = np.arange(n * 100, dtype="i4")
    return sorted(k for k in list_keys(store) if k.startswith("c/"))


def _gets(dbg: ZarrDebugger) -> list[tuple[str, str, int]]:
    return [(op.op, op.key, op.nbytes) for op in dbg.operations]


@pytest.mark.parametrize("slow", [False, True], ids=["in-line", "read-ahead"])
def test_traced_local_stream_reads_files_and_records_each_read(tmp_path, monkeypatch, slow):
    plain = zarr.storage.LocalStore(tmp_path / "a.zarr")
    keys = _fill(plain)
    wanted = [*keys[:6], "c/999", *keys[6:]]  # a missing key among them
    expected = read_keys(plain, wanted)
    monkeypatch.setattr(objectstream, "SLOW_READ", 1e30 if slow else 0.0)
    monkeypatch.setattr(objectstream, "_store_stream", None)  # the store.get path would fail

    with ZarrDebugger() as dbg:
        traced = TracingStore(plain)
        got = [None if v is None else bytes(v) for v in stream_objects(traced, wanted, depth=3)]

    assert got == [expected[k] for k in wanted]
    sizes = [0 if expected[k] is None else len(expected[k]) for k in wanted]
    assert _gets(dbg) == [("get", k, n) for k, n in zip(wanted, sizes, strict=True)]
    assert all(op.store == f"file://{plain.root}" for op in dbg.operations)
    assert all(op.seconds >= 0 and op.start > 0 for op in dbg.operations)


def test_traced_stream_records_what_the_store_path_records(tmp_path):
    plain = zarr.storage.LocalStore(tmp_path / "a.zarr")
    keys = [*_fill(plain), "c/999"]
    with ZarrDebugger() as direct:
        list(stream_objects(TracingStore(plain), keys))
    with ZarrDebugger() as through_get:  # the same reads through TracingStore.get
        list(objectstream._store_stream(TracingStore(plain), keys, 4))
    assert sorted(_gets(direct)) == sorted(_gets(through_get))  # requests in flight: any order
    counting = CountingStore(plain)
    list(stream_objects(counting, keys))  # a counting store is read through its get
    assert len(direct.operations) == counting.gets
    assert sum(op.nbytes for op in direct.operations) == counting.bytes_read
