"""The main commands on a multi-host cluster (network namespaces) give LocalCluster's answers.

Each command runs unchanged through the CLI with ``--scheduler-file`` against the session
``multihost`` fixture (scheduler, two worker hosts, an S3 host) and again on the session
LocalCluster ``client``; the JSON reports must agree once engine and timing fields are
dropped, and the work must have run on the namespace hosts' workers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from zarr_dask_utils import open_store
from zarr_dask_utils.testing.builders import build_sample_hierarchy
from zarr_dask_utils.testing.cli_runner import ZduResult, run_zdu
from zarr_dask_utils.testing.multihost import MultiHostCluster, namespaces_skip_reason

_UNAVAILABLE = namespaces_skip_reason()
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.s3,
    pytest.mark.slow,
    pytest.mark.skipif(_UNAVAILABLE is not None, reason=str(_UNAVAILABLE)),
]

REPO = Path(__file__).resolve().parents[1]
_VOLATILE = {"engine", "seconds", "elapsed", "duration", "timings"}


def _normalized(value: Any, urls: dict[str, str]) -> Any:
    """*value* without engine/timing fields, URLs replaced by their role names."""
    if isinstance(value, dict):
        return {
            k: _normalized(v, urls)
            for k, v in value.items()
            if k not in _VOLATILE and "seconds" not in k
        }
    if isinstance(value, list):
        return [_normalized(v, urls) for v in value]
    if isinstance(value, str):
        for url, role in sorted(urls.items(), key=lambda kv: -len(kv[0])):
            value = value.replace(url, role)
    return value


def _options(so: dict[str, Any], flag: str = "-o") -> list[str]:
    return [arg for k, v in so.items() for arg in (flag, f"{k}={v}")]


def _executed(mh: MultiHostCluster) -> dict[str, int]:
    """Tasks each worker of *mh* has run so far, by worker address."""
    with mh.client() as cl:
        return dict(cl.run(lambda dask_worker: dask_worker.state.executed_count))


def _on_both(
    mh: MultiHostCluster, client: Any, *args: str, urls: dict[str, str]
) -> tuple[ZduResult, ZduResult]:
    """Run ``zdu ARGS --json`` on the multi-host cluster, then on the LocalCluster."""
    before = _executed(mh)
    remote = run_zdu(*args, "--json", "--scheduler-file", str(mh.scheduler_file))
    after = _executed(mh)
    assert remote.returncode in (0, 1), remote.output
    engine = remote.json()["engine"]
    assert mh.scheduler_address in engine
    worker_hosts = {h.address for n, h in mh.hosts.items() if n.startswith("worker")}
    assert {a.split("//")[1].rsplit(":", 1)[0] for a in after} == worker_hosts
    assert sum(after.values()) > sum(before.values()), "no task ran on the namespace workers"
    local = run_zdu(*args, "--json", scheduler=client)
    assert local.returncode == remote.returncode, local.output
    assert client.scheduler.address in local.json()["engine"]
    assert _normalized(remote.json(), urls) == _normalized(local.json(), urls)
    return remote, local


@pytest.fixture
def mh_sample(multihost: MultiHostCluster) -> tuple[str, dict[str, Any]]:
    """The sample hierarchy (format 3) on the multi-host S3 host."""
    url = f"s3://{multihost.make_bucket()}/sample.zarr"
    build_sample_hierarchy(url, storage_options=multihost.storage_options())
    return url, multihost.storage_options()


def test_validate_and_deep_check_match_localcluster(multihost, client, mh_sample):
    url, so = mh_sample
    validate, _ = _on_both(multihost, client, "validate", url, *_options(so), urls={})
    assert validate.json()["ok"]
    assert validate.json()["arrays"] == 4
    check, _ = _on_both(multihost, client, "check", "--deep", url, *_options(so), urls={})
    assert check.json()["chunks_decoded"] == 17


def test_compare_finds_the_same_difference(multihost, client, mh_sample):
    url, so = mh_sample
    other = url.replace("sample.zarr", "other.zarr")
    build_sample_hierarchy(other, storage_options=so)
    store = open_store(other, storage_options=so, read_only=False)
    arr = zarr.open_array(store, path="climate/t2m", mode="r+")
    arr[0, 0, 0] = arr[0, 0, 0] + 1
    args = ["compare", url, other, *_options(so), *_options(so, "--b-storage-option")]
    remote, _ = _on_both(multihost, client, *args, urls={})
    assert remote.returncode == 1
    assert any("climate/t2m" in f["location"] for f in remote.json()["findings"])


def _source(url: str, so: dict[str, Any]) -> np.ndarray:
    data = np.arange(24 * 8 * 8, dtype="f4").reshape(24, 8, 8)
    arr = zarr.create_array(
        open_store(url, storage_options=so, read_only=False),
        shape=data.shape,
        chunks=(1, 8, 8),
        dtype="f4",
    )
    arr[:] = data
    return data


@pytest.mark.parametrize("temp", [False, True], ids=["direct", "temp-store"])
def test_rechunk_s3_to_s3_matches_localcluster(multihost, client, temp):
    so = multihost.storage_options()
    bucket = multihost.make_bucket()
    src = f"s3://{bucket}/src.zarr"
    data = _source(src, so)
    targets = {f"s3://{bucket}/{who}.zarr": who for who in ("remote", "local")}
    (remote_dst, local_dst) = list(targets)
    common = ["--chunks", "24,2,2", "--max-mem", "1536" if temp else "8MiB"]
    common += [*_options(so), *_options(so, "--dst-storage-option")]

    def args(dst: str, who: str) -> list[str]:
        extra = [f"--temp=s3://{bucket}/tmp-{who}.zarr", *_options(so, "--temp-storage-option")]
        return ["rechunk", src, dst, *common, *(extra if temp else [])]

    before = _executed(multihost)
    remote = run_zdu(
        *args(remote_dst, "remote"), "--json", "--scheduler-file", str(multihost.scheduler_file)
    )
    assert remote.returncode == 0, remote.output
    assert sum(_executed(multihost).values()) > sum(before.values())
    assert multihost.scheduler_address in remote.json()["engine"]
    stages = len(remote.json()["arrays"][0]["plan"]["stages"])
    assert stages == (2 if temp else 1)
    local = run_zdu(*args(local_dst, "local"), "--json", scheduler=client)
    assert local.returncode == 0, local.output
    urls = dict.fromkeys(targets, "dst")
    urls |= {f"s3://{bucket}/tmp-{who}.zarr": "tmp" for who in ("remote", "local")}
    assert _normalized(remote.json(), urls) == _normalized(local.json(), urls)
    out = zarr.open_array(open_store(remote_dst, storage_options=so), mode="r")
    assert out.chunks == (24, 2, 2)
    assert np.array_equal(out[:], data)
    same = run_zdu(
        "compare",
        remote_dst,
        local_dst,
        *_options(so),
        *_options(so, "--b-storage-option"),
        "--json",
        "--scheduler-file",
        str(multihost.scheduler_file),
    )
    assert same.returncode == 0, same.output


def test_hosts_are_separate_network_hosts(tmp_path):
    """Own cluster (it kills a host): distinct addresses, a cut host is unreachable, a killed
    host's worker is gone from the scheduler and comes back when restarted."""
    with MultiHostCluster(tmp_path, s3=False) as mh:
        names = {h.netns for h in mh.hosts.values()}
        assert len(names) == len({h.address for h in mh.hosts.values()}) == 3
        (w1,), (w2,) = mh.worker_addresses("worker1"), mh.worker_addresses("worker2")
        host2, port2 = w2.split("//")[1].rsplit(":", 1)

        def reach(address: str, port: int) -> bool:
            try:
                socket.create_connection((address, port), timeout=0.5).close()
                return True
            except OSError:
                return False

        with mh.client() as cl:
            assert cl.run(reach, host2, int(port2), workers=[w1]) == {w1: True}
            mh.cut("worker2")
            assert cl.run(reach, host2, int(port2), workers=[w1]) == {w1: False}
            assert not reach(host2, int(port2))  # nor from the root namespace
            mh.restore("worker2")
            assert cl.run(reach, host2, int(port2), workers=[w1]) == {w1: True}
            mh.kill_host("worker2")
            cl.wait_for_workers(1)
            while mh.worker_addresses("worker2"):
                cl.sync(asyncio_sleep, 0.05)
            mh.start_workers("worker2")
            assert len(mh.worker_addresses("worker2")) == 1
            assert mh.worker_addresses("worker2") != [w2]
    assert not any(h.netns in _netns_list() for h in mh.hosts.values())


async def asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def _netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_demo_script_sets_up_runs_and_tears_down():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    done = subprocess.run(
        ["bash", str(REPO / "deploy" / "multihost-demo.sh")],
        env={**env, "QUICK": "1"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok: True | engine: distributed: 2 worker(s)" in done.stdout
    namespaces = [line.split()[-1] for line in done.stdout.splitlines() if " netns zdu-" in line]
    assert len(namespaces) == 4  # scheduler, worker1, worker2, s3
    left = _netns_list()
    assert not [ns for ns in namespaces if ns in left]


def test_demo_script_explains_when_namespaces_are_not_allowed():
    """In a user namespace (root there, no real CAP_SYS_ADMIN) `ip netns add` is refused."""
    done = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "bash",
            str(REPO / "deploy" / "multihost-demo.sh"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "multihost-demo: cannot run here: network namespaces are not available" in done.stderr
    assert "as root" in done.stderr


_OWNER = """
import sys, time
from pathlib import Path
from zarr_dask_utils.testing.multihost import MultiHostCluster
mh = MultiHostCluster(Path(sys.argv[1]), worker_hosts=0, s3=False)
print(mh.hosts["scheduler"].netns, mh._procs["scheduler"][0].pid, flush=True)
time.sleep(600)
"""


def test_a_killed_owner_leaves_nothing_behind(tmp_path):
    """SIGKILL the process that made the hosts: its dask processes get SIGTERM (pdeathsig) and
    the next cluster (``sweep_stale``) deletes its namespaces and links."""
    from zarr_dask_utils.testing._multihost_net import sweep_stale

    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        netns, scheduler_pid = owner.stdout.readline().split()
        assert netns in _netns_list()
    finally:
        owner.kill()
        owner.wait()
    # the scheduler is not our child: poll /proc until pdeathsig has ended it
    proc = Path(f"/proc/{scheduler_pid}")
    for _ in range(400):
        if not proc.exists() or "zombie" in (proc / "status").read_text().lower():
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"dask scheduler {scheduler_pid} outlived its killed owner")
    sweep_stale()  # (another cluster starting meanwhile may have swept it already)
    assert netns not in _netns_list()
    suffix = netns.split("-")[1]
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert f"zdub{suffix}" not in links
    assert f"zr{suffix}" not in links


def test_check_command_says_namespaces_are_available(capsys):
    from zarr_dask_utils.testing._multihost_cli import main

    assert main(["check"]) == 0
    assert "available" in capsys.readouterr().out


def test_bench_scaleout_quick_prints_the_tables(capsys):
    spec = importlib.util.spec_from_file_location(
        "bench_scaleout", REPO / "benchmarks" / "bench_scaleout.py"
    )
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--json"]) == 0  # 1 if a row's result were wrong
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    assert [row["workers"] for row in result["scale_out"]] == [1, 2]
    assert [row["arrays"] for row in result["metadata"]["rows"]] == [10, 30, 100]
    assert set(result["metadata"]["exponents"]) == {"validate", "info"}
    assert "growth exponent k" in out
