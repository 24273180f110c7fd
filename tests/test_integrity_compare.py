"""compare_stores on real stores: copies across formats and locations, rechunked copies, edits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import zarr

from zarr_dask_utils import compare_stores
from zarr_dask_utils.testing import chunks as damage
from zarr_dask_utils.testing.builders import build_sample_hierarchy

pytestmark = pytest.mark.cluster


def _compare(a, b, client, **kwargs):
    return compare_stores(a, b, client=client, progress=False, **kwargs)


def test_copy_across_formats_and_locations_is_equal(sample, client, tmp_path):
    other_format = 5 - sample.zarr_format
    copy = str(tmp_path / "copy.zarr")
    build_sample_hierarchy(copy, zarr_format=other_format)
    report = _compare(sample.url, copy, client, storage_options=sample.storage_options)
    assert report.ok, str(report)
    assert {f.code for f in report.findings} == {"encoding-differs"}  # format 2 vs 3
    assert {a["mode"] for a in report.arrays} == {"values"}
    assert all(a["chunks_differing"] == 0 for a in report.arrays)
    assert sum(a["chunks_compared"] for a in report.arrays) == 17
    same = _compare(copy, sample.url, client, b_storage_options=sample.storage_options)
    assert same.ok


def test_identical_copy_compares_raw_bytes_and_finds_a_flipped_byte(sample, client, tmp_path):
    copy = str(tmp_path / "copy.zarr")
    build_sample_hierarchy(copy, zarr_format=sample.zarr_format)
    clean = _compare(sample.url, copy, client, storage_options=sample.storage_options)
    assert clean.findings == ()
    assert {a["mode"] for a in clean.arrays} == {"raw-bytes"}
    arr = zarr.open_array(copy, path="climate/t2m", mode="r+")
    arr[0, 0, 0] = 255.0
    arr[3, 7, 7] = np.nan
    report = _compare(sample.url, copy, client, storage_options=sample.storage_options)
    (finding,) = report.findings
    assert finding.code == "chunk-differs"
    key = damage.chunk_keys(copy, "climate/t2m")[0]
    assert finding.location == key
    t2m = next(a for a in report.arrays if a["path"] == "climate/t2m")
    assert (t2m["chunks_differing"], t2m["elements_differing"]) == (1, 2)
    assert t2m["max_abs_diff"] == "inf"  # a value became NaN
    assert t2m["differing_keys"] == [key]


def test_rechunked_copy_with_tolerance_and_nan(tmp_path, client):
    data = np.linspace(0, 1, 400).reshape(20, 20)
    data[5, 5] = np.nan
    a = zarr.create_array(str(tmp_path / "a.zarr"), shape=(20, 20), chunks=(5, 5), dtype="f8")
    a[:] = data
    b = zarr.create_array(
        str(tmp_path / "b.zarr"), shape=(20, 20), chunks=(8, 20), shards=(16, 20), dtype="f8"
    )
    b[:] = data + 1e-9
    strict = _compare(a, b, client)
    assert not strict.ok
    (summary,) = strict.arrays
    assert summary["mode"] == "values"
    assert summary["elements_differing"] == 399  # NaN equals NaN
    assert summary["chunks_differing"] == 16
    assert math.isclose(summary["max_abs_diff"], 1e-9, rel_tol=1e-3)
    tolerant = _compare(str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr"), client, atol=1e-8)
    assert tolerant.ok
    assert [f.code for f in tolerant.findings] == ["encoding-differs"]


def test_metadata_differences(tmp_path, client):
    a = zarr.open_group(str(tmp_path / "a.zarr"), mode="w", attributes={"title": "x"})
    b = zarr.open_group(str(tmp_path / "b.zarr"), mode="w", attributes={"title": "y"})
    for g in (a, b):
        g.create_array("same", shape=(4,), dtype="i4")[:] = 1
    a.create_array("only_a", shape=(2,), dtype="i4")
    b.create_array("only_b", shape=(2,), dtype="i4")
    a.create_array("shape", shape=(2,), dtype="i4")
    b.create_array("shape", shape=(3,), dtype="i4")
    a.create_array("dtype", shape=(2,), dtype="i4")
    b.create_array("dtype", shape=(2,), dtype="f4")
    a.create_array("fill", shape=(2,), dtype="i4", fill_value=0)
    b.create_array("fill", shape=(2,), dtype="i4", fill_value=1)
    a.create_group("kind")
    b.create_array("kind", shape=(1,), dtype="i1")
    report = _compare(str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr"), client)
    codes = {(f.code, f.location) for f in report.findings}
    assert codes == {
        ("attributes-differ", ""),
        ("node-missing", "only_a"),
        ("node-extra", "only_b"),
        ("shape-differs", "shape"),
        ("dtype-differs", "dtype"),
        ("fill-value-differs", "fill"),
        ("chunk-differs", "fill/c/0"),  # unwritten: reads as 0 vs 1
        ("node-type-differs", "kind"),
    }
    assert "compared with" in str(report)
    assert "<table>" in report._repr_html_()


def test_rechunked_copy_names_the_one_differing_chunk(tmp_path, client):
    import dask

    data = np.arange(37 * 23, dtype="i4").reshape(37, 23)  # uneven edges on both sides
    a = zarr.create_array(str(tmp_path / "a.zarr"), shape=data.shape, chunks=(4, 3), dtype="i4")
    a[:] = data
    b = zarr.create_array(str(tmp_path / "b.zarr"), shape=data.shape, chunks=(10, 23), dtype="i4")
    changed = data.copy()
    changed[33, 22] = -1  # in A's edge chunk (8, 7)
    b[:] = changed
    # blocks of several of A's chunks (96 bytes = 2 chunks of 48) and Dask rechunking B
    with dask.config.set({"zarr-dask-utils.integrity.batch-bytes": 4 * 96}):
        report = _compare(str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr"), client)
    (summary,) = report.arrays
    assert summary["mode"] == "values"
    assert summary["chunks_compared"] == a.nchunks == 10 * 8
    assert summary["differing_keys"] == ["c/8/7"]
    assert (summary["elements_differing"], summary["max_abs_diff"]) == (1, 33 * 23 + 22 + 1)


@pytest.mark.parametrize("rechunked", [False, True], ids=["raw-bytes", "values"])
def test_an_undecodable_chunk_becomes_a_finding_and_the_comparison_goes_on(
    tmp_path, client, rechunked
):
    from zarr_dask_utils.testing import chunks as damage

    data = np.arange(64, dtype="f4").reshape(8, 8)
    a = zarr.create_array(str(tmp_path / "a.zarr"), shape=(8, 8), chunks=(4, 4), dtype="f4")
    a[:] = data
    b_chunks = (8, 2) if rechunked else (4, 4)
    b = zarr.create_array(str(tmp_path / "b.zarr"), shape=(8, 8), chunks=b_chunks, dtype="f4")
    b[:] = data
    damage.zero_byte_chunk(str(tmp_path / "a.zarr"), "c/1/0")  # zstd cannot decode 0 bytes
    report = _compare(str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr"), client)
    assert [f.location for f in report.findings_with("chunk-unreadable")] == ["c/1/0"]
    assert not report.findings_with("chunk-differs")
    (summary,) = report.arrays
    assert (summary["chunks_compared"], summary["chunks_unreadable"]) == (3, 1)
