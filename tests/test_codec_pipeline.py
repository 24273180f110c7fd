"""The codec pipeline choice (zarr's own vs zarrs): resolved, applied on workers, reported.

Real stores on disk and the session cluster's worker processes; values must be identical
whichever pipeline wrote or read them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dask.config
import numpy as np
import pytest
import zarr

from zarr_dask_utils import check_data_integrity, rechunk_array
from zarr_dask_utils._core.compute.codec_pipeline import (
    PIPELINE_PATHS,
    choose_codec_pipeline,
    use_codec_pipeline,
    zarrs_installed,
)
from zarr_dask_utils._core.errors import InvalidOptionError


def _worker_pipeline() -> str:
    return str(zarr.config.get("codec_pipeline.path"))


def _read_on_worker(path: str) -> Any:
    return zarr.open_array(path, mode="r")[:]


@pytest.fixture
def source(tmp_path: Any) -> tuple[str, np.ndarray]:
    data = (np.arange(24 * 32 * 16, dtype="f4").reshape(24, 32, 16) % 97) * np.float32(0.5)
    path = str(tmp_path / "src.zarr")
    arr = zarr.create_array(
        path,
        shape=data.shape,
        chunks=(1, 32, 16),
        dtype="f4",
        compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
    )
    arr[:] = data
    return path, data


@pytest.fixture
def zarr_pipeline_after(client: Any, tmp_path: Any) -> Iterator[Any]:
    """Put the session workers back on zarr's own pipeline after the test."""
    yield client
    tiny = str(tmp_path / "tiny.zarr")
    zarr.create_array(tiny, shape=(2,), chunks=(1,), dtype="i1")[:] = [1, 2]
    with dask.config.set({"zarr-dask-utils.codec-pipeline": "zarr"}):
        check_data_integrity(tiny, client=client, progress=False)
    assert set(client.run(_worker_pipeline).values()) == {PIPELINE_PATHS["zarr"]}


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("zarr", "zarr"), ("ZARR", "zarr")],
    ids=["zarr", "case-insensitive"],
)
def test_choose_zarr(setting: str, expected: str) -> None:
    choice = choose_codec_pipeline(setting)
    assert choice.name == expected
    assert choice.path == PIPELINE_PATHS["zarr"]
    assert "codec pipeline zarr" in choice.describe()


def test_choose_rejects_unknown_setting() -> None:
    with pytest.raises(InvalidOptionError, match="'auto'"):
        choose_codec_pipeline("rust")


def test_choose_auto_follows_installation() -> None:
    choice = choose_codec_pipeline("auto")
    assert choice.name == ("zarrs" if zarrs_installed() else "zarr")
    assert "auto" in choice.reason


def test_config_key_is_read() -> None:
    with dask.config.set({"zarr-dask-utils.codec-pipeline": "zarr"}):
        assert choose_codec_pipeline().name == "zarr"


#: run in a fresh interpreter where ``import zarrs`` fails (zarrs is installed in CI, so a
#: skip-unless-missing test would never run): ``sys.modules["zarrs"] = None`` makes both
#: ``import zarrs`` and ``importlib.util.find_spec("zarrs")`` see no package
_WITHOUT_ZARRS = """
import json, sys
sys.modules["zarrs"] = None
from zarr_dask_utils._core.compute import codec_pipeline as cp
from zarr_dask_utils._core.errors import InvalidOptionError
out = {"installed": cp.zarrs_installed()}
auto = cp.choose_codec_pipeline("auto")
out["auto"] = [auto.name, auto.reason, auto.describe()]
try:
    cp.choose_codec_pipeline("zarrs")
except InvalidOptionError as err:
    out["zarrs"] = [err.kind, str(err)]
out["activate"] = cp._activate(cp.PIPELINE_PATHS["zarrs"])
import zarr
out["pipeline"] = zarr.config.get("codec_pipeline.path")
print(json.dumps(out))
"""


def test_without_zarrs_auto_falls_back_and_zarrs_names_the_extra() -> None:
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_ZARRS], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["installed"] is False
    # auto: zarr's own pipeline, and the engine line says why
    assert out["auto"][0] == "zarr"
    assert out["auto"][2] == "codec pipeline zarr (zarrs not installed; codec-pipeline: auto)"
    # asked for by name: a clear error naming the extra and the way back to zarr's pipeline
    kind, message = out["zarrs"]
    assert kind == "invalid-option"
    assert "pip install 'zarr-dask-utils[zarrs]'" in message
    assert "'auto' or 'zarr'" in message
    # a worker without zarrs keeps zarr's own pipeline and says why
    assert out["activate"] == "zarrs is not installed in this process"
    assert out["pipeline"] == PIPELINE_PATHS["zarr"]


@pytest.mark.slow
def test_rechunk_values_identical_and_engine_names_pipeline(
    source: tuple[str, np.ndarray], tmp_path: Any, zarr_pipeline_after: Any
) -> None:
    client = zarr_pipeline_after
    path, data = source
    before = zarr.config.get("codec_pipeline.path")
    results = {}
    for name in ("zarrs", "zarr"):
        target = str(tmp_path / f"dst-{name}.zarr")
        with dask.config.set({"zarr-dask-utils.codec-pipeline": name}):
            report = rechunk_array(
                path, (24, 8, 8), target, max_mem="1MiB", client=client, progress=False
            )
            assert f"codec pipeline {name}" in report.engine
            assert set(client.run(_worker_pipeline).values()) == {PIPELINE_PATHS[name]}
            # the workers read back with the pipeline in force
            results[name] = client.submit(_read_on_worker, target, pure=False).result()
        # this process's zarr config is never changed
        assert zarr.config.get("codec_pipeline.path") == before
        out = zarr.open_array(target, mode="r")
        assert out.chunks == (24, 8, 8)
        np.testing.assert_array_equal(out[:], data)
    np.testing.assert_array_equal(results["zarrs"], data)
    np.testing.assert_array_equal(results["zarr"], data)


@pytest.mark.slow
def test_deep_scan_through_zarrs_pipeline_finds_same_chunks(
    source: tuple[str, np.ndarray], zarr_pipeline_after: Any
) -> None:
    client = zarr_pipeline_after
    path, data = source
    reports = {}
    for name in ("zarrs", "zarr"):
        with dask.config.set(
            {
                "zarr-dask-utils.codec-pipeline": name,
                "zarr-dask-utils.integrity.direct-decode": False,
            }
        ):
            reports[name] = check_data_integrity(path, deep=True, client=client, progress=False)
    for name, report in reports.items():
        assert report.ok, str(report)
        assert report.chunks_decoded == 24
        assert report.bytes_decoded == data.nbytes
        assert f"codec pipeline {name}" in report.engine


@pytest.mark.slow
def test_threaded_workers_use_zarrs_during_operation_only(
    source: tuple[str, np.ndarray], tmp_path: Any
) -> None:
    from distributed import Client, LocalCluster

    path, data = source
    before = zarr.config.get("codec_pipeline.path")
    target = str(tmp_path / "dst-threads.zarr")
    seen: list[str] = []
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster, set_as_default=False) as threaded,
        dask.config.set({"zarr-dask-utils.codec-pipeline": "zarrs"}),
    ):
        report = rechunk_array(
            path, (24, 8, 8), target, max_mem="1MiB", client=threaded, progress=False
        )
        # the threads' pipeline is this process's: zarrs while the operation ran (the
        # worker plugin left this process alone, the operation put the setting back)
        seen.extend(threaded.run(_worker_pipeline).values())
        with use_codec_pipeline(threaded) as choice:
            during = set(threaded.run(_worker_pipeline).values())
        assert choice.name == "zarrs"
        assert during == {PIPELINE_PATHS["zarrs"]}
    assert "codec pipeline zarrs" in report.engine
    assert seen == [before]
    assert zarr.config.get("codec_pipeline.path") == before
    np.testing.assert_array_equal(zarr.open_array(target, mode="r")[:], data)


# --- arrays zarrs accepts but cannot serve: zarr's own pipeline, array by array ---------------


def _v2_array(path: str, **kwargs: Any) -> tuple[str, np.ndarray]:
    data = np.arange(6 * 8, dtype=kwargs.pop("dtype", "<f4")).reshape(6, 8)
    arr = zarr.create_array(
        path, shape=data.shape, chunks=(3, 4), dtype=data.dtype, zarr_format=2, **kwargs
    )
    arr[:] = data
    return path, data


def _unsupported_cases(tmp_path: Any) -> dict[str, tuple[str, np.ndarray]]:
    from numcodecs import Shuffle

    return {
        "order-F": _v2_array(str(tmp_path / "f.zarr"), order="F"),
        "big-endian": _v2_array(str(tmp_path / "be.zarr"), dtype=">i8"),
        # numcodecs writes elementsize 0 as "no shuffle" and reads it back the same way
        "shuffle-0": _v2_array(str(tmp_path / "s0.zarr"), filters=[Shuffle(elementsize=0)]),
    }


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"zarr_format": 2, "order": "F", "dtype": "<f4"}, "format 2 order F"),
        ({"zarr_format": 2, "order": "C", "dtype": ">f8"}, "format 2 big-endian dtype"),
        ({"zarr_format": 2, "order": "C", "dtype": "|u1"}, None),
        (
            {"zarr_format": 2, "dtype": "<i2", "filters": [{"id": "shuffle", "elementsize": 0}]},
            "shuffle with elementsize 0",
        ),
        (
            {
                "zarr_format": 3,
                "codecs": [
                    {
                        "name": "sharding_indexed",
                        "configuration": {
                            "codecs": [
                                {"name": "bytes"},
                                {"name": "numcodecs.shuffle", "configuration": {"elementsize": 0}},
                            ]
                        },
                    }
                ],
            },
            "shuffle with elementsize 0",
        ),
        ({"zarr_format": 3, "codecs": [{"name": "bytes"}, {"name": "zstd"}]}, None),
    ],
    ids=["order-F", "big-endian", "bytes", "shuffle-0-v2", "shuffle-0-in-shard", "v3-plain"],
)
def test_zarrs_unsupported_reason(doc: dict[str, Any], reason: str | None) -> None:
    from zarr_dask_utils._core.pure.zarrs_support import zarrs_unsupported_reason

    assert zarrs_unsupported_reason(doc) == reason


def test_zarrs_pipeline_hands_unsupported_arrays_to_zarr(tmp_path: Any) -> None:
    from zarr.core.codec_pipeline import BatchedCodecPipeline

    from zarr_dask_utils._core.compute.zarrs_pipeline import ZduZarrsCodecPipeline

    cases = _unsupported_cases(tmp_path)
    plain, plain_data = _v2_array(str(tmp_path / "plain.zarr"))
    with zarr.config.set({"codec_pipeline.path": PIPELINE_PATHS["zarrs"]}):
        for name, (path, data) in cases.items():
            arr = zarr.open_array(path, mode="r")
            assert type(arr._async_array.codec_pipeline) is BatchedCodecPipeline, name
            np.testing.assert_array_equal(arr[:], data, err_msg=name)
            zarr.open_array(path, mode="r+")[:] = data[::-1]  # zarrs raised on writes too
            np.testing.assert_array_equal(zarr.open_array(path, mode="r")[:], data[::-1])
        arr = zarr.open_array(plain, mode="r")
        assert isinstance(arr._async_array.codec_pipeline, ZduZarrsCodecPipeline)
        np.testing.assert_array_equal(arr[:], plain_data)


@pytest.mark.slow
def test_rechunk_through_zarrs_of_arrays_zarrs_cannot_serve(
    tmp_path: Any, zarr_pipeline_after: Any
) -> None:
    client = zarr_pipeline_after
    cases = _unsupported_cases(tmp_path)
    del cases["shuffle-0"]  # rechunk refuses it (test_foreign_writers: what netCDF-C meant)
    with dask.config.set({"zarr-dask-utils.codec-pipeline": "zarrs"}):
        for name, (path, data) in cases.items():
            target = str(tmp_path / f"out-{name}.zarr")
            report = rechunk_array(path, (6, 8), target, client=client, progress=False)
            assert "codec pipeline zarrs" in report.engine
            out = zarr.open_array(target, mode="r")
            assert out.chunks == (6, 8)
            np.testing.assert_array_equal(out[:], data, err_msg=name)
