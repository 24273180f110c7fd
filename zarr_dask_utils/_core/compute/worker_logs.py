"""Keep worker tracebacks of errors we explain out of the user's terminal and notebook.

When a task raises, ``distributed`` logs "Compute Failed" with the task's traceback on the
worker, whose log goes to the terminal (embedded cluster) or the notebook (threads).  The
same exception also reaches the client, where ``zdu`` (or the caller) explains it in one
paragraph.  For the errors that explanation covers (every :class:`ZarrDaskUtilsError`) the
worker's traceback is noise that looks like a crash, so a filter on the worker logger drops
those records, and only those: any other task failure is still logged in full.
"""

from __future__ import annotations

import logging
from typing import Any

from distributed import Client, WorkerPlugin

from zarr_dask_utils._core.errors import ZarrDaskUtilsError

__all__ = ["ExplainedErrorFilter", "QuietExplainedErrors", "install_filter", "quiet_workers"]

_WORKER_LOGGER = "distributed.worker"


def _error_names() -> set[str]:
    names: set[str] = set()
    todo: list[type] = [ZarrDaskUtilsError]
    while todo:
        klass = todo.pop()
        names.add(klass.__name__)
        todo.extend(klass.__subclasses__())
    return names


class ExplainedErrorFilter(logging.Filter):
    """Drop distributed's "Compute Failed" records whose exception is a zarr-dask-utils error.

    ``distributed`` passes ``repr(exception)`` as the fourth argument of that record; its
    class name decides.  Every other record passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Return ``False`` for a "Compute Failed" record of an explained error."""
        if not str(record.msg).startswith("Compute Failed"):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        text = str(args[3]) if len(args) > 3 else ""
        return text.partition("(")[0].strip() not in _error_names()


def install_filter() -> None:
    """Add :class:`ExplainedErrorFilter` to the worker logger of this process (once)."""
    logger = logging.getLogger(_WORKER_LOGGER)
    if not any(isinstance(f, ExplainedErrorFilter) for f in logger.filters):
        logger.addFilter(ExplainedErrorFilter())


class QuietExplainedErrors(WorkerPlugin):
    """Worker plugin installing :class:`ExplainedErrorFilter` on every worker (idempotent)."""

    name = "zdu-quiet-explained-errors"
    idempotent = True

    def setup(self, worker: Any) -> None:
        """Install the filter in the worker's process."""
        del worker
        install_filter()


def quiet_workers(client: Client) -> None:
    """Install the filter on *client*'s workers (and in this process, for threaded workers).

    Never fails an operation: a cluster that refuses plugins keeps its full logs.
    """
    install_filter()
    try:
        client.register_plugin(QuietExplainedErrors())
    except (OSError, RuntimeError, TypeError, ValueError):  # logs are a nicety, not a failure
        logging.getLogger(__name__).debug("could not register the worker log filter")
