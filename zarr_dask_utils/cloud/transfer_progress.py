"""A bytes/s progress bar for copies: tasks report bytes moved, the client draws them.

Copy tasks call :func:`emit_progress` every fraction of a second.  In this process (threads,
or an embedded cluster on threads) the report goes straight to the bar; in worker processes
it is a Dask worker event (``log_event``) that the client receives through
``subscribe_topic``.  A bar that fails is logged and ignored: it never fails a copy.
"""

from __future__ import annotations

import logging
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["byte_progress", "emit_progress"]

logger = logging.getLogger(__name__)

_LOCAL: dict[str, Callable[[int, int], None]] = {}
_LOCK = threading.Lock()


def emit_progress(topic: str, nbytes: int, nobjects: int) -> None:
    """Report *nbytes* in *nobjects* copied on *topic* (worker side; never raises)."""
    with _LOCK:
        callback = _LOCAL.get(topic)
    try:
        if callback is not None:
            callback(nbytes, nobjects)
            return
        from distributed import get_worker

        get_worker().log_event(topic, {"bytes": nbytes, "objects": nobjects})
    except Exception:  # not in a worker, or a closing one: no bar, same copy
        logger.debug("progress report on %s dropped", topic, exc_info=True)


@contextmanager
def byte_progress(
    client: Any, total_bytes: int, total_objects: int, *, show: bool
) -> Iterator[str | None]:
    """Draw a bytes/s bar on stderr while the block runs; yield the topic tasks report on.

    Parameters
    ----------
    client
        The operation's ``distributed.Client`` (``None``: tasks run in this process).
    total_bytes, total_objects
        What the copy will move.
    show
        Draw the bar; ``False`` yields ``None`` (tasks then report nothing).
    """
    if not show or total_objects == 0:
        yield None
        return
    from tqdm import tqdm

    topic = f"zdu-download-progress-{uuid.uuid4().hex}"
    bar = tqdm(
        total=total_bytes,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc="download",
        file=sys.stderr,
        dynamic_ncols=True,
    )
    objects = [0]

    def update(nbytes: int, nobjects: int) -> None:
        objects[0] += nobjects
        bar.update(nbytes)
        bar.set_postfix_str(f"{objects[0]}/{total_objects} objects", refresh=False)

    def on_event(event: Any) -> None:
        _, msg = event
        update(int(msg["bytes"]), int(msg["objects"]))

    with _LOCK:
        _LOCAL[topic] = update
    subscribed = False
    try:
        if client is not None:
            try:
                client.subscribe_topic(topic, on_event)
                subscribed = True
            except Exception:
                logger.debug("progress bar without worker events", exc_info=True)
        yield topic
    finally:
        with _LOCK:
            _LOCAL.pop(topic, None)
        if subscribed:
            try:
                client.unsubscribe_topic(topic)
            except Exception:
                logger.debug("unsubscribe of %s failed", topic, exc_info=True)
        bar.close()
