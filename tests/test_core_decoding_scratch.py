"""keep_scratch_memory: freed memory stays in Dask worker processes while a decode task runs."""

from __future__ import annotations

import ctypes
import sys

import pytest

from zarr_dask_utils._core.decoding.scratch import keep_scratch_memory
from zarr_dask_utils._core.storage import malloc
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
    # a process that did not start with MALLOC_TRIM_THRESHOLD_ (distributed may have put it
    # into os.environ since: malloc never saw it) keeps its dynamic thresholds
    # (tests/test_core_malloc.py checks this in a real client-like process)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.setattr(malloc, "_startup", {})
    with keep_scratch_memory(2**25) as active:
        assert not active
    monkeypatch.setattr(malloc, "_startup", {"MALLOC_TRIM_THRESHOLD_": "65536"})
    with keep_scratch_memory(None) as active:
        assert not active
    monkeypatch.setattr(malloc, "_startup", {"MALLOC_TRIM_THRESHOLD_": str(2**26)})
    with keep_scratch_memory(2**25) as active:  # already higher: keep it
        assert not active
    started = {"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": "131072"}
    monkeypatch.setattr(malloc, "_startup", started)  # the user's own malloc settings
    with keep_scratch_memory(2**25) as active:
        assert not active


@linux_only
def test_keep_scratch_memory_nests(monkeypatch):
    # 131072 is glibc's default trim threshold: what is put back after is harmless here
    monkeypatch.setattr(malloc, "_startup", {"MALLOC_TRIM_THRESHOLD_": "131072"})
    with keep_scratch_memory(2**25) as outer:
        with keep_scratch_memory(2**25) as inner:
            assert outer
            assert inner
            assert malloc.TRIM_THRESHOLD.active == 2
        assert malloc.TRIM_THRESHOLD.active == 1
    assert malloc.TRIM_THRESHOLD.active == 0
