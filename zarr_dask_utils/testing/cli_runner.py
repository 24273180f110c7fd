"""Run ``zdu`` in tests: in this process on a running cluster, or as a real subprocess.

In-process runs (the default) go through click's ``CliRunner`` with ``--scheduler`` pointing
at a cluster the test already has, so a run costs the command itself: no new Python, no
``dask``/``zarr`` imports, no embedded cluster.  Pass ``subprocess=True`` only when the test
needs a real process (a kill, a pty, its own environment, the ``python -m`` entry point).
Both return a :class:`ZduResult` shaped like :class:`subprocess.CompletedProcess`.

Examples
--------
>>> from zarr_dask_utils.testing.cli_runner import run_zdu
>>> done = run_zdu("validate", "/no/such/store.zarr", "--json")
>>> done.returncode
2
"""

from __future__ import annotations

import json
import os
import subprocess as _subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ZduResult", "run_zdu"]


@dataclass(frozen=True)
class ZduResult:
    """How one ``zdu`` run ended.

    Parameters
    ----------
    args
        The arguments after ``zdu`` (``--scheduler`` included when one was given).
    returncode
        The exit code: 0 ok, 1 problems found, 2 bad input.
    stdout
        Standard output (the JSON with ``--json``).
    stderr
        Standard error (messages, progress).
    """

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def exit_code(self) -> int:
        """The exit code, under click's ``Result`` name."""
        return self.returncode

    @property
    def output(self) -> str:
        """Standard output followed by standard error."""
        return self.stdout + self.stderr

    def json(self) -> Any:
        """The parsed standard output (run with ``--json``)."""
        return json.loads(self.stdout)


def _address(scheduler: Any) -> str | None:
    """A scheduler address from an address string or a ``distributed.Client``."""
    if scheduler is None or isinstance(scheduler, str):
        return scheduler
    return str(scheduler.scheduler.address)


def run_zdu(
    *args: str,
    scheduler: Any = None,
    subprocess: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float = 240.0,
) -> ZduResult:
    """Run ``zdu ARGS`` and return how it ended; never raises for a non-zero exit code.

    Parameters
    ----------
    *args
        The command line after ``zdu``, e.g. ``"validate", path, "--json"``.
    scheduler
        A scheduler address or a ``distributed.Client``: appended as ``--scheduler ADDRESS``
        so the command runs on that cluster instead of starting its own.
    subprocess
        Run ``python -m zarr_dask_utils`` in a new process instead of in this one.
    env
        Extra environment variables for the subprocess (requires ``subprocess=True``).
    timeout
        Seconds before a subprocess is killed (``subprocess.TimeoutExpired``).

    Returns
    -------
    ZduResult

    Raises
    ------
    ValueError
        ``env`` given for an in-process run (the cluster's workers would not see it).

    Notes
    -----
    An in-process run keeps the caller's warning filters (a test suite's
    ``filterwarnings = error`` makes a warning the command emits fail the test) and lets
    exceptions the CLI does not handle propagate to the test.
    """
    address = _address(scheduler)
    argv = [*args, *(["--scheduler", address] if address else [])]
    if subprocess:
        done = _subprocess.run(
            [sys.executable, "-m", "zarr_dask_utils", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
        )
        return ZduResult(tuple(argv), done.returncode, done.stdout, done.stderr)
    if env:
        raise ValueError("run_zdu: env needs subprocess=True (workers would not see it)")
    from click.testing import CliRunner

    from zarr_dask_utils.cli.main import cli

    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    return ZduResult(tuple(argv), result.exit_code, result.stdout, result.stderr)
