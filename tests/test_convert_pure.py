"""Pure conversion planning: codec translation, chunk and shard choice, regions, file kinds."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zarr_dask_utils import InvalidOptionError
from zarr_dask_utils._core.compute.cluster import embedded_mode
from zarr_dask_utils._core.pure.compressors import parse_compressor
from zarr_dask_utils.convert.plan import (
    VariableShape,
    block_regions,
    choose_chunks,
    choose_regions,
    choose_shards,
    translate_encoding,
)
from zarr_dask_utils.convert.progress import ConversionProgress
from zarr_dask_utils.convert.run import READERS_LOCKED
from zarr_dask_utils.convert.sources import SourceFile, detect_kind, netcdf_engines


@pytest.mark.parametrize(
    ("encoding", "requested", "compressor", "source"),
    [
        (
            {"zlib": True, "complevel": 4, "shuffle": True},
            None,
            "blosc-zstd:4",
            "zlib level 4 + shuffle",
        ),
        ({"zlib": True, "complevel": 9, "shuffle": False}, None, "blosc-zstd:9", "zlib level 9"),
        ({"zlib": True, "complevel": 0}, None, "blosc-zstd:4", "zlib level 4"),
        ({"zlib": False, "shuffle": False}, None, "zstd:3", "uncompressed"),
        ({}, None, "zstd:3", "uncompressed"),
        ({"zlib": True, "complevel": 2}, "gzip:1", "gzip:1", "zlib level 2"),
    ],
    ids=["zlib4-shuffle", "zlib9", "zlib-level0-default", "off", "netcdf3", "requested"],
)
def test_translate_encoding(encoding, requested, compressor, source):
    choice = translate_encoding(encoding, requested)
    assert choice.compressor == compressor
    assert choice.source == source
    parse_compressor(choice.compressor)  # a name the shared compressor spelling accepts
    assert choice.to_dict()["reason"]


def _vars():
    return [
        VariableShape("t2m", ("time", "lat", "lon"), (1000, 90, 180), 2),
        VariableShape("tp", ("time", "lat", "lon"), (1000, 90, 180), 4),
        VariableShape("time", ("time",), (1000,), 8),
    ]


def test_choose_chunks_requested_dims_win_and_shared_dims_agree():
    chunks = choose_chunks(_vars(), {"time": 10}, min_bytes=2**20, max_bytes=64 * 2**20)
    assert chunks["t2m"][0] == chunks["tp"][0] == chunks["time"][0] == 10
    assert chunks["t2m"][1:] == chunks["tp"][1:]  # aligned by dimension name


def test_choose_chunks_minus_one_is_whole_and_bounds_hold():
    chunks = choose_chunks(_vars(), {"lat": -1}, min_bytes=2**20, max_bytes=8 * 2**20)
    assert chunks["tp"][1] == 90
    assert math.prod(chunks["tp"]) * 4 <= 8 * 2**20


def test_choose_chunks_time_series_prefers_long_time_axis():
    seq = choose_chunks(_vars(), None, access_pattern="spatial", min_bytes=2**16, max_bytes=2**22)
    ts = choose_chunks(
        _vars(), None, access_pattern="time-series", min_bytes=2**16, max_bytes=2**22
    )
    assert ts["tp"][0] > seq["tp"][0]


def test_choose_chunks_rejects_unknown_dimension():
    with pytest.raises(InvalidOptionError, match="level"):
        choose_chunks(_vars(), {"level": 3}, min_bytes=1, max_bytes=2**20)


def test_choose_shards_multiples_and_refusal():
    chunks = {"t2m": (10, 90, 180), "tp": (10, 90, 180), "time": (10,)}
    shards = choose_shards(_vars(), chunks, {"time": 100})
    assert shards["t2m"] == (100, 90, 180)
    assert shards["time"] == (100,)
    assert choose_shards(_vars(), chunks, None)["tp"] is None
    with pytest.raises(InvalidOptionError, match="multiple"):
        choose_shards(_vars(), chunks, {"time": 15})


@given(
    shape=st.lists(st.integers(0, 30), min_size=1, max_size=3),
    data=st.data(),
)
def test_block_regions_tile_the_array(shape, data):
    block = [data.draw(st.integers(1, 12)) for _ in shape]
    regions = block_regions(shape, block)
    assert sum(math.prod(b - a for a, b in r) for r in regions) == math.prod(shape)
    assert len(regions) == math.prod(max(1, -(-n // b)) for n, b in zip(shape, block, strict=False))


def test_choose_regions_cover_whole_source_chunks_within_the_byte_limit():
    v = VariableShape("t2m", ("time", "lat", "lon"), (2064, 180, 360), 4)
    units = {"t2m": (129, 45, 360)}
    source = {"time": 1, "lat": 180, "lon": 360}
    # a netCDF chunk is one whole field: a region of a quarter of it would decode it 4 times
    assert choose_regions([v], units, source, 64 * 2**20) == {"t2m": (129, 180, 360)}
    assert choose_regions([v], units, source, 8 * 2**20) == {"t2m": (129, 45, 360)}  # too big
    assert choose_regions([v], units, {}, 64 * 2**20) == units  # source chunks unknown
    # no least common multiple within the limit: the unit multiple covering one source chunk
    w = VariableShape("x", ("y",), (1000,), 1)
    assert choose_regions([w], {"x": (60,)}, {"y": 100}, 200) == {"x": (120,)}
    assert choose_regions([w], {"x": (60,)}, {"y": 100}, 300) == {"x": (300,)}


@given(
    shape=st.lists(st.integers(1, 40), min_size=1, max_size=3),
    data=st.data(),
)
def test_choose_regions_are_whole_units_and_align_when_grown(shape, data):
    dims = tuple(f"d{i}" for i in range(len(shape)))
    unit = tuple(data.draw(st.integers(1, n)) for n in shape)
    source = {d: data.draw(st.integers(1, 50)) for d in dims}
    limit = data.draw(st.integers(1, 4 * math.prod(shape)))
    v = VariableShape("v", dims, tuple(shape), 1)
    (region,) = choose_regions([v], {"v": unit}, source, limit).values()
    for r, u, n, d in zip(region, unit, shape, dims, strict=True):
        assert r % u == 0  # a whole number of units: no stored object split between tasks
        if r > u:
            assert source[d] > u
            assert r >= n or r % source[d] == 0 or r == -(-source[d] // u) * u
    if region != unit:
        assert math.prod(region) <= limit


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"CDF\x01\x00", "netcdf3"),
        (b"CDF\x02\x00", "netcdf3"),
        (b"\x89HDF\r\n", "netcdf4"),
        (b"GRIB\x00", "grib"),
        (b"PK\x03\x04", None),
        (b"", None),
    ],
    ids=["cdf1", "cdf2", "hdf5", "grib", "zip", "empty"],
)
def test_detect_kind(head, kind):
    assert detect_kind(head) == kind


def test_progress_counts_rate_eta_and_callback():
    seen = []
    p = ConversionProgress(lambda d, t: seen.append((d, t)), bar=False)
    p.start(total_bytes=300, total_regions=3)
    assert p.eta is None
    p.update(100)
    p.update(100)
    assert p.eta is not None
    assert p.eta >= 0
    p.update(100)
    assert p.wait(timeout=0.1)
    p.finish()
    assert seen == [(100, 300), (200, 300), (300, 300)]
    assert "3/3 regions" in p.line()
    assert "ETA" in p.line()
    assert "<progress" in p._repr_html_()


@pytest.mark.parametrize(
    ("paths", "engines", "reader"),
    [
        ({"/d/0.nc": "netcdf4", "/d/1.nc": "netcdf4"}, ("h5netcdf",) * 2, "netCDF-4/HDF5 only"),
        ({"/d/0.nc": "netcdf3"}, ("netcdf4",), "reads netcdf3"),
        ({"/d/0.nc": "netcdf3", "/d/1.nc": "netcdf4"}, ("netcdf4",) * 2, "netcdf3 and netcdf4"),
        ({"s3://b/0.nc": "netcdf3"}, ("scipy",), "scipy engine (netCDF-3 on an object store"),
        (
            {"s3://b/0.nc": "netcdf3", "s3://b/1.nc": "netcdf4", "/d/2.nc": "netcdf3"},
            ("scipy", "h5netcdf", "netcdf4"),
            "h5netcdf engine (netCDF-4/HDF5 on an object store",
        ),
    ],
    ids=["netcdf4-only", "classic", "mixed", "s3-classic", "s3-mixed-and-local"],
)
def test_engine_per_file_and_a_reader_line_naming_them(paths, engines, reader):
    files = [SourceFile(p, k, 1) for p, k in paths.items()]
    chosen, line = netcdf_engines(files)
    assert chosen == engines
    assert reader in line
    assert all(f"{e} engine (" in line for e in engines)  # every engine says what it read


@pytest.mark.parametrize(("setting", "processes"), [("auto", True), ("false", False)])
def test_conversions_ask_the_embedded_cluster_for_processes(setting, processes):
    mode = embedded_mode(processes=setting, workload=READERS_LOCKED)
    assert mode.processes is processes
    if processes:
        assert "per-process lock" in mode.reason  # the report's engine line says why
    assert embedded_mode(processes="auto").processes is False  # other work keeps threads
