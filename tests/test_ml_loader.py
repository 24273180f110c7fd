"""to_torch_dataloader: epochs through fork/spawn DataLoader workers, local and S3, and Dask."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
import zarr

from zarr_dask_utils import InvalidOptionError
from zarr_dask_utils.ml import ZarrTorchDataset, to_torch_dataloader
from zarr_dask_utils.ml.demo import write_ml_demo_store
from zarr_dask_utils.ml.loader import DaskBatchLoader


def _epoch_labels(loader: Any) -> list[int]:
    labels: list[int] = []
    for batch in loader:
        assert isinstance(batch["t2m"], torch.Tensor)
        # each sample's values still belong to its label: t2m[t, 0, 0] == t * 10_000
        assert torch.equal(batch["t2m"][:, 0, 0], (batch["label"] * 10_000).float())
        labels.extend(batch["label"].tolist())
    return labels


def test_every_sample_once_per_epoch_with_fork_workers_local(tmp_path: Path) -> None:
    url = write_ml_demo_store(str(tmp_path / "d.zarr"), n_time=48, chunks=(5, 16, 16))
    loader = to_torch_dataloader(
        url,
        sample_dim="time",
        batch_size=7,
        buffer_chunks=3,
        num_workers=2,
        seed=3,
        multiprocessing_context="fork",
    )
    first, second = _epoch_labels(loader), _epoch_labels(loader)
    assert sorted(first) == sorted(second) == list(range(48))
    assert first != second  # a new order per epoch
    again = to_torch_dataloader(
        url, sample_dim="time", batch_size=7, buffer_chunks=3, num_workers=0, seed=3
    )
    # reproducible by seed: the same batches; with workers they are striped (each worker
    # gets the batches of its own buffers), so only their order differs
    plain = _epoch_labels(again)
    assert sorted(_batches(plain, 7)) == sorted(_batches(first, 7))


def _batches(labels: list[int], size: int) -> list[tuple[int, ...]]:
    return [tuple(labels[i : i + size]) for i in range(0, len(labels), size)]


@pytest.mark.slow
@pytest.mark.s3
def test_s3_array_opened_in_the_parent_reads_in_forked_workers(
    s3_bucket: str, s3_storage_options: dict[str, Any]
) -> None:
    url = f"s3://{s3_bucket}/d.zarr"
    write_ml_demo_store(url, n_time=24, chunks=(4, 16, 16), storage_options=s3_storage_options)
    group = zarr.open_group(
        zarr.storage.FsspecStore.from_url(url, storage_options=s3_storage_options, read_only=True),
        mode="r",
    )
    group["t2m"][0]  # the parent has used its S3 store: its event loop is the parent's
    loader = to_torch_dataloader(
        group, sample_dim="time", batch_size=5, num_workers=2, multiprocessing_context="fork"
    )
    assert sorted(_epoch_labels(loader)) == list(range(24))


@pytest.mark.slow
@pytest.mark.s3
def test_spawn_workers_on_s3_url(s3_bucket: str, s3_storage_options: dict[str, Any]) -> None:
    url = f"s3://{s3_bucket}/d.zarr"
    write_ml_demo_store(url, n_time=20, chunks=(4, 16, 16), storage_options=s3_storage_options)
    ds = ZarrTorchDataset(url, sample_dim="time", storage_options=s3_storage_options)
    ds.__getitems__([0])  # used in the parent before the workers start
    loader = to_torch_dataloader(ds, batch_size=6, num_workers=1, multiprocessing_context="spawn")
    assert sorted(_epoch_labels(loader)) == list(range(20))


def test_ranks_split_an_epoch_without_overlap(tmp_path: Path) -> None:
    url = write_ml_demo_store(str(tmp_path / "d.zarr"), n_time=30, chunks=(4, 16, 16))
    parts = [
        _epoch_labels(
            to_torch_dataloader(
                url, sample_dim="time", batch_size=4, num_workers=0, rank=r, world_size=3
            )
        )
        for r in range(3)
    ]
    assert {len(p) for p in parts} == {10}
    assert Counter(i for p in parts for i in p) == Counter(range(30))


@pytest.mark.slow
@pytest.mark.cluster
def test_client_mode_streams_batches_decoded_by_dask_workers(tmp_path: Path, client: Any) -> None:
    url = write_ml_demo_store(str(tmp_path / "d.zarr"), n_time=40, chunks=(4, 16, 16))
    loader = to_torch_dataloader(
        url, sample_dim="time", batch_size=6, client=client, max_in_flight=2, seed=5
    )
    assert isinstance(loader, DaskBatchLoader)
    assert len(loader) == 7
    labels = _epoch_labels(loader)
    assert sorted(labels) == list(range(40))
    local = to_torch_dataloader(url, sample_dim="time", batch_size=6, num_workers=0, seed=5)
    assert _epoch_labels(local) == labels  # same order as the local loader


@pytest.mark.slow
def test_client_mode_starts_before_any_worker_joined(tmp_path: Path) -> None:
    # a cluster with no worker yet (starting, or adaptive at zero): batches wait for one
    from distributed import Client, LocalCluster

    url = write_ml_demo_store(str(tmp_path / "d.zarr"), n_time=12, chunks=(4, 16, 16))
    with (
        LocalCluster(
            n_workers=0, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        loader = to_torch_dataloader(url, sample_dim="time", batch_size=4, client=client)
        assert not client.scheduler_info()["workers"]
        batches = iter(loader)
        cluster.scale(1)  # the worker process registers seconds later, after the submits
        labels = [int(i) for batch in batches for i in batch["label"]]
    assert sorted(labels) == list(range(12))


@pytest.mark.cluster
def test_client_mode_refuses_an_in_memory_store(client: Any) -> None:
    store = zarr.storage.MemoryStore()
    write_ml_demo_store(store, n_time=8)
    with pytest.raises(InvalidOptionError, match="in-memory store"):
        to_torch_dataloader(store, sample_dim="time", batch_size=2, client=client)


def test_loader_needs_sample_dim_and_set_epoch_replays(tmp_path: Path) -> None:
    url = write_ml_demo_store(str(tmp_path / "d.zarr"), n_time=16, chunks=(4, 16, 16))
    with pytest.raises(InvalidOptionError, match="needs sample_dim="):
        to_torch_dataloader(url, batch_size=4)
    loader = to_torch_dataloader(url, sample_dim="time", batch_size=4, num_workers=0)
    first = _epoch_labels(loader)
    loader.batch_sampler.set_epoch(0)
    assert _epoch_labels(loader) == first
