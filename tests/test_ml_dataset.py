"""ZarrTorchDataset on real stores: values, patches, dtypes, xarray, errors, chunk reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from zarr_dask_utils import InvalidOptionError
from zarr_dask_utils.ml import ZarrTorchDataset
from zarr_dask_utils.ml.demo import write_ml_demo_store
from zarr_dask_utils.ml.reading import reader_for


def _expected(t: int, y: slice = slice(None), x: slice = slice(None)) -> np.ndarray:
    yy, xx = np.arange(16)[y], np.arange(16)[x]
    return (t * 10_000 + yy[:, None] * 100 + xx[None, :]).astype("float32")


@pytest.fixture
def demo(tmp_path: Path) -> str:
    return write_ml_demo_store(str(tmp_path / "demo.zarr"))


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_batch_holds_the_samples_asked_for_in_their_order(tmp_path: Path, zarr_format: int) -> None:
    url = write_ml_demo_store(str(tmp_path / "d.zarr"), zarr_format=zarr_format)
    ds = ZarrTorchDataset(url, sample_dim="time")  # the group: data variables, no coordinates
    assert [v.name for v in ds.spec.variables] == ["label", "t2m"]
    batch = ds.__getitems__([40, 3, 63, 4])
    assert batch.stacked["label"].tolist() == [40, 3, 63, 4]
    assert torch.equal(batch.stacked["t2m"][1], torch.from_numpy(_expected(3)))
    assert batch.stacked["t2m"].dtype == torch.float32
    assert torch.equal(ds[63]["t2m"], torch.from_numpy(_expected(63)))


def test_each_chunk_is_read_once_per_batch_and_kept_for_the_next(demo: str) -> None:
    ds = ZarrTorchDataset(demo, sample_dim="time", variables="t2m", cache_chunks=2)
    reader = reader_for(ds.spec.location, ds.spec.variables[0], 1)
    before = reader.reads
    ds.__getitems__(list(range(0, 16)))  # 16 samples in chunks 0 and 1
    assert reader.reads - before == 2
    ds.__getitems__([1, 9, 2])  # cached
    assert reader.reads - before == 2


def test_patches_with_stride_and_padded_edges_cover_every_pixel(demo: str) -> None:
    ds = ZarrTorchDataset(
        demo,
        sample_dim="time",
        variables="t2m",
        patch={"y": 6, "x": 6},
        stride={"y": 5, "x": 5},
        edge="pad",
        pad_value=-1,
    )
    assert ds.plan.starts == ((0, 5, 10, 15), (0, 5, 10, 15))
    patches = ds.__getitems__(list(range(16 * 2))).stacked  # times 0 and 1, all positions
    assert patches.shape == (32, 6, 6)
    last = patches[15]  # time 0, patch at (15, 15): one real pixel, the rest padding
    assert last[0, 0].item() == 1515
    assert (last.flatten()[1:] == -1).all()
    assert torch.equal(patches[16 + 5], torch.from_numpy(_expected(1, slice(5, 11), slice(5, 11))))
    dropped = ZarrTorchDataset(demo, sample_dim="time", variables="t2m", patch={"y": 6, "x": 6})
    assert dropped.plan.starts == ((0, 6), (0, 6))
    assert len(dropped) == 64 * 4
    corner = dropped[3].numpy()  # patch (6, 6) of time 0, across chunk-free interior
    assert np.array_equal(corner, _expected(0, slice(6, 12), slice(6, 12)))


def test_patches_across_chunk_edges(tmp_path: Path) -> None:
    url = write_ml_demo_store(str(tmp_path / "c.zarr"), chunks=(4, 5, 7))
    ds = ZarrTorchDataset(
        url, sample_dim="time", variables="t2m", patch={"y": 8, "x": 8}, stride={"y": 3, "x": 3}
    )
    ids = list(range(len(ds)))[::7]
    batch = ds.__getitems__(ids).stacked.numpy()
    t, starts = ds.plan.locate(ids)
    for j, (tj, yj, xj) in enumerate(zip(t, *starts, strict=True)):
        assert np.array_equal(batch[j], _expected(int(tj), slice(yj, yj + 8), slice(xj, xj + 8)))


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "float16", "float64", "bool"])
def test_dtype_is_preserved(tmp_path: Path, dtype: str) -> None:
    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=(10, 3), chunks=(4, 3), dtype=dtype)
    data = (np.arange(30).reshape(10, 3) % 7).astype(dtype)
    arr[:] = data
    batch = ZarrTorchDataset(arr, sample_dim=0).__getitems__([9, 0]).stacked
    assert batch.numpy().dtype == np.dtype(dtype)
    assert np.array_equal(batch.numpy(), data[[9, 0]])


def test_big_endian_v2_sharded_v3_and_missing_chunks_read_like_zarr(tmp_path: Path) -> None:
    be = zarr.create_array(
        str(tmp_path / "be.zarr"), shape=(6, 2), chunks=(2, 2), dtype=">f4", zarr_format=2
    )
    be[:4] = np.arange(8, dtype=">f4").reshape(4, 2)  # chunk 2 not stored: fill value
    got = ZarrTorchDataset(be, sample_dim=0).__getitems__([5, 1]).stacked.numpy()
    assert np.array_equal(got, np.asarray(be[[5, 1]]).astype("<f4"))
    url = write_ml_demo_store(str(tmp_path / "s.zarr"), chunks=(4, 8, 8), shards=(8, 16, 16))
    ds = ZarrTorchDataset(url, sample_dim="time", variables="t2m")
    assert ds.spec.variables[0].chunks == (8, 16, 16)  # whole shards are decoded once
    assert torch.equal(ds.__getitems__([13]).stacked[0], torch.from_numpy(_expected(13)))


def test_xarray_inputs_with_coordinates(demo: str) -> None:
    import xarray as xr

    opened = xr.open_zarr(demo, consolidated=False)
    assert {"time", "y"} <= set(opened.coords)
    ds = ZarrTorchDataset(opened, sample_dim="time", variables=["t2m", "time"])
    batch = ds.__getitems__([7, 2]).stacked
    assert batch["time"].tolist() == [7, 2]  # a coordinate along the sample dimension
    assert batch["t2m"].shape == (2, 16, 16)
    single = ZarrTorchDataset(opened["t2m"], sample_dim="time")
    assert torch.equal(single[2], torch.from_numpy(_expected(2)))
    defaults = ZarrTorchDataset(opened, sample_dim="time")
    assert sorted(v.name for v in defaults.spec.variables) == ["label", "t2m"]  # no coords
    with pytest.raises(InvalidOptionError, match="does not say which zarr store"):
        ZarrTorchDataset(xr.Dataset({"a": ("t", np.arange(3))}), sample_dim="t")


def test_clear_errors_for_missing_sample_dim_and_variable(demo: str) -> None:
    with pytest.raises(InvalidOptionError, match=r"sample_dim='sample' is not a dimension.*'time'"):
        ZarrTorchDataset(demo, sample_dim="sample")
    with pytest.raises(InvalidOptionError, match="no array named 'nope'"):
        ZarrTorchDataset(demo, sample_dim="time", variables=["nope"])
    with pytest.raises(InvalidOptionError, match="every variable must have it"):
        ZarrTorchDataset(demo, sample_dim="time", variables=["t2m", "x"])
    with pytest.raises(IndexError, match="out of range"):
        ZarrTorchDataset(demo, sample_dim="time", variables="t2m")[64]


def test_transform_runs_per_sample_and_default_collate_stacks(demo: str) -> None:
    from torch.utils.data import DataLoader

    ds = ZarrTorchDataset(demo, sample_dim="time", variables="t2m", transform=lambda s: s.mean())
    loader = DataLoader(ds, batch_size=4)  # torch's own collate on our Batch
    first = next(iter(loader))
    assert first.shape == (4,)
    assert first[1].item() == pytest.approx(float(_expected(1).mean()))
