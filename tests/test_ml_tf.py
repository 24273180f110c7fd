"""ZarrTFDataset: exact element_spec, every sample once per epoch, local and S3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf  # extra tensorflow, part of [all]: installed wherever this runs

from zarr_dask_utils.ml import ZarrTFDataset
from zarr_dask_utils.ml.demo import write_ml_demo_store


@pytest.mark.slow
def test_output_signature_is_exact_and_epochs_cover_every_sample(tmp_path: Path) -> None:
    url = write_ml_demo_store(
        str(tmp_path / "d.zarr"), n_time=30, chunks=(4, 16, 16), dtype="float64"
    )
    ds = ZarrTFDataset(url, sample_dim="time", batch_size=4, buffer_chunks=2, seed=1)
    assert ds.element_spec == {
        "label": tf.TensorSpec(shape=(None,), dtype=tf.int64),
        "t2m": tf.TensorSpec(shape=(None, 16, 16), dtype=tf.float64),
    }
    epochs = []
    for _ in range(2):
        labels = []
        for batch in ds:
            assert batch["t2m"].dtype == tf.float64
            labels.extend(batch["label"].numpy().tolist())
        epochs.append(labels)
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(30))
    assert epochs[0] != epochs[1]
    patches = ZarrTFDataset(
        url,
        sample_dim="time",
        variables="t2m",
        patch={"y": 8, "x": 8},
        batch_size=5,
        drop_last=True,
    )
    assert patches.element_spec == tf.TensorSpec(shape=(5, 8, 8), dtype=tf.float64)
    assert sum(1 for _ in patches) == (30 * 4) // 5


@pytest.mark.slow
@pytest.mark.s3
def test_tf_dataset_reads_s3(s3_bucket: str, s3_storage_options: dict[str, Any]) -> None:
    url = f"s3://{s3_bucket}/d.zarr"
    write_ml_demo_store(url, n_time=12, chunks=(4, 16, 16), storage_options=s3_storage_options)
    ds = ZarrTFDataset(
        url, sample_dim="time", variables="t2m", batch_size=5, storage_options=s3_storage_options
    )
    firsts = np.concatenate([b.numpy()[:, 0, 0] for b in ds])
    assert sorted(firsts.tolist()) == [t * 10_000 for t in range(12)]


_AFTER_TF_IMPORT = """
import os, sys
from pathlib import Path
if sys.argv[1] == "unset":
    os.environ.pop("HDF5_PLUGIN_PATH", None)
else:
    os.environ["HDF5_PLUGIN_PATH"] = sys.argv[1]
from zarr_dask_utils.ml.tf_dataset import _tf
_tf()
print(os.environ.get("HDF5_PLUGIN_PATH", "unset"))
if sys.argv[1] == "unset":  # netCDF-C still finds its NCZarr filters (shuffle) afterwards
    import netCDF4
    with netCDF4.Dataset(f"file://{sys.argv[2]}#mode=nczarr,file") as ds:
        print(float(ds["temp"][:].sum()))
"""


@pytest.mark.slow
@pytest.mark.parametrize("before", ["unset", "/opt/my-hdf5-plugins"])
def test_importing_tensorflow_leaves_hdf5_plugin_path_as_it_was(
    before: str, tmp_path: Path
) -> None:
    # TensorFlow sets HDF5_PLUGIN_PATH=disable on import; netCDF4 in the same process (and in
    # every child) then failed on NCZarr shuffle: "Filter error: undefined filter encountered"
    import subprocess
    import sys

    from zarr_dask_utils.testing.foreign import FOREIGN_STORES, materialize

    store = materialize(FOREIGN_STORES["nczarr"], tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", _AFTER_TF_IMPORT, before, str(store)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.split()
    assert lines[0] == before
    if before == "unset":
        assert float(lines[1]) > 0
