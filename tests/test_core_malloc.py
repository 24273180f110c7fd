"""Scoped glibc malloc parameters: decided from the start-up environment, counted, put back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from zarr_dask_utils._core.storage import malloc
from zarr_dask_utils._core.storage.malloc import (
    ScopedMallopt,
    dynamic_thresholds_off,
    environ_block,
    startup_environ,
    startup_int,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")

# Run in a fresh interpreter: enter both helpers, then see whether glibc's *dynamic* mmap
# threshold survived.  With it, a freed 1 MiB mmapped block raises the threshold and the next
# 1 MiB comes from the heap; after any mallopt(M_MMAP_THRESHOLD) every 1 MiB stays mmapped.
_PROBE = textwrap.dedent(
    """
    import ctypes, json, os, sys
    if sys.argv[1] == "late":
        os.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"  # as distributed does in a client
    from zarr_dask_utils._core.decoding.scratch import keep_scratch_memory
    from zarr_dask_utils._core.storage.heap import heap_allocations, mmap_threshold_adjustable

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2

    def mmapped_for_1mib():
        before = libc.mallinfo2().hblks
        buf = bytearray(2**20 + 4096)
        during = libc.mallinfo2().hblks
        del buf
        return during - before

    with heap_allocations(16 * 2**20) as heap, keep_scratch_memory(32 * 2**20) as scratch:
        pass
    mmapped = [mmapped_for_1mib() for _ in range(3)]
    print(json.dumps({"adjustable": mmap_threshold_adjustable(), "heap": heap,
                      "scratch": scratch, "mmapped": mmapped}))
    """
)


def _probe(when: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    if when == "startup":
        env["MALLOC_TRIM_THRESHOLD_"] = "65536"  # as distributed starts a worker
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, when],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


@linux_only
def test_client_process_with_the_variable_only_in_os_environ_is_left_alone():
    # the variable appeared in os.environ after start-up (distributed does that in the process
    # that starts a cluster): malloc never saw it, so its dynamic thresholds must stay on
    result = _probe("late")
    assert result["adjustable"] is False
    assert result["heap"] is False
    assert result["scratch"] is False
    assert result["mmapped"][-1] == 0  # type: ignore[index]  # the dynamic threshold still works


@linux_only
def test_worker_like_process_started_with_the_variable_is_adjusted():
    result = _probe("startup")
    assert result["adjustable"] is True
    assert result["heap"] is True
    assert result["scratch"] is True
    assert result["mmapped"] == [1, 1, 1]  # 128 KiB put back: 1 MiB mmapped again


def test_environment_block_and_startup_values(monkeypatch):
    block = b"A=1\0MALLOC_TRIM_THRESHOLD_=65536\0B=2\0=odd\0noequals\0A=3"
    assert environ_block(block) == {"A": "3", "MALLOC_TRIM_THRESHOLD_": "65536", "B": "2"}
    monkeypatch.setattr(malloc, "_startup", {"X": "12", "BAD": "lots", "EMPTY": ""})
    assert startup_int("X") == 12
    assert startup_int("BAD") is None
    assert startup_int("EMPTY") is None
    assert startup_int("MISSING") is None


def test_startup_environ_is_what_this_process_started_with(monkeypatch):
    with open("/proc/self/environ", "rb") as f:
        expected = environ_block(f.read())
    monkeypatch.setattr(malloc, "_startup", None)
    monkeypatch.setenv("ZDU_TEST_LATE_VARIABLE", "1")
    assert "ZDU_TEST_LATE_VARIABLE" not in startup_environ()
    assert startup_environ() == expected


@linux_only
def test_dynamic_thresholds_off_needs_the_trim_variable_and_no_mmap_choice(monkeypatch):
    monkeypatch.setattr(malloc, "_startup", {})
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # os.environ does not count
    assert not dynamic_thresholds_off()
    monkeypatch.setattr(malloc, "_startup", {"MALLOC_TRIM_THRESHOLD_": "65536"})
    assert dynamic_thresholds_off()
    monkeypatch.setattr(
        malloc, "_startup", {"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": "1"}
    )
    assert not dynamic_thresholds_off()


@linux_only
def test_scoped_mallopt_sets_once_and_restores_after_the_last_block_of_any_thread():
    from zarr_dask_utils._core.storage.malloc import glibc_mallopt

    assert glibc_mallopt() is not None
    # M_MXFAST (1) is harmless to change in a test process: 64 * sizeof(size_t) / 4 is default
    default = 64 * 8 // 4
    setting = ScopedMallopt(1, "M_MXFAST")
    entered, release = threading.Barrier(5), threading.Event()
    seen: list[int] = []

    def block() -> None:
        with setting.scope(80, restore=default):
            entered.wait()
            release.wait()

    threads = [threading.Thread(target=block) for _ in range(4)]
    for t in threads:
        t.start()
    entered.wait()
    seen.append(setting.active)
    release.set()
    for t in threads:
        t.join()
    assert seen == [4]
    assert setting.active == 0
    assert "active=0" in repr(setting)
