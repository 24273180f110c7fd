"""Local paths the workers cannot see fail up front (issue 18, part 1).

The workers that cannot see the client's files are real ``dask worker`` processes started
under ``unshare --mount`` with a private tmpfs mounted over this module's store folder: they
share the network (a ``dask scheduler`` on 127.0.0.1) but see an empty folder at the same
path, as workers on another host without a shared filesystem do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zarr

from zarr_dask_utils import StoreNotVisibleError, check_data_integrity
from zarr_dask_utils._core.compute import visibility
from zarr_dask_utils._core.compute.visibility import PathCheck, check_workers_see
from zarr_dask_utils.testing.builders import build_sample_hierarchy
from zarr_dask_utils.testing.cli_runner import run_zdu

# root only (as CI runs): a private mount namespace for the worker needs it; unshare(1) comes
# with util-linux, so its absence fails instead of skipping
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root to give worker processes a private mount namespace (unshare --mount)",
)

KIND = "store-not-visible-to-workers"


def _wait_for_file(path: Path, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start (exit {proc.poll()})")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def hidden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    """A folder, and a Client on a cluster whose one worker sees an empty tmpfs there."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("hidden")
    shared = tmp_path_factory.mktemp("scheduler")
    sched_file = shared / "scheduler.json"
    dask = str(Path(sys.executable).with_name("dask"))
    procs: list[subprocess.Popen[bytes]] = []
    log = (shared / "log").open("wb")
    try:
        argv = [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
        procs.append(
            subprocess.Popen(
                [*argv, "--scheduler-file", str(sched_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        _wait_for_file(sched_file, procs[0], "dask scheduler")
        address = json.loads(sched_file.read_text())["address"]
        script = (
            f"mount -t tmpfs zdu-test {folder} && exec {dask} worker {address} "
            "--host 127.0.0.1 --no-nanny --nthreads 1 --no-dashboard"
        )
        procs.append(
            subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        with Client(address, set_as_default=False, timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
            yield folder, client
    finally:
        for proc in reversed(procs):  # the worker first, then the scheduler
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _store(folder: Path, name: str) -> str:
    path = str(folder / name)
    build_sample_hierarchy(path, zarr_format=3)
    return path


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.slow
@pytest.mark.parametrize("command", ["info", "validate", "check"])
def test_a_store_the_workers_cannot_see_fails_up_front(hidden, command) -> None:
    folder, client = hidden
    path = _store(folder, f"{command}.zarr")
    before = _files(folder)
    done = run_zdu(command, path, "--json", scheduler=client)
    assert done.returncode == 2, done.output
    error = json.loads(done.stdout)["error"]
    assert error["kind"] == KIND
    address = client.scheduler.address
    assert f"The workers of the cluster at {address} cannot see {path!r}" in error["message"]
    assert "no such file or directory" in error["message"]
    assert f"zdu download {path} s3://" in error["message"]
    assert _files(folder) == before  # nothing written (the probe files are gone too)


@pytest.mark.slow
def test_rechunk_to_paths_the_workers_cannot_see_writes_nothing(hidden) -> None:
    folder, client = hidden
    src = _store(folder, "rechunk-src.zarr")
    before = _files(folder)
    done = run_zdu(
        "rechunk",
        src,
        str(folder / "out.zarr"),
        "--chunks",
        "8,16,16",
        "--max-mem",
        "64MiB",
        "--json",
        scheduler=client,
    )
    assert done.returncode == 2, done.output
    assert json.loads(done.stdout)["error"]["kind"] == KIND
    assert _files(folder) == before


@pytest.mark.slow
def test_an_output_the_workers_cannot_write_fails_before_any_write(
    hidden, s3_bucket, s3_storage_options, tmp_path
) -> None:
    folder, client = hidden
    url = f"s3://{s3_bucket}/src.zarr"
    build_sample_hierarchy(url, storage_options=s3_storage_options, zarr_format=3)
    before = _files(folder)
    options = [f"-o{k}={v}" for k, v in s3_storage_options.items()]
    target = str(folder / "out.zarr")
    done = run_zdu(
        "rechunk",
        url,
        target,
        "--chunks",
        "8,16,16",
        "--max-mem",
        "64MiB",
        "--json",
        *options,
        scheduler=client,
    )
    assert done.returncode == 2, done.output
    error = json.loads(done.stdout)["error"]
    assert error["kind"] == KIND
    assert f"cannot write to {target!r}" in error["message"]
    assert _files(folder) == before


def _planter() -> Any:
    def plant(files: dict[str, tuple[bytes, int]]) -> None:
        """On a worker: write *files* (bytes, mtime in ns) at the same paths in its own view."""
        for path, (data, mtime) in files.items():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
            os.utime(path, ns=(mtime, mtime))

    return plant  # a closure: cloudpickle sends it by value (workers cannot import tests/)


@pytest.mark.slow
def test_another_copy_at_the_same_path_counts_as_not_visible(hidden) -> None:
    folder, client = hidden
    path = _store(folder, "copied.zarr")
    docs = {
        str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in Path(path).rglob("*") if p.is_file()
    }
    client.run(_planter(), docs)  # same bytes, sizes and times: only the inodes differ
    with pytest.raises(StoreNotVisibleError, match="sees a different file there"):
        check_workers_see(client, [PathCheck(path)])


@pytest.mark.slow
def test_the_advised_download_makes_the_store_usable(hidden, s3_bucket, s3_storage_options) -> None:
    folder, client = hidden
    path = _store(folder, "advice.zarr")
    error = json.loads(run_zdu("check", path, "--json", scheduler=client).stdout)["error"]
    assert f"`zdu download {path} s3://BUCKET/PREFIX --dst-storage-option ...`" in error["message"]
    url = f"s3://{s3_bucket}/advice.zarr"
    options = [f"--dst-storage-option={k}={v}" for k, v in s3_storage_options.items()]
    copied = run_zdu("download", path, url, *options)  # without --scheduler: runs here
    assert copied.returncode == 0, copied.output
    options = [f"-o{k}={v}" for k, v in s3_storage_options.items()]
    done = run_zdu("check", url, "--json", *options, scheduler=client)
    assert done.returncode == 0, done.output
    assert json.loads(done.stdout)["ok"] is True


@pytest.mark.slow
@pytest.mark.parametrize("command", ["info", "validate", "check", "rechunk"])
def test_the_same_commands_work_on_a_cluster_that_sees_the_files(client, tmp_path, command) -> None:
    path = _store(tmp_path, "ok.zarr")
    extra = (
        [str(tmp_path / "out.zarr"), "--chunks", "8,16,16", "--max-mem", "64MiB"]
        if command == "rechunk"
        else []
    )
    done = run_zdu(command, path, *extra, "--json", scheduler=client)
    assert done.returncode == 0, done.output
    if command == "rechunk":
        assert zarr.open_group(str(tmp_path / "out.zarr"), mode="r")["climate/t2m"].chunks == (
            8,
            16,
            16,
        )


# --- the cost: one request for local paths on a user's cluster, none otherwise -------------


def test_one_request_per_operation_on_a_users_cluster(client, tmp_path) -> None:
    path = _store(tmp_path, "cost.zarr")
    sent = visibility.requests_sent()
    assert check_data_integrity(path, client=client, progress=False).ok
    assert visibility.requests_sent() == sent + 1


def test_no_request_for_s3_locations(client, s3_bucket, s3_storage_options) -> None:
    url = f"s3://{s3_bucket}/cost.zarr"
    build_sample_hierarchy(url, storage_options=s3_storage_options, zarr_format=3)
    sent = visibility.requests_sent()
    report = check_data_integrity(
        url, storage_options=s3_storage_options, client=client, progress=False
    )
    assert report.ok
    assert visibility.requests_sent() == sent


def test_rechunk_checks_source_and_target_in_one_request(client, tmp_path) -> None:
    from zarr_dask_utils import rechunk_array

    path = _store(tmp_path, "src.zarr")
    sent = visibility.requests_sent()
    rechunk_array(path, (8, 16, 16), str(tmp_path / "out.zarr"), client=client, progress=False)
    assert visibility.requests_sent() == sent + 1  # the nested consolidation adds none


_EMBEDDED = """
import sys
from zarr_dask_utils import check_data_integrity
from zarr_dask_utils._core.compute import visibility
if __name__ == "__main__":
    import dask.config
    with dask.config.set({"zarr-dask-utils.cluster.processes": True}):
        report = check_data_integrity(sys.argv[1], progress=False)
    print(report.ok, report.engine.count("worker processes"), visibility.requests_sent())
"""


@pytest.mark.slow
def test_no_request_for_the_embedded_cluster(tmp_path) -> None:
    path = _store(tmp_path, "embedded.zarr")
    script = tmp_path / "embedded.py"
    script.write_text(_EMBEDDED)
    done = subprocess.run(
        [sys.executable, str(script), path], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True", "1", "0"]  # worker processes, and no request


@pytest.mark.slow
def test_the_current_client_is_checked_too(hidden) -> None:
    folder, client = hidden
    path = _store(folder, "current.zarr")
    with client.as_current(), pytest.raises(StoreNotVisibleError, match="cannot see"):
        check_data_integrity(path, progress=False)


def test_local_paths_behind_store_objects(tmp_path) -> None:
    from zarr.storage import FsspecStore, LocalStore, LoggingStore, MemoryStore

    from zarr_dask_utils._core.compute.visibility import local_path
    from zarr_dask_utils._core.storage.locations import resolve_location

    assert local_path(resolve_location(str(tmp_path / "a.zarr"))) == str(tmp_path / "a.zarr")
    assert local_path(resolve_location(str(tmp_path / "a.zip"))) == str(tmp_path / "a.zip")
    logged = LoggingStore(LocalStore(str(tmp_path / "b.zarr")))
    assert local_path(resolve_location(logged)) == str(tmp_path / "b.zarr")
    fsspec_local = FsspecStore.from_url(f"file://{tmp_path}/c.zarr")
    assert local_path(resolve_location(fsspec_local)) == f"{tmp_path}/c.zarr"
    assert local_path(resolve_location(MemoryStore())) is None
    assert local_path(resolve_location("s3://bucket/x.zarr")) is None


def test_an_output_the_workers_reach_passes_and_leaves_nothing(client, tmp_path) -> None:
    target = tmp_path / "new" / "out.zarr"  # not there yet: its nearest folder is probed
    sent = visibility.requests_sent()
    check_workers_see(client, [PathCheck(str(target), output=True), PathCheck(str(tmp_path))])
    assert visibility.requests_sent() == sent + 1  # both in one request
    assert list(tmp_path.iterdir()) == []  # the probe files are gone


def test_what_one_process_sees(tmp_path) -> None:
    """The worker-side view, run here: each verdict the message can carry."""
    from zarr_dask_utils._core.compute.visibility import _fingerprint, _worker_view

    path = _store(tmp_path, "seen.zarr")
    archive = tmp_path / "a.zip"
    archive.write_bytes(b"PK\x05\x06" + bytes(18))
    probe = tmp_path / ".zdu-probe-x"
    probe.write_text("token")
    verdicts = _worker_view(
        [
            (path, _fingerprint(path), None, None),  # the same store
            (str(archive), _fingerprint(str(archive)), None, None),  # the same file
            (str(tmp_path / "gone.zarr"), ("dir", 1), None, None),
            (path, _fingerprint(str(tmp_path)), None, None),  # another folder
            (str(tmp_path), None, str(probe), "token"),  # an output it can write
            (str(tmp_path), None, str(probe), "other"),  # another file at the probe's path
            (str(tmp_path), None, str(tmp_path / ".zdu-probe-none"), "t"),
            (str(tmp_path), None, str(tmp_path / "no" / ".zdu-probe-y"), "t"),
        ]
    )
    assert verdicts == [
        None,
        None,
        "no such file or directory",
        "sees a different file there",
        None,
        "sees a different file there",
        f"the folder {str(tmp_path)!r} there is another one than this machine's",
        f"no folder {str(tmp_path / 'no')!r}",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".zdu-probe-x", "a.zip", "seen.zarr"]


@pytest.mark.slow
def test_a_configured_scheduler_is_checked_before_the_first_write(hidden) -> None:
    folder, client = hidden
    src = _store(folder, "configured.zarr")
    before = _files(folder)
    argv = ["rechunk", src, str(folder / "out2.zarr"), "--chunks", "8,16,16"]
    argv += ["--max-mem", "64MiB", "--json"]
    env = {"DASK_SCHEDULER_ADDRESS": client.scheduler.address}
    done = run_zdu(*argv, subprocess=True, env=env)
    assert done.returncode == 2, done.output
    assert json.loads(done.stdout)["error"]["kind"] == KIND
    assert _files(folder) == before
