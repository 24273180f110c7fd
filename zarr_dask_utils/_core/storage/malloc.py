"""glibc malloc parameters raised process-wide while blocks run, and the start-up environment.

Two helpers change a glibc malloc parameter for the duration of a task and put it back
afterwards: :func:`~zarr_dask_utils._core.storage.heap.heap_allocations` (the mmap threshold)
and :func:`~zarr_dask_utils._core.decoding.scratch.keep_scratch_memory` (the trim threshold).
A malloc parameter belongs to the whole process, and tasks run in several threads at once, so
each parameter has one :class:`ScopedMallopt`: the first block to enter sets the value, the
last one to leave puts the previous value back, and a lock keeps the count honest.

Whether to act at all is decided from the environment the process was *started* with
(:func:`startup_environ`, read from ``/proc/self/environ``), because that is what glibc read:
distributed puts ``MALLOC_TRIM_THRESHOLD_`` into the ``os.environ`` of the process that starts
a cluster too (the client), where it never reached malloc, and that process must keep glibc's
dynamic thresholds.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
import threading
from collections.abc import Callable, Iterator, Mapping

__all__ = [
    "MMAP_THRESHOLD",
    "TRIM_THRESHOLD",
    "ScopedMallopt",
    "dynamic_thresholds_off",
    "environ_block",
    "glibc_mallopt",
    "startup_environ",
    "startup_int",
]

_startup: dict[str, str] | None = None  # cached start-up environment (tests may replace it)


def environ_block(block: bytes) -> dict[str, str]:
    r"""The variables of a NUL-separated environment block (a later entry wins).

    Examples
    --------
    >>> environ_block(b"A=1\0MALLOC_TRIM_THRESHOLD_=65536\0")
    {'A': '1', 'MALLOC_TRIM_THRESHOLD_': '65536'}
    """
    env: dict[str, str] = {}
    for entry in block.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name:
            env[name.decode(errors="replace")] = value.decode(errors="replace")
    return env


def startup_environ() -> Mapping[str, str]:
    """The environment this process was started with (empty where ``/proc`` is missing).

    Read once from ``/proc/self/environ``; later changes to ``os.environ`` are not in it.
    """
    global _startup
    if _startup is None:
        try:
            with open("/proc/self/environ", "rb") as f:
                block = f.read()
        except OSError:  # pragma: no cover - not Linux
            block = b""
        _startup = environ_block(block)
    return _startup


def startup_int(name: str) -> int | None:
    """Integer value of the start-up variable *name* (``None``: unset, empty or not an int)."""
    value = startup_environ().get(name)
    try:
        return int(value) if value else None
    except ValueError:
        return None


@functools.cache
def glibc_mallopt() -> Callable[[int, int], int] | None:
    """The C library's ``mallopt`` in this process, or ``None`` (another platform or C library)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        mallopt: Callable[[int, int], int] = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None
    return mallopt


def dynamic_thresholds_off() -> bool:
    """Whether glibc's dynamic mmap threshold is off here because of ``MALLOC_TRIM_THRESHOLD_``.

    ``True`` only on Linux with ``mallopt``, in a process started with
    ``MALLOC_TRIM_THRESHOLD_`` (as distributed starts its workers) and without
    ``MALLOC_MMAP_THRESHOLD_`` (nobody chose an mmap threshold explicitly).
    """
    env = startup_environ()
    if not env.get("MALLOC_TRIM_THRESHOLD_") or env.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    return glibc_mallopt() is not None


class ScopedMallopt:
    """One glibc malloc parameter, changed process-wide while at least one block runs.

    Parameters
    ----------
    param
        The ``mallopt`` parameter number (``M_TRIM_THRESHOLD`` is -1, ``M_MMAP_THRESHOLD`` -3).
    name
        Its name, for ``repr``.

    Attributes
    ----------
    active
        Blocks running now in this process (the value set is that of the first one).
    """

    def __init__(self, param: int, name: str) -> None:
        self.param = param
        self.name = name
        self.active = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def scope(self, value: int, restore: int) -> Iterator[None]:
        """Set the parameter to *value* while the block runs; *restore* after the last block.

        The caller decides whether to call this at all (:func:`dynamic_thresholds_off`);
        ``mallopt`` must exist.
        """
        mallopt = glibc_mallopt()
        if mallopt is None:  # pragma: no cover - callers check first
            raise RuntimeError(f"mallopt is not available to set {self.name}")
        with self._lock:
            if self.active == 0:
                mallopt(self.param, int(value))
            self.active += 1
        try:
            yield
        finally:
            with self._lock:
                self.active -= 1
                if self.active == 0:
                    mallopt(self.param, int(restore))

    def __repr__(self) -> str:
        return f"ScopedMallopt({self.name}, active={self.active})"


#: glibc's ``M_MMAP_THRESHOLD`` (:func:`~zarr_dask_utils._core.storage.heap.heap_allocations`).
MMAP_THRESHOLD = ScopedMallopt(-3, "M_MMAP_THRESHOLD")
#: glibc's ``M_TRIM_THRESHOLD`` (``keep_scratch_memory`` in ``_core/decoding/scratch.py``).
TRIM_THRESHOLD = ScopedMallopt(-1, "M_TRIM_THRESHOLD")
