"""get_client: explicit, current, address, scheduler file, environment, embedded; and failures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import dask
import pytest

from zarr_dask_utils import ClusterConnectionError, InvalidOptionError, get_client
from zarr_dask_utils._core.compute.cluster import describe_client

pytestmark = pytest.mark.cluster


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker_pids(cl) -> set[int]:
    return set(cl.run(os.getpid).values())


def test_explicit_client_is_used_and_left_open(client):
    with get_client(client) as cl:
        assert cl is client
    assert client.status == "running"


def test_current_client(client):
    with client.as_current(), get_client() as cl:
        assert cl is client
    assert client.status == "running"


def test_scheduler_address(client):
    address = client.scheduler.address
    with get_client(scheduler=address) as cl:
        assert cl is not client
        assert cl.scheduler.address == address
        assert _worker_pids(cl) == _worker_pids(client)
    assert cl.status == "closed"  # opened here, closed here
    assert client.status == "running"


def test_scheduler_file(client, tmp_path):
    path = tmp_path / "scheduler.json"
    client.write_scheduler_file(str(path))
    assert json.loads(path.read_text())["address"] == client.scheduler.address
    with get_client(scheduler_file=path) as cl:
        assert cl.scheduler.address == client.scheduler.address
        assert cl.submit(sum, [1, 2, 3]).result() == 6
    assert cl.status == "closed"


def test_missing_scheduler_file(tmp_path):
    path = tmp_path / "nope" / "scheduler.json"
    with (
        pytest.raises(InvalidOptionError, match="does not exist") as info,
        get_client(scheduler_file=path),
    ):
        pass  # pragma: no cover
    assert str(path) in str(info.value)
    assert "--scheduler-file" in str(info.value)


def test_address_and_file_together(tmp_path):
    with (
        pytest.raises(InvalidOptionError, match="only one"),
        get_client(scheduler="tcp://127.0.0.1:1", scheduler_file=tmp_path / "s.json"),
    ):
        pass  # pragma: no cover


def test_unreachable_address():
    address = f"tcp://127.0.0.1:{_closed_port()}"
    with (
        dask.config.set({"zarr-dask-utils.cluster.connect-timeout": "1s"}),
        pytest.raises(ClusterConnectionError) as info,
        get_client(scheduler=address),
    ):
        pass  # pragma: no cover
    message = str(info.value)
    assert address in message
    assert "No Dask scheduler answered" in message
    assert isinstance(info.value, TimeoutError)
    assert info.value.kind == "cluster-unreachable"
    assert info.value.__cause__ is not None


def test_unreachable_scheduler_file(tmp_path):
    path = tmp_path / "stale.json"
    path.write_text(json.dumps({"address": f"tcp://127.0.0.1:{_closed_port()}"}))
    with (
        dask.config.set({"zarr-dask-utils.cluster.connect-timeout": "1s"}),
        pytest.raises(ClusterConnectionError, match="scheduler file") as info,
        get_client(scheduler_file=path),
    ):
        pass  # pragma: no cover
    assert str(path) in str(info.value)


def test_describe_client(client):
    text = describe_client(client)
    assert text.startswith("distributed: 2 worker(s), 2 thread(s) at ")
    assert client.scheduler.address in text
    assert "dashboard http://127.0.0.1:" in text


# --- real processes: no client is current there ------------------------------------------------

_SCRIPT = """
import logging, sys
from zarr_dask_utils import get_client, walk_hierarchy
from zarr_dask_utils._core.compute.cluster import describe_client
from zarr_dask_utils.testing.builders import build_sample_hierarchy

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    build_sample_hierarchy(sys.argv[1])
    with get_client() as cl:
        print(describe_client(cl))
    print(walk_hierarchy(sys.argv[1], progress=False).engine)
"""


def _run_script(tmp_path, env_extra):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / "s.zarr")],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )


def test_scheduler_address_from_environment(client, tmp_path):
    out = _run_script(tmp_path, {"DASK_SCHEDULER_ADDRESS": client.scheduler.address})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("distributed: 2 worker(s)")
    assert client.scheduler.address in lines[0]
    assert client.scheduler.address in lines[1]
    assert "Dask dashboard" in out.stderr


@pytest.mark.slow
def test_embedded_local_cluster(tmp_path):
    env = {
        "DASK_ZARR_DASK_UTILS__CLUSTER__N_WORKERS": "1",
        "DASK_ZARR_DASK_UTILS__CLUSTER__DASHBOARD_ADDRESS": "127.0.0.1:0",
    }
    out = _run_script(tmp_path, env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("distributed: 1 worker(s), 2 thread(s) at tcp://127.0.0.1:")
    assert lines[1].startswith("distributed: 1 worker(s)")
