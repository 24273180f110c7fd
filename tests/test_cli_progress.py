"""Progress bars (issue 10, item 0): every command works in a real terminal, and a bar never fails.

``distributed.progress`` looks for a *default* client; zdu's clients are not default ones, so
every command failed with "No clients found" as soon as stderr was a terminal.  Here the CLI
runs under a real pseudo-terminal (``pty``), with the embedded cluster and with
``--scheduler``; library calls with ``progress=True`` run with a given client and with none.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from zarr_dask_utils import validate_metadata
from zarr_dask_utils._core.compute.progress import StderrProgressBar, show_progress
from zarr_dask_utils.testing.builders import build_sample_hierarchy

pytestmark = pytest.mark.cluster

_FORBIDDEN = ("No clients found", "unexpected", "Traceback")


def _env() -> dict[str, str]:
    """The test environment, with a small embedded cluster on a free dashboard port."""
    return {
        **os.environ,
        "DASK_ZARR_DASK_UTILS__CLUSTER__DASHBOARD_ADDRESS": "127.0.0.1:0",
        "DASK_ZARR_DASK_UTILS__CLUSTER__N_WORKERS": "1",
        "TERM": "xterm",
    }


def run_in_pty(args: list[str], timeout: float = 240) -> tuple[int, str]:
    """Run *args* with stdin, stdout and stderr on a new pseudo-terminal; (exit code, output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=_env())
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break  # exited, and nothing more to read
        else:
            proc.kill()
            pytest.fail(f"{args} did not finish in {timeout} s: {out.decode(errors='replace')}")
        return proc.wait(timeout=30), out.decode(errors="replace")
    finally:
        os.close(master)


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("progress") / "sample.zarr"
    build_sample_hierarchy(str(path), zarr_format=3)
    return path


_COMMANDS = [
    pytest.param(["info", "{store}"], (0,), id="info"),
    pytest.param(["validate", "{store}"], (0,), id="validate"),
    pytest.param(["check", "{store}", "--deep"], (0,), id="check-deep"),
    pytest.param(["doctor", "{store}"], (0, 1), id="doctor"),  # the sample's chunks are tiny
    pytest.param(
        ["rechunk", "{store}/climate/t2m", "{out}", "--chunks", "8,16,16", "--max-mem", "1MiB"],
        (0,),
        id="rechunk",
    ),
]


def _zdu(args: list[str], store: Path, out: Path, scheduler: str | None) -> list[str]:
    cmd = [a.format(store=store, out=out) for a in args]
    if scheduler:
        cmd += ["--scheduler", scheduler]
    return [sys.executable, "-m", "zarr_dask_utils", *cmd]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "codes"), _COMMANDS)
@pytest.mark.parametrize("cluster", ["embedded", "scheduler"])
def test_commands_work_in_a_terminal(
    args: list[str],
    codes: tuple[int, ...],
    cluster: str,
    sample_store: Path,
    tmp_path: Path,
    client: Any,
) -> None:
    scheduler = client.scheduler.address if cluster == "scheduler" else None
    code, output = run_in_pty(_zdu(args, sample_store, tmp_path / "out.zarr", scheduler))
    assert code in codes, output
    for text in _FORBIDDEN:
        assert text not in output, output
    assert "% Completed" in output, output  # the bar was drawn, on the terminal


@pytest.mark.slow
def test_json_in_a_terminal_keeps_stdout_clean(sample_store: Path, tmp_path: Path) -> None:
    """The bar goes to stderr: with stdout a pipe and stderr a terminal, stdout is pure JSON."""
    master, slave = pty.openpty()
    cmd = [sys.executable, "-m", "zarr_dask_utils", "validate", str(sample_store), "--json"]
    try:
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=slave, env=_env(), timeout=240, check=False
        )
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["ok"] is True


def test_progress_true_with_a_given_client(
    sample_store: Path, client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    report = validate_metadata(sample_store, client=client, progress=True)
    assert report.ok
    assert "distributed" in report.engine
    captured = capsys.readouterr()
    assert "% Completed" in captured.err
    assert "Completed" not in captured.out


_NO_CLIENT_SCRIPT = """
import json, sys
from zarr_dask_utils import check_data_integrity, validate_metadata

if __name__ == "__main__":
    from distributed import Client
    try:
        Client.current(allow_global=True)
        sys.exit("a default client exists")
    except ValueError:
        pass
    validated = validate_metadata(sys.argv[1], progress=True)
    checked = check_data_integrity(sys.argv[1], deep=True, progress=True)
    print(json.dumps({
        "validated": validated.ok, "checked": checked.ok, "chunks": checked.chunks_decoded,
        "engine": checked.engine,
    }))
"""


@pytest.mark.slow
def test_progress_true_without_a_client(sample_store: Path, tmp_path: Path) -> None:
    """No Client anywhere (a fresh notebook kernel, a script): the embedded cluster's bar works."""
    script = tmp_path / "no_client.py"
    script.write_text(textwrap.dedent(_NO_CLIENT_SCRIPT))
    out = subprocess.run(
        [sys.executable, str(script), str(sample_store)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["validated"] is True
    assert result["checked"] is True
    assert result["chunks"] > 0
    assert "distributed" in result["engine"]
    assert "% Completed" in out.stderr
    assert "No clients found" not in out.stderr


def test_a_failing_bar_does_not_fail_the_operation(client: Any) -> None:
    """A bar that cannot reach its scheduler is logged and skipped; the result is intact."""
    from distributed import Client

    future = client.submit(sum, [1, 2, 3], pure=False)
    with Client(client.scheduler.address, set_as_default=False) as other:
        other_future = other.submit(sum, [4, 5], pure=False)
        other_future.result()
    show_progress(other, [other_future])  # closed client: must not raise
    assert future.result() == 6


def test_bar_draws_on_the_stream_it_is_given(client: Any, tmp_path: Path) -> None:
    future = client.submit(sum, [1, 2], pure=False)
    target = tmp_path / "bar.txt"
    with target.open("w") as stream:
        StderrProgressBar([future], client.scheduler.address, stream=stream, loop=client.loop)
    assert "100% Completed" in target.read_text()
    assert future.result() == 3
