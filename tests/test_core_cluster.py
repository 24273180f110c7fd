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
from zarr_dask_utils._core.compute.cluster import describe_client, embedded_mode
from zarr_dask_utils._core.storage.locations import resolve_location

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
import logging, os, sys
from zarr_dask_utils import get_client, walk_hierarchy
from zarr_dask_utils._core.compute.cluster import describe_client, embedded_mode
from zarr_dask_utils._core.storage.locations import resolve_location
from zarr_dask_utils.testing.builders import build_sample_hierarchy

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    build_sample_hierarchy(sys.argv[1])
    with get_client() as cl:
        print(describe_client(cl))
        pids = sorted(set(cl.run(os.getpid).values()))
    print(walk_hierarchy(sys.argv[1], progress=False).engine)
    print(f"WORKER_PIDS={pids}")
    print(f"MY_PID={os.getpid()}")
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
@pytest.mark.parametrize(
    ("setting", "address", "how"),
    [
        pytest.param(
            None, "tcp://127.0.0.1:", "threads in one process (cluster.processes=auto", id="auto"
        ),
        pytest.param(
            "false", "tcp://127.0.0.1:", "threads in one process (cluster.processes=false", id="f"
        ),
        pytest.param(
            "true", "tcp://127.0.0.1:", "worker processes (cluster.processes=true", id="t"
        ),
    ],
)
def test_embedded_local_cluster(tmp_path, setting, address, how):
    env = {
        "DASK_ZARR_DASK_UTILS__CLUSTER__N_WORKERS": "1",
        "DASK_ZARR_DASK_UTILS__CLUSTER__DASHBOARD_ADDRESS": "127.0.0.1:0",
    }
    if setting is not None:
        env["DASK_ZARR_DASK_UTILS__CLUSTER__PROCESSES"] = setting
    out = _run_script(tmp_path, env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # one worker either way: n-workers processes, or one worker with their threads (1 x 2)
    assert lines[0].startswith(f"distributed: 1 worker(s), 2 thread(s) at {address}")
    assert f"embedded LocalCluster, {how}" in lines[0]
    assert lines[1].startswith(f"distributed: 1 worker(s), 2 thread(s) at {address}")
    assert f"embedded LocalCluster, {how}" in lines[1]
    if setting is None:  # the operation's own cluster saw its store
        assert "local stores" in lines[1]
    found = dict(line.split("=", 1) for line in lines if line.startswith(("WORKER_", "MY_")))
    in_this_process = json.loads(found["WORKER_PIDS"]) == [int(found["MY_PID"])]
    assert in_this_process is (setting != "true")


# --- threads or processes: the choice, its reason, config and the CLI flag ---------------------


@pytest.mark.parametrize(
    ("value", "processes", "reason"),
    [
        pytest.param("auto", False, "cluster.processes=auto, local stores", id="auto"),
        pytest.param(True, True, "cluster.processes=true", id="true"),
        pytest.param(False, False, "cluster.processes=false", id="false"),
        pytest.param("true", True, "cluster.processes=true", id="env-true"),
        pytest.param("threads", False, "cluster.processes=false", id="threads"),
        pytest.param("Processes", True, "cluster.processes=true", id="processes"),
    ],
)
def test_embedded_mode_from_config(tmp_path, value, processes, reason):
    location = resolve_location(str(tmp_path))
    with dask.config.set({"zarr-dask-utils.cluster.processes": value}):
        mode = embedded_mode([location])
    assert mode.processes is processes
    assert reason in mode.reason
    assert mode.label == ("worker processes" if processes else "threads in one process")


def test_embedded_mode_default_is_auto_threads():
    mode = embedded_mode()
    assert mode.processes is False
    assert mode.reason.startswith("cluster.processes=auto, no stores")


def test_embedded_mode_rejects_an_unknown_value():
    with (
        dask.config.set({"zarr-dask-utils.cluster.processes": "sometimes"}),
        pytest.raises(InvalidOptionError, match="auto, true") as info,
    ):
        embedded_mode()
    assert "sometimes" in str(info.value)


def test_describe_client_says_how_the_client_was_found(client):
    with get_client(scheduler=client.scheduler.address) as cl:
        assert "; the scheduler address given" in describe_client(cl)
    assert "; the client passed in" in describe_client(client)


def test_threads_flag_leaves_a_given_scheduler_alone(client, tmp_path):
    from click.testing import CliRunner

    from zarr_dask_utils.cli.main import cli
    from zarr_dask_utils.testing.builders import build_sample_hierarchy

    build_sample_hierarchy(str(tmp_path / "s.zarr"))
    args = ["--threads", "info", str(tmp_path / "s.zarr"), "--json"]
    result = CliRunner().invoke(cli, [*args, "--scheduler", client.scheduler.address])
    assert result.exit_code == 0, result.output
    engine = json.loads(result.stdout)["engine"]
    assert engine.startswith("distributed: 2 worker(s)")
    assert client.scheduler.address in engine
    assert "the scheduler address given" in engine


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flag", "how"),
    [
        pytest.param("--threads", "threads in one process (cluster.processes=false", id="threads"),
        pytest.param("--processes", "worker processes (cluster.processes=true", id="processes"),
    ],
)
def test_cli_flag_chooses_the_embedded_cluster(tmp_path, flag, how):
    from zarr_dask_utils.testing.builders import build_sample_hierarchy

    build_sample_hierarchy(str(tmp_path / "s.zarr"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env["DASK_ZARR_DASK_UTILS__CLUSTER__DASHBOARD_ADDRESS"] = "127.0.0.1:0"
    env["DASK_ZARR_DASK_UTILS__CLUSTER__N_WORKERS"] = "2"  # 2 x 2 threads, or one worker with 4
    env["DASK_ZARR_DASK_UTILS__CLUSTER__PROCESSES"] = "true" if flag == "--threads" else "false"
    out = subprocess.run(
        [sys.executable, "-m", "zarr_dask_utils", flag, "info", str(tmp_path / "s.zarr"), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    engine = json.loads(out.stdout)["engine"]
    assert f"embedded LocalCluster, {how}" in engine  # the flag beats the config
    workers = "1 worker(s), 4 thread(s)" if flag == "--threads" else "2 worker(s), 4 thread(s)"
    assert engine.startswith(f"distributed: {workers} at tcp://127.0.0.1:")
