"""The one door (``_core.compute.operation``) and the one tree reduction (``_core.compute.reduce``).

Unit tests run the door on a local store with the session client and on a MemoryStore
(threads).  The one-cluster test runs every public operation **without** a client in a fresh
Python process (here the session client is the default, so no operation would start a cluster)
and counts the embedded clusters each one starts: exactly one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import dask
import pytest
from dask.delayed import delayed
from zarr.storage import MemoryStore

from zarr_dask_utils import InvalidOptionError
from zarr_dask_utils._core.compute.operation import current_operation, operation
from zarr_dask_utils._core.compute.reduce import tree_reduce
from zarr_dask_utils.testing.builders import build_sample_hierarchy


def _add(*xs: int) -> int:
    return sum(xs)


def _square(x: int) -> int:
    return x * x


# --- Operation on real stores -------------------------------------------------------------------


@pytest.mark.cluster
def test_local_store_runs_on_the_given_client_in_one_place(client, tmp_path):
    path = str(tmp_path / "a.zarr")
    build_sample_hierarchy(path)
    with operation("unit", client=client, progress=False) as op:
        location = op.open(path)
        assert op.locations == {"source": location}
        assert op.probes["source"].zarr_format == 3
        assert op.probes["source"].root_kind == "group"
        assert op.engine is None
        assert op.graphs == 0
        assert op.client is client
        assert op.threads == 2  # the session cluster: 2 workers x 1 thread
        first = op.run([delayed(_square)(3), delayed(_square)(4)])
        second = op.run([delayed(_add)(1, 2)])
    assert tuple(first) == (9, 16)
    assert tuple(second) == (3,)
    assert op.graphs == 2
    assert op.engine == second.engine
    assert op.engine.startswith("distributed: 2 worker(s)")


def test_memory_store_runs_on_threads_without_a_client():
    store = MemoryStore()
    build_sample_hierarchy(store, zarr_format=2)
    with operation("unit", progress=False) as op:
        op.open(store)
        assert op.probes["source"].zarr_format == 2
        assert not op.shareable
        assert op.client is None
        assert op.threads == (os.cpu_count() or 1)
        result = op.run([delayed(_square)(5)])
    assert tuple(result) == (25,)
    assert result.engine.startswith("threads in this process")


@pytest.mark.cluster
def test_roles_probe_on_demand_and_client_side_files(client, tmp_path):
    a, b = str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")
    build_sample_hierarchy(a)
    build_sample_hierarchy(b, zarr_format=2)
    with operation("unit", client=client, progress=False) as op:
        op.open(a)
        other = op.open(b, role="other", probe=False)
        assert set(op.probes) == {"source"}
        assert op.probe("other").zarr_format == 2  # probed when first asked
        assert set(op.probes) == {"source", "other"}
        target = op.open(str(tmp_path / "t.zarr"), role="target", read_only=False, probe=False)
        assert not target.read_only
        assert other.read_only
        # a file only this process writes: in memory, yet graphs still run on the cluster
        op.open("memory://m.json", role="output", read_only=False, probe=False, in_graph=False)
        assert op.client_side == {"output"}
        assert op.shareable
        assert op.client is client
        assert op.run([delayed(_square)(2)]).engine.startswith("distributed")
    assert list(op.locations) == ["source", "other", "target", "output"]


def test_a_role_is_opened_once():
    with operation("unit", progress=False) as op:
        op.open(MemoryStore(), probe=False)
        with pytest.raises(InvalidOptionError, match="opened 'source' twice"):
            op.open(MemoryStore(), probe=False)


def test_an_in_memory_graph_location_means_threads_even_beside_a_local_one(tmp_path):
    path = str(tmp_path / "a.zarr")
    build_sample_hierarchy(path)
    memory = MemoryStore()
    build_sample_hierarchy(memory)
    with operation("unit", progress=False) as op:
        op.open(path)
        op.open(memory, role="other")
        assert op.client is None
        assert op.run([delayed(_square)(2)]).engine.startswith("threads")


@pytest.mark.cluster
def test_nested_operations_reuse_the_parents_client_and_settings(client, tmp_path):
    path = str(tmp_path / "a.zarr")
    build_sample_hierarchy(path)
    assert current_operation() is None
    with operation("outer", client=client, progress=False) as outer:
        outer.open(path)
        assert current_operation() is outer
        with operation("inner") as inner:
            assert inner.parent is outer
            assert inner.progress is False  # inherited
            inner.open(path)
            assert inner.client is outer.client is client
            assert tuple(inner.run([delayed(_square)(6)])) == (36,)
        assert current_operation() is outer
        assert outer.graphs == 0  # the inner graph is the inner operation's
    assert current_operation() is None


# --- tree_reduce ---------------------------------------------------------------------------------


def _reduce_keys(tasks) -> list[str]:
    graph = dict(dask.base.collections_to_expr(tasks).__dask_graph__())
    return [str(k) for k in graph if str(k).startswith("zdu-unit-reduce")]


@pytest.mark.parametrize(
    ("n", "split_every", "keep", "left", "combines"),
    [
        pytest.param(10, 3, 1, 1, 4 + 2 + 1, id="10-by-3-to-one"),
        pytest.param(10, 8, 1, 1, 2 + 1, id="10-by-8-to-one"),
        pytest.param(64, 8, 32, 8, 8, id="keep-32"),
        pytest.param(5, 8, 32, 5, 0, id="few-enough-already"),
        pytest.param(1, 2, 1, 1, 0, id="single"),
    ],
)
def test_tree_reduce_fan_in_from_config(n, split_every, keep, left, combines):
    parts = [delayed(_square)(i) for i in range(n)]
    with dask.config.set({"zarr-dask-utils.graph.split-every": split_every}):
        reduced = tree_reduce(parts, _add, "unit", keep=keep)
    assert len(reduced) == left
    assert len(_reduce_keys(reduced)) == combines
    values = dask.compute(*reduced, scheduler="sync")
    assert sum(values) == sum(i * i for i in range(n))


def test_tree_reduce_default_fan_in_is_8_and_below_2_is_refused():
    parts = [delayed(_square)(i) for i in range(9)]
    [total] = tree_reduce(parts, _add, "unit")
    assert len(_reduce_keys([total])) == 2 + 1  # 9 -> 2 -> 1
    with pytest.raises(InvalidOptionError, match="fan-in of at least 2"):
        tree_reduce(parts, _add, "unit", split_every=1)


# --- one embedded cluster per operation -----------------------------------------------------------

#: (name, snippet): one public operation called WITHOUT a client.  The snippet (statements) runs in
#: a fresh process with ``zdu`` (the package), ``STORE`` (sample hierarchy, format 3), ``COPY``
#: (the same data in format 2), ``MANIFEST`` (a JSON path, written by the create row before the
#: verify row reads it), ``TMP`` (a scratch folder) and ``operation`` in scope.  Append rows for
#: new operations; rows run in order, in one process.
ONE_CLUSTER_ROWS: list[tuple[str, str]] = [
    ("walk_hierarchy", "zdu.walk_hierarchy(STORE, progress=False)"),
    ("diagnose_zarr_store", "zdu.diagnose_zarr_store(STORE, progress=False)"),
    ("check_data_integrity", "zdu.check_data_integrity(STORE, progress=False)"),
    ("check_data_integrity deep", "zdu.check_data_integrity(COPY, deep=True, progress=False)"),
    (
        "verify_chunks",
        "zdu.verify_chunks(STORE + '/climate/t2m', sample_rate=0.5, seed=1, progress=False)",
    ),
    ("compare_stores", "zdu.compare_stores(STORE, COPY, progress=False)"),
    ("create_manifest", "zdu.create_manifest(STORE, MANIFEST, progress=False)"),
    ("verify_manifest", "zdu.verify_manifest(STORE, MANIFEST, progress=False)"),
    (
        "operations nested in one",
        "with operation('outer', progress=False) as op:\n"
        "    op.open(STORE)\n"
        "    zdu.walk_hierarchy(STORE)\n"
        "    zdu.compare_stores(STORE, COPY)\n",
    ),
    # --- metadata, optimize, concurrent -----------------------------------------------------
    ("validate_metadata", "zdu.validate_metadata(STORE, progress=False)"),
    ("consolidate_metadata", "zdu.consolidate_metadata(COPY, dry_run=True, progress=False)"),
    (
        "repair_metadata apply (inspect, write, inspect again)",
        "import shutil, zarr\n"
        "shutil.copytree(STORE, TMP + '/repair.zarr')\n"
        "g = zarr.open_group(TMP + '/repair.zarr', mode='r+', use_consolidated=False)\n"
        "g.create_array('added', shape=(2,), chunks=(2,), dtype='i1')  # consolidated: stale\n"
        "r = zdu.repair_metadata(TMP + '/repair.zarr', dry_run=False, progress=False)\n"
        "assert r.applied and r.ok, str(r)\n",
    ),
    (
        "rechunk_array consolidated source (copy, then consolidation)",
        "r = zdu.rechunk_array(STORE, {'time': 8}, TMP + '/rechunked.zarr', max_mem='1MiB',\n"
        "                      progress=False)\n"
        "assert r.consolidated, str(r)\n",
    ),
    ("analyze_chunks", "zdu.analyze_chunks(STORE, progress=False)"),
    (
        "estimate_performance probe",
        "zdu.estimate_performance(STORE + '/climate/t2m', progress=False)",
    ),
    (
        "safe_store",
        "import dask.array as da, zarr\n"
        "a = zarr.create_array(TMP + '/safe.zarr', shape=(8, 12), chunks=(4, 6), dtype='i4')\n"
        "zdu.safe_store(da.ones((8, 12), chunks=(2, 6), dtype='i4'), a, progress=False)\n",
    ),
    (
        "to_zarr_region_safe two Dask variables",
        "import numpy as np, xarray as xr\n"
        "ds = xr.Dataset({'a': ('y', np.zeros(6)), 'b': ('y', np.ones(6))})\n"
        "ds.to_zarr(TMP + '/region.zarr', zarr_format=3, consolidated=False)\n"
        "part = ds.isel(y=slice(0, 3)).chunk({'y': 1}) + 2\n"
        "r = zdu.to_zarr_region_safe(part, TMP + '/region.zarr', {'y': slice(0, 3)})\n"
        "assert sorted(r) == ['a', 'b'] and r['a'].blocks == 3, r\n",
    ),
]

_ONE_CLUSTER_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    import dask
    from distributed import Client

    import zarr_dask_utils as zdu
    from zarr_dask_utils._core.compute import cluster
    from zarr_dask_utils._core.compute.operation import current_operation, operation
    from zarr_dask_utils.testing.builders import build_sample_hierarchy


    def main():
        rows, tmp = json.loads(sys.argv[1]), sys.argv[2]
        dask.config.set({
            "zarr-dask-utils.cluster.n-workers": 1,
            "zarr-dask-utils.cluster.dashboard-address": "127.0.0.1:0",
        })
        try:
            Client.current()
            raise SystemExit("a client exists already: the counts would prove nothing")
        except ValueError:
            pass
        starts = []
        original = cluster._embedded_cluster

        def counting(*args, **kwargs):
            starts.append(1)
            return original(*args, **kwargs)

        cluster._embedded_cluster = counting
        scope = {
            "zdu": zdu,
            "operation": operation,
            "STORE": f"{tmp}/store.zarr",
            "COPY": f"{tmp}/copy.zarr",
            "MANIFEST": f"{tmp}/manifest.json",
            "TMP": tmp,
        }
        build_sample_hierarchy(scope["STORE"])
        build_sample_hierarchy(scope["COPY"], zarr_format=2)
        counts = {}
        for name, snippet in rows:
            before = len(starts)
            exec(snippet, scope)
            assert current_operation() is None, name
            counts[name] = len(starts) - before
        print("COUNTS=" + json.dumps(counts))


    if __name__ == "__main__":
        main()
    """
)


@pytest.mark.slow
def test_each_operation_without_a_client_starts_exactly_one_embedded_cluster(tmp_path):
    script = tmp_path / "one_cluster.py"
    script.write_text(_ONE_CLUSTER_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(ONE_CLUSTER_ROWS), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("COUNTS="))
    counts = json.loads(line.removeprefix("COUNTS="))
    assert counts == {name: 1 for name, _ in ONE_CLUSTER_ROWS}


def test_want_processes_first_reason_wins_and_only_before_the_client(client, tmp_path, caplog):
    import logging

    path = str(tmp_path / "a.zarr")
    build_sample_hierarchy(path)
    with operation("unit", client=client, progress=False) as op:
        op.open(path)
        op.want_processes(None)
        assert op.workload is None
        op.want_processes("many small chunks")
        op.want_processes("another reason")
        assert op.workload == "many small chunks"
    with operation("unit", client=client, progress=False) as late:
        late.open(path)
        assert late.client is client
        with caplog.at_level(logging.INFO, logger="zarr_dask_utils._core.compute.operation"):
            late.want_processes("too late")
        assert late.workload is None
        assert "started before its workload was known" in caplog.text
