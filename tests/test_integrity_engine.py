"""The embedded deep scan picks worker processes for many small chunks, threads otherwise.

Runs in a fresh process: no client may be current (the session cluster of other tests
would be used as given).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

_SCRIPT = """
import sys
import dask.config
import zarr
from zarr_dask_utils import check_data_integrity, verify_chunks

if __name__ == "__main__":
    root = sys.argv[1]
    small = zarr.create_array(f"{root}/small.zarr", shape=(64,), chunks=(1,), dtype="f4")
    small[:] = 1
    large = zarr.create_array(f"{root}/large.zarr", shape=(64,), chunks=(32,), dtype="f4")
    large[:] = 1
    with dask.config.set({"zarr-dask-utils.integrity.processes-from-chunks": 16}):
        for name, processes in (("small", "auto"), ("large", "auto"), ("small", False)):
            with dask.config.set({"zarr-dask-utils.cluster.processes": processes}):
                report = check_data_integrity(f"{root}/{name}.zarr", deep=True, progress=False)
            assert report.ok, str(report)
            print(f"{name} {processes} {report.chunks_decoded}: {report.engine}")
        report = check_data_integrity(f"{root}/small.zarr", progress=False)  # shallow
        print(f"shallow: {report.engine}")
        sampled = verify_chunks(f"{root}/small.zarr", sample_rate=1.0, progress=False)
        print(f"sampled {sampled.ok}: {sampled.engine}")
"""


@pytest.mark.slow
def test_embedded_engine_follows_the_chunk_count(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    env = {
        **os.environ,
        "DASK_ZARR_DASK_UTILS__CLUSTER__N_WORKERS": "1",
        "DASK_ZARR_DASK_UTILS__CLUSTER__DASHBOARD_ADDRESS": "127.0.0.1:0",
    }
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    small, large, forced, shallow, sampled = out.stdout.splitlines()
    assert small.startswith("small auto 64: ")
    assert (
        "worker processes (cluster.processes=auto, 64 chunks of 4 B on average to decode" in small
    )
    assert "per-chunk Python work holds the GIL" in small
    assert large.startswith("large auto 2: ")
    assert "threads in one process (cluster.processes=auto, local stores" in large
    assert forced.startswith("small False 64: ")
    assert "threads in one process (cluster.processes=false" in forced
    assert "threads in one process (cluster.processes=auto" in shallow
    assert sampled.startswith("sampled True: ")
    assert "worker processes (cluster.processes=auto, 64 chunks of 4 B on average" in sampled
