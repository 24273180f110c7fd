"""keep_scratch_memory: freed memory stays in Dask worker processes while a decode task runs."""

from __future__ import annotations

import ctypes
import sys

import pytest

from zarr_dask_utils._core.decoding import scratch
from zarr_dask_utils._core.decoding.scratch import keep_scratch_memory
from zarr_dask_utils._core.storage.heap import heap_allocations

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _free_bytes_kept_after_a_1mib_free() -> tuple[bool, int, int]:
    """(raised?, free heap bytes kept after freeing 1 MiB: default trim, raised trim)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2

    def kept() -> int:
        buf = bytearray(2**20)  # from the heap inside heap_allocations
        del buf
        return int(libc.mallinfo2().fordblks)

    with heap_allocations(16 * 2**20):
        trimmed = kept()
        with keep_scratch_memory(32 * 2**20) as active:
            held = kept()
    return active, trimmed, held


@linux_only
def test_keep_scratch_memory_in_a_dask_worker(client):
    # workers run with MALLOC_TRIM_THRESHOLD_=65536: a freed MiB goes back to the OS at once,
    # unless the trim threshold is raised (then the next decode reuses it)
    active, trimmed, held = client.submit(_free_bytes_kept_after_a_1mib_free, pure=False).result()
    assert active
    assert held - trimmed >= 2**19  # most of the MiB (some came from free chunks already held)


def test_keep_scratch_memory_leaves_other_processes_alone(monkeypatch):
    # this process did not start with MALLOC_TRIM_THRESHOLD_ (distributed may have put it
    # into os.environ since: malloc never saw it), so its dynamic thresholds stay
    with open("/proc/self/environ", "rb") as f:
        started_with = b"MALLOC_TRIM_THRESHOLD_=" in f.read()
    monkeypatch.setattr(scratch, "_startup", None)
    assert (scratch._startup_threshold() is not None) == started_with
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.setattr(scratch, "_startup", ())
    with keep_scratch_memory(2**25) as active:
        assert not active
    monkeypatch.setattr(scratch, "_startup", (65536,))
    with keep_scratch_memory(None) as active:
        assert not active
    monkeypatch.setattr(scratch, "_startup", (2**26,))  # already higher: keep it
    with keep_scratch_memory(2**25) as active:
        assert not active


def test_trim_threshold_of_an_environment_block():
    assert scratch._trim_threshold_in(b"A=1\0MALLOC_TRIM_THRESHOLD_=65536\0B=2") == 65536
    assert scratch._trim_threshold_in(b"MALLOC_TRIM_THRESHOLD_=lots\0") is None
    assert scratch._trim_threshold_in(b"MALLOC_TRIM_THRESHOLD=1\0") is None


@linux_only
def test_keep_scratch_memory_nests(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setattr(scratch, "_startup", (131072,))  # glibc's default, put back after
    with keep_scratch_memory(2**25) as outer:
        with keep_scratch_memory(2**25) as inner:
            assert outer
            assert inner
            assert scratch._active == 2
        assert scratch._active == 1
    assert scratch._active == 0
