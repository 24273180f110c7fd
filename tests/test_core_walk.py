"""walk_hierarchy and open_node on real stores: exact nodes, both formats, local and S3."""

from __future__ import annotations

import json

import numcodecs
import pytest
import zarr
from zarr.storage import MemoryStore

from zarr_dask_utils import (
    HierarchyReport,
    NodeInfo,
    StoreNotFoundError,
    open_node,
    resolve_location,
    walk_hierarchy,
)
from zarr_dask_utils._core.compute.hierarchy_graph import build_read_graph
from zarr_dask_utils._core.compute.operation import operation
from zarr_dask_utils._core.compute.runner import task_name
from zarr_dask_utils._core.pure.keys import parse_document
from zarr_dask_utils._core.pure.nodes import nodes_from_documents
from zarr_dask_utils.testing import corrupt
from zarr_dask_utils.testing.builders import build_sample_hierarchy

pytestmark = pytest.mark.cluster

_DTYPES = {
    2: {"float32": "<f4", "float64": "<f8", "int16": "<i2", "int64": "<i8"},
    3: {"float32": "float32", "float64": "float64", "int16": "int16", "int64": "int64"},
}
# zarr-python 3.1 defaults: zstd (v3, "bytes" is not listed) and blosc with lz4 (v2)
_CODECS = {2: ("blosc-lz4",), 3: ("zstd",)}


def expected_nodes(zarr_format: int) -> list[NodeInfo]:
    """The sample hierarchy as walk_hierarchy must describe it, sorted by path."""

    def array(path, shape, chunks, dtype, dims, fill, attrs):
        if zarr_format == 2:
            attrs = {**attrs, "_ARRAY_DIMENSIONS": list(dims)}
        return NodeInfo(
            path,
            "array",
            zarr_format,
            shape=shape,
            dtype=_DTYPES[zarr_format][dtype],
            chunks=chunks,
            codecs=_CODECS[zarr_format],
            fill_value=fill,
            dimension_names=dims,
            attributes=attrs,
        )

    def group(path, attrs):
        return NodeInfo(path, "group", zarr_format, attributes=attrs)

    tll = ("time", "lat", "lon")
    return [
        group("", {"title": "sample"}),
        group("climate", {"description": "surface climate variables"}),
        array(
            "climate/precip",
            (8, 16, 16),
            (8, 8, 8),
            "float64",
            tll,
            0.0,
            {"units": "m", "long_name": "total precipitation"},
        ),
        group("climate/static", {"description": "fields that do not change in time"}),
        array(
            "climate/static/elevation", (16, 16), (8, 8), "int16", ("lat", "lon"), 0, {"units": "m"}
        ),
        array(
            "climate/t2m",
            (8, 16, 16),
            (4, 8, 8),
            "float32",
            tll,
            0.0,
            {"units": "K", "long_name": "2 metre temperature"},
        ),
        array("time", (8,), (8,), "int64", ("time",), 0, {"units": "hours since 2000-01-01"}),
    ]


def test_walk_gives_exact_nodes(sample, client):
    report = walk_hierarchy(
        sample.url, storage_options=sample.storage_options, client=client, progress=False
    )
    assert isinstance(report, HierarchyReport)
    assert list(report.nodes) == expected_nodes(sample.zarr_format)
    assert report.zarr_format == sample.zarr_format
    assert [n.path for n in report.arrays] == [
        "climate/precip",
        "climate/static/elevation",
        "climate/t2m",
        "time",
    ]
    assert [n.path for n in report.groups] == ["", "climate", "climate/static"]
    # v3: 7 zarr.json; v2: 3 .zgroup + 4 .zarray + 7 .zattrs + .zmetadata
    assert report.documents_read == (7 if sample.zarr_format == 3 else 15)
    assert report.engine.startswith("distributed: 2 worker(s), 2 thread(s) at tcp://127.0.0.1:")
    assert report.ok
    assert report.findings == ()
    assert report.location == sample.url
    text = str(report)
    assert f"zarr format {sample.zarr_format}: 3 group(s), 4 array(s)" in text
    assert "/climate/t2m  array" in text
    assert json.loads(json.dumps(report.to_dict()))["nodes"][0]["attributes"] == {"title": "sample"}


def test_walk_sees_arrays_consolidated_metadata_misses(sample, client):
    corrupt.add_array_unconsolidated(
        sample.url, "climate/late", storage_options=sample.storage_options
    )
    report = walk_hierarchy(
        sample.url, storage_options=sample.storage_options, client=client, progress=False
    )
    assert "climate/late" in {n.path for n in report.arrays}


def test_walk_of_a_subgroup_object(tmp_path, client):
    build_sample_hierarchy(tmp_path / "s.zarr", zarr_format=3)
    climate = zarr.open_group(tmp_path / "s.zarr", mode="r")["climate"]
    report = walk_hierarchy(climate, client=client, progress=False)
    assert [n.path for n in report.nodes] == [
        "",
        "precip",
        "static",
        "static/elevation",
        "t2m",
    ]
    assert report.location == f"{tmp_path / 's.zarr'}#climate"


def test_walk_skips_backups_and_broken_documents(tmp_path, client):
    path = tmp_path / "s.zarr"
    build_sample_hierarchy(path)
    corrupt.write_bytes(path, ".zdu/backups/1/zarr.json", b'{"zarr_format": 3}')
    corrupt.break_json(path, "time/zarr.json")
    report = walk_hierarchy(path, client=client, progress=False)
    paths = [n.path for n in report.nodes]
    assert "time" not in paths  # unparsable: validate_metadata reports it, walk skips it
    assert not any(p.startswith(".zdu") for p in paths)
    assert len(paths) == 6


def test_walk_sharded_array(tmp_path, client):
    group = zarr.open_group(tmp_path / "sh.zarr", mode="w", zarr_format=3)
    group.create_array(
        "big",
        shape=(64, 64),
        chunks=(8, 8),
        shards=(32, 32),
        dtype="uint8",
        compressors=[zarr.codecs.BloscCodec(cname="zstd")],
    )
    report = walk_hierarchy(tmp_path / "sh.zarr", client=client, progress=False)
    (node,) = report.arrays
    assert (node.chunks, node.shards) == ((8, 8), (32, 32))
    assert node.codecs == ("blosc",)
    assert "shards (32, 32)" in node.describe()


def test_memory_store_runs_on_threads(client):
    memory = MemoryStore()
    build_sample_hierarchy(memory, zarr_format=2)
    report = walk_hierarchy(memory, client=client, progress=False)
    assert report.engine == (
        "threads in this process (MemoryStore is in memory, invisible to workers)"
    )
    assert list(report.nodes) == expected_nodes(2)
    assert "engine: threads in this process" in str(report)


def test_memory_url_runs_on_threads(tmp_path):
    import fsspec

    url = f"memory://zdu-test/{tmp_path.name}/walk.zarr"
    try:
        build_sample_hierarchy(url)
        report = walk_hierarchy(url, progress=False)
        assert report.engine.startswith(f"threads in this process ({url} is in memory")
        assert list(report.nodes) == expected_nodes(3)
    finally:
        fsspec.filesystem("memory").rm(f"/zdu-test/{tmp_path.name}", recursive=True)


@pytest.mark.parametrize("shareable", [True, False], ids=["distributed", "threads"])
def test_progress_bar(tmp_path, client, capsys, shareable):
    store = MemoryStore()
    target = tmp_path / "p.zarr" if shareable else store
    build_sample_hierarchy(target)
    report = walk_hierarchy(target, client=client, progress=True)
    assert len(report.nodes) == 7
    if not shareable:
        assert "Completed" in capsys.readouterr().err  # dask's ProgressBar on threads, stderr


def test_open_node_group_and_array(sample):
    group = open_node(sample.url, storage_options=sample.storage_options)
    assert isinstance(group, zarr.Group)
    assert group.read_only
    assert group.metadata.zarr_format == sample.zarr_format
    array = open_node(f"{sample.url}/climate/t2m", storage_options=sample.storage_options)
    assert isinstance(array, zarr.Array)
    assert array.shape == (8, 16, 16)
    assert float(array[0, 0, 1]) == 250.5


def test_open_node_reads_real_documents_by_default(sample):
    corrupt.add_array_unconsolidated(sample.url, "late", storage_options=sample.storage_options)
    real = open_node(sample.url, storage_options=sample.storage_options)
    assert "late" in set(real.array_keys())
    consolidated = open_node(
        sample.url, storage_options=sample.storage_options, use_consolidated=True
    )
    assert "late" not in set(consolidated.array_keys())


def test_open_node_writable(tmp_path):
    build_sample_hierarchy(tmp_path / "w.zarr")
    group = open_node(tmp_path / "w.zarr", mode="r+")
    group.attrs["edited"] = 1
    assert open_node(tmp_path / "w.zarr").attrs["edited"] == 1


def test_open_node_missing(tmp_path):
    with pytest.raises(StoreNotFoundError, match=str(tmp_path / "missing.zarr")):
        open_node(tmp_path / "missing.zarr")


# --- the graph itself --------------------------------------------------------------------------


def test_read_graph_task_names_and_documents(tmp_path, client):
    build_sample_hierarchy(tmp_path / "g.zarr", zarr_format=2, consolidated=False)
    location = resolve_location(tmp_path / "g.zarr")
    listing, docs = build_read_graph(location, nparts=3)
    assert listing.key.startswith("zdu-list-")
    assert docs.key.startswith("zdu-merge-metadata-")
    with operation("walk", client=client) as op:  # the door runs every graph
        op.open(location, probe=False)
        result = op.run([listing, docs])
    keys, documents = result
    assert "climate/t2m/0.0.0" in keys  # chunks are listed, not read
    assert set(documents) == {k for k in keys if k.rpartition("/")[2].startswith(".z")}
    assert parse_document(documents[".zgroup"]) == ({"zarr_format": 2}, None)
    assert len(nodes_from_documents(documents)) == 7
    assert result.engine.startswith("distributed")


def test_task_names_are_new_every_call():
    from dask.utils import key_split

    # the same parts twice: two keys, so a rerun never receives a previous run's results
    assert task_name("walk", "a", 1) != task_name("walk", "a", 1)
    assert task_name("walk", "a").startswith("zdu-walk-")
    assert key_split(task_name("walk", "a")) == "zdu-walk"  # the dashboard's task prefix


def test_parse_document_errors():
    assert parse_document(None) == (None, "missing")
    value, error = parse_document(b"{not json")
    assert value is None
    assert error.startswith("not valid JSON")


def test_walk_wrapped_stores(tmp_path, client):
    from zarr.storage import LocalStore, LoggingStore

    build_sample_hierarchy(tmp_path / "s.zarr")
    on_disk = walk_hierarchy(LoggingStore(LocalStore(tmp_path / "s.zarr")), client=client)
    assert on_disk.engine.startswith("distributed")
    assert len(on_disk.nodes) == 7
    memory = MemoryStore()
    build_sample_hierarchy(memory)
    in_memory = walk_hierarchy(LoggingStore(memory), client=client, progress=False)
    assert in_memory.engine.startswith("threads in this process")
    assert len(in_memory.nodes) == 7


def test_walk_v2_filters_and_odd_documents(client):
    memory = MemoryStore()
    root = zarr.open_group(memory, mode="w", zarr_format=2)
    root.create_array(
        "delta",
        shape=(6,),
        chunks=(3,),
        dtype="i4",
        filters=[numcodecs.Delta(dtype="<i4")],
        compressors=None,
    )
    corrupt.write_bytes(
        memory,
        "odd/zarr.json",
        json.dumps(
            {
                "zarr_format": 3,
                "node_type": "array",
                "shape": "not-a-shape",
                "codecs": ["bytes", {"name": "gzip"}],
                "dimension_names": None,
            }
        ).encode(),
    )
    nodes = {n.path: n for n in walk_hierarchy(memory, client=client, progress=False).nodes}
    assert nodes["delta"].codecs == ("delta",)
    assert nodes["odd"].shape is None
    assert nodes["odd"].codecs == ("gzip",)  # "bytes" is implied, not listed
    assert nodes["odd"].dimension_names is None
