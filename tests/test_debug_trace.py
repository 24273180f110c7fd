"""ZarrDebugger and enable_debug_mode: counts checked against an independent witness.

The witness is :class:`~zarr_dask_utils.testing.oplog.OpLogStore`, which appends one line per
operation to a file from whichever process runs it; the debugger's records must match it
operation for operation, on local disk and on the S3 server, with the work on worker processes.
"""

from __future__ import annotations

import io
import json
import logging
from collections import Counter

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

from zarr_dask_utils import (
    ZarrDebugger,
    disable_debug_mode,
    enable_debug_mode,
    open_store,
    validate_metadata,
    walk_hierarchy,
)
from zarr_dask_utils._core.pure.trace_report import array_of
from zarr_dask_utils.testing.oplog import OpLogStore, read_oplog


def _counts(ops) -> Counter:
    return Counter((op.op, op.key) for op in ops)


@pytest.mark.parametrize("store_case", ["v2-local", "v3-local", "v3-s3"], indirect=True)
def test_counts_equal_the_witness_across_worker_processes(sample, client, tmp_path):
    log = tmp_path / "ops.log"
    witness = OpLogStore(open_store(sample.url, storage_options=sample.storage_options), log)
    with ZarrDebugger() as dbg:
        report = walk_hierarchy(witness, client=client, progress=False)
        validate_metadata(witness, client=client, progress=False)
    assert len(report.arrays) == 4
    seen = read_oplog(log)
    assert sum(seen.values()) > 0
    assert _counts(dbg.operations) == seen  # every operation, exactly once
    trace = dbg.report(sample.url)
    assert trace.request_count == sum(seen.values())
    workers = [p for p in trace.by_process() if p.startswith("worker ")]
    assert workers, trace.by_process()  # the reads ran on worker processes and were collected
    gets = [op for op in dbg.operations if op.op == "get" and op.nbytes]
    assert gets
    assert trace.by_op()["get"].nbytes == sum(op.nbytes for op in gets)


def test_plain_zarr_code_through_wrap(tmp_path):
    log = tmp_path / "ops.log"
    with ZarrDebugger() as dbg:
        store = dbg.wrap(OpLogStore(LocalStore(tmp_path / "a.zarr"), log))
        arr = zarr.create_array(store, shape=(8, 8), chunks=(4, 4), dtype="f8", fill_value=0)
        arr[:] = np.arange(64.0).reshape(8, 8)
        assert arr[5, 5] == 45.0
    assert _counts(dbg.operations) == read_oplog(log)
    report = dbg.report()
    by_op = report.by_op()
    assert by_op["set"].count == 5  # zarr.json + 4 chunks
    assert by_op["set"].nbytes == sum(op.nbytes for op in dbg.operations if op.op == "set")
    assert report.by_array()[""].count >= 5
    assert by_op["set"].p50_ms <= by_op["set"].p99_ms <= by_op["set"].max_ms
    assert len(report.slowest(3)) == 3
    assert report.slowest(1)[0].seconds == max(op.seconds for op in dbg.operations)
    text = str(report)
    assert "store operation(s)" in text
    assert "set:" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["request_count"] == report.request_count
    assert data["by_op"]["set"]["count"] == 5
    assert "Store trace" in report._repr_html_()
    # after the block nothing more is recorded
    arr[0, 0] = 1.0
    assert _counts(dbg.operations) != read_oplog(log)


def test_nothing_is_wrapped_without_a_session(tmp_path):
    zarr.create_array(str(tmp_path / "a.zarr"), shape=(2,), dtype="i4")
    store = open_store(tmp_path / "a.zarr")
    assert type(store).__name__ == "LocalStore"
    with ZarrDebugger():
        assert type(open_store(tmp_path / "a.zarr")).__name__ == "TracingStore"


@pytest.mark.parametrize(
    ("key", "node"),
    [
        pytest.param("t2m/c/0/1", "t2m", id="v3-chunk"),
        pytest.param("a/b/t2m/c/0", "a/b/t2m", id="v3-nested"),
        pytest.param("c/0/1", "", id="v3-root-array"),
        pytest.param("t2m/0.1", "t2m", id="v2-chunk"),
        pytest.param("a/t2m/.zarray", "a/t2m", id="v2-doc"),
        pytest.param("zarr.json", "", id="root-doc"),
    ],
)
def test_array_of(key, node):
    assert array_of(key) == node


def test_enable_debug_mode_logs_structured_store_operations(tmp_path):
    stream = io.StringIO()
    enable_debug_mode(stream=stream)
    try:
        zarr.create_array(str(tmp_path / "a.zarr"), shape=(2,), dtype="i4")
        store = open_store(tmp_path / "a.zarr")
        assert type(store).__name__ == "TracingStore"
        zarr.open_array(store, mode="r")
        assert logging.getLogger("zarr").level == logging.DEBUG
    finally:
        disable_debug_mode()
    text = stream.getvalue()
    assert "logger=zarr_dask_utils.trace op=get key=zarr.json" in text
    assert "level=DEBUG" in text
    assert type(open_store(tmp_path / "a.zarr")).__name__ == "LocalStore"
    before = stream.getvalue()
    zarr.open_array(open_store(tmp_path / "a.zarr"), mode="r")
    assert stream.getvalue() == before  # handler removed


@pytest.mark.parametrize("store_case", ["v3-local"], indirect=True)
def test_cli_debug_prints_the_store_trace(sample, client):
    from click.testing import CliRunner

    from zarr_dask_utils.cli.main import cli

    args = ["--debug", "info", sample.url, "--json", "--scheduler", client.scheduler.address]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["zarr_format"] == 3  # the report is untouched on stdout
    assert "Store trace for" in result.stderr
    assert "store operation(s)" in result.stderr
    assert "worker " in result.stderr  # operations on the workers were collected


def _store_metrics(dask_scheduler):  # runs on the scheduler
    return {
        repr(key): value
        for key, value in dask_scheduler.cumulative_worker_metrics.items()
        if "zdu-store" in repr(key)
    }


@pytest.mark.parametrize("store_case", ["v3-local"], indirect=True)
def test_store_metrics_reach_the_dashboard(sample, client):
    import time

    with ZarrDebugger():
        walk_hierarchy(sample.url, client=client, progress=False)
    wanted = repr(("execute", "zdu-read-metadata", ("zdu-store", "get"), "bytes"))
    deadline = time.monotonic() + 60  # metrics travel with worker heartbeats
    metrics = client.run_on_scheduler(_store_metrics)
    while wanted not in metrics and time.monotonic() < deadline:
        time.sleep(0.5)
        metrics = client.run_on_scheduler(_store_metrics)
    assert metrics.get(wanted, 0) > 0, metrics


# --- zarr's store conformance suite on the tracing and witness wrappers ------------------------

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from zarr.core.buffer import Buffer, cpu  # noqa: E402
from zarr.core.sync import sync  # noqa: E402
from zarr.testing.store import StoreTests  # noqa: E402

from zarr_dask_utils._core.storage.trace import TracingStore  # noqa: E402
from zarr_dask_utils.testing.storetests import sync_store_tests  # noqa: E402


class _LocalWrapperTests:
    """Fixtures for a wrapper around a LocalStore in tmp_path (bytes written/read directly)."""

    buffer_cls = cpu.Buffer

    async def set(self, store: Any, key: str, value: Buffer) -> None:
        path = Path(store._store.root) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value.to_bytes())

    async def get(self, store: Any, key: str) -> Buffer:
        return self.buffer_cls.from_bytes((Path(store._store.root) / key).read_bytes())

    @pytest.fixture
    def open_kwargs(self, tmp_path: Path) -> dict[str, Any]:
        return {"store_cls": LocalStore, "root": str(tmp_path)}

    @pytest.fixture
    def store(self, open_kwargs: dict[str, Any]) -> Any:
        return sync(self.store_cls.open(**open_kwargs))

    @pytest.fixture
    def store_not_open(self, store_kwargs: dict[str, Any]) -> Any:
        return self.store_cls(**store_kwargs)

    def test_store_supports_writes(self, store: Any) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: Any) -> None:
        assert store.supports_listing


@sync_store_tests
class TestTracingStore(_LocalWrapperTests, StoreTests[TracingStore, cpu.Buffer]):
    """Every Store method of TracingStore behaves as the wrapped LocalStore's, while traced."""

    store_cls = TracingStore

    @pytest.fixture(autouse=True)
    def _session(self):
        with ZarrDebugger() as dbg:  # every suite runs while operations are recorded
            yield dbg

    @pytest.fixture
    def store_kwargs(self, tmp_path: Path) -> dict[str, Any]:
        return {"store": LocalStore(str(tmp_path))}

    def test_store_repr(self, store: TracingStore) -> None:
        assert "LocalStore" in repr(store)


@sync_store_tests
class TestOpLogStore(_LocalWrapperTests, StoreTests[OpLogStore, cpu.Buffer]):
    """The witness itself must be a faithful store."""

    store_cls = OpLogStore

    @pytest.fixture
    def store_kwargs(self, tmp_path: Path) -> dict[str, Any]:
        return {"store": LocalStore(str(tmp_path)), "log_path": tmp_path.parent / "w.log"}

    @pytest.fixture
    def open_kwargs(self, tmp_path: Path) -> dict[str, Any]:
        return {"store_cls": LocalStore, "root": str(tmp_path)}

    @pytest.fixture
    def store(self, tmp_path: Path) -> OpLogStore:
        return OpLogStore(sync(LocalStore.open(root=str(tmp_path))), tmp_path.parent / "w.log")

    def test_store_repr(self, store: OpLogStore) -> None:
        assert "LocalStore" in repr(store)


def test_every_store_method_is_recorded(tmp_path):
    from zarr.abc.store import RangeByteRequest
    from zarr.core.buffer import default_buffer_prototype

    proto = default_buffer_prototype()

    async def exercise(store: TracingStore) -> None:
        await store.set("a/zarr.json", cpu.Buffer.from_bytes(b"{}"))
        await store.set_if_not_exists("b", cpu.Buffer.from_bytes(b"12345"))
        assert await store.exists("b")
        await store.get_partial_values(
            proto, [("b", RangeByteRequest(0, 2)), ("a/zarr.json", None)]
        )
        assert sorted([k async for k in store.list()]) == ["a/zarr.json", "b"]
        assert [k async for k in store.list_prefix("a/")] == ["a/zarr.json"]
        assert sorted([k async for k in store.list_dir("")]) == ["a", "b"]
        await store.delete("b")

    with ZarrDebugger() as dbg:
        sync(exercise(dbg.wrap(LocalStore(str(tmp_path)))))  # type: ignore[arg-type]
    counts = Counter(op.op for op in dbg.operations)
    assert counts == {
        "set": 1,
        "set_if_not_exists": 1,
        "exists": 1,
        "get": 2,
        "list": 1,
        "list_prefix": 1,
        "list_dir": 1,
        "delete": 1,
    }
    partial = [op for op in dbg.operations if op.op == "get" and op.key == "b"]
    assert partial[0].nbytes == 2
