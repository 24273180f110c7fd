"""A bytes/s progress bar for copies: tasks report bytes moved, the client draws them.

Copy tasks call :func:`emit_progress` every fraction of a second.  In this process (threads,
or an embedded cluster on threads) the report goes straight to the bar; in worker processes
it is a Dask worker event (``log_event``) that the client receives through
``subscribe_topic`` (both halves: :mod:`zarr_dask_utils._core.compute.events`).  A bar that
fails is logged and ignored: it never fails a copy.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from zarr_dask_utils._core.compute.events import TopicSubscription, emit_event

__all__ = ["byte_progress", "emit_progress"]


def emit_progress(topic: str, nbytes: int, nobjects: int) -> None:
    """Report *nbytes* in *nobjects* copied on *topic* (worker side; never raises)."""
    emit_event(topic, {"bytes": nbytes, "objects": nobjects})


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

    def update(msg: Mapping[str, Any]) -> None:
        objects[0] += int(msg["objects"])
        bar.update(int(msg["bytes"]))
        bar.set_postfix_str(f"{objects[0]}/{total_objects} objects", refresh=False)

    try:
        with TopicSubscription(topic, update, client):
            yield topic
    finally:
        bar.close()
