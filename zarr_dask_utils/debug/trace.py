"""``ZarrDebugger`` and ``enable_debug_mode``: see every store operation, also on workers.

The recording lives in :mod:`~zarr_dask_utils._core.storage.trace`, the report built from it in
:mod:`~zarr_dask_utils._core.pure.trace_report` (shared with profiling); this is the public face.
"""

from __future__ import annotations

import logging
import sys
import uuid
from contextlib import ExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any

from zarr_dask_utils._core.pure.trace_report import StoreOp, TraceReport
from zarr_dask_utils._core.storage import trace

if TYPE_CHECKING:
    from distributed import Client
    from zarr.abc.store import Store

__all__ = ["ZarrDebugger", "disable_debug_mode", "enable_debug_mode"]

_DEBUG_LOGGERS = ("zarr_dask_utils", "zarr", "fsspec", "s3fs")
_handler: logging.Handler | None = None


def enable_debug_mode(*, level: int = logging.DEBUG, stream: Any = None) -> None:
    """Turn on structured debug logging for zarr-dask-utils, zarr, fsspec, s3fs and the tracer.

    Every store operation opened through zarr-dask-utils in this process is then logged on
    ``zarr_dask_utils.trace`` as ``op=get key=… bytes=… ms=… process=…``.  Call
    :func:`disable_debug_mode` to undo it.  Worker processes are not changed: use
    :class:`ZarrDebugger` to collect their operations.

    Parameters
    ----------
    level
        Logging level of the four loggers.
    stream
        Where the handler writes (default ``sys.stderr``).
    """
    global _handler
    disable_debug_mode()
    _handler = logging.StreamHandler(stream or sys.stderr)
    _handler.setFormatter(
        logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    )
    for name in _DEBUG_LOGGERS:
        log = logging.getLogger(name)
        log.addHandler(_handler)
        log.setLevel(level)
    trace.set_debug_logging(True)


def disable_debug_mode() -> None:
    """Undo :func:`enable_debug_mode` (detach its handler, stop logging store operations)."""
    global _handler
    trace.set_debug_logging(False)
    if _handler is not None:
        for name in _DEBUG_LOGGERS:
            logging.getLogger(name).removeHandler(_handler)
        _handler = None


class ZarrDebugger:
    """Record every store operation made inside the block, here and on Dask workers.

    Operations on stores opened by zarr-dask-utils (every feature, :func:`open_node`,
    :func:`open_store`) are recorded in this process and, through a worker plugin, on every
    worker of the clients used inside the block (the current one, one passed here, or an
    embedded cluster).  The same numbers also reach Dask's fine performance metrics (the
    dashboard's "Fine Performance Metrics" page, under ``zdu-store``).  Wrap your own stores
    with :meth:`wrap` to trace plain zarr code too.

    Parameters
    ----------
    client
        A client whose workers to trace for the whole block (default: the current client if
        there is one; embedded clusters started inside the block are traced automatically).

    Examples
    --------
    >>> import zarr
    >>> from zarr_dask_utils import ZarrDebugger
    >>> with ZarrDebugger() as dbg:
    ...     store = dbg.wrap(zarr.storage.MemoryStore())
    ...     _ = zarr.create_array(store, shape=(4,), chunks=(2,), dtype="i4")
    >>> dbg.report().by_op()["set"].count
    1
    """

    def __init__(self, client: Client | None = None) -> None:
        self._client = client
        self._trace_id = uuid.uuid4().hex[:12]
        self._stack: ExitStack | None = None
        self._operations: list[StoreOp] = []

    def wrap(self, store: Store) -> Store:
        """Return *store* wrapped so that plain zarr code on it is traced."""
        return trace.TracingStore(store)

    def __enter__(self) -> ZarrDebugger:
        trace.start_session(self._trace_id)
        self._stack = ExitStack()
        client = self._client
        if client is None:
            from zarr_dask_utils._core.compute.cluster import _current_client

            client = _current_client()
        if client is not None:
            self._stack.enter_context(trace.attached(client))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._stack is not None:
                self._stack.close()
        finally:
            self._operations = trace.stop_session(self._trace_id)

    @property
    def operations(self) -> tuple[StoreOp, ...]:
        """Every operation recorded (complete after the block has ended)."""
        return tuple(self._operations)

    def report(self, location: str = "all stores") -> TraceReport:
        """A :class:`TraceReport` of the operations recorded."""
        return TraceReport(location=location, operations=self.operations)
