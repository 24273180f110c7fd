"""``ConversionProgress``: bytes and regions written across the cluster, bytes/s, ETA, callback.

Each write task, once its region (and its done marker) landed, sends a small event
``{"bytes": n, "regions": 1}`` on a topic of this run
(:func:`~zarr_dask_utils._core.compute.events.emit_event`): from a worker with
``Worker.log_event`` (the scheduler forwards it to the client subscribed with
``Client.subscribe_topic``), from a thread in this process directly.  Nothing polls the store
and nothing depends on which scheduler runs the graph, so a terminal bar (stderr, with bytes/s
and ETA), a notebook display and ``on_progress(done, total)`` work on a remote cluster too.
A failing bar or callback is logged and ignored: progress never fails a conversion.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from zarr_dask_utils._core.compute.events import TopicSubscription, emit_event

__all__ = ["ConversionProgress", "report_region_done"]

logger = logging.getLogger(__name__)


def report_region_done(topic: str | None, nbytes: int) -> None:
    """Tell the run's :class:`ConversionProgress` a region of *nbytes* landed (in a task)."""
    emit_event(topic, {"bytes": int(nbytes), "regions": 1})


def _size(n: float) -> str:
    from dask.utils import format_bytes

    return str(format_bytes(int(n)))


class ConversionProgress:
    """Progress of a conversion on any cluster: bytes and regions, bytes/s, ETA.

    Pass one as ``progress=`` to :func:`~zarr_dask_utils.netcdf_to_zarr` or
    :func:`~zarr_dask_utils.grib_to_zarr`; ``progress=True`` makes one with a bar.

    Parameters
    ----------
    on_progress
        Called as ``on_progress(done_bytes, total_bytes)`` after each region written (from
        the client's event thread: keep it short).
    bar
        Draw a bar: on stderr in a terminal, an updating display in a notebook.  ``None``:
        when a human is watching.
    stream
        Where the terminal bar goes (default ``sys.stderr``).
    interval
        Seconds between redraws of the bar.

    Attributes
    ----------
    done_bytes, total_bytes, done_regions, total_regions
        Counts so far (totals are those of this run: regions a resumed run skips are not
        counted).

    Examples
    --------
    >>> seen = []
    >>> p = ConversionProgress(lambda done, total: seen.append((done, total)), bar=False)
    >>> p.start(total_bytes=100, total_regions=2)
    >>> p.update(60, 1); p.update(40, 1)
    >>> seen
    [(60, 100), (100, 100)]
    """

    def __init__(
        self,
        on_progress: Callable[[int, int], Any] | None = None,
        *,
        bar: bool | None = None,
        stream: TextIO | None = None,
        interval: float = 0.2,
    ) -> None:
        self.on_progress = on_progress
        self.bar = bar
        self.stream = stream
        self.interval = interval
        self.topic = f"zdu-convert-progress-{uuid.uuid4().hex}"
        self.total_bytes = self.total_regions = 0
        self.done_bytes = self.done_regions = 0
        self._t0 = time.monotonic()
        self._drawn = 0.0
        self._lock = threading.Condition()
        self._events: TopicSubscription | None = None
        self._display: Any = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, total_bytes: int, total_regions: int, client: Any = None) -> None:
        """Begin counting towards the totals; listen for task events on *client* if given."""
        self.total_bytes, self.total_regions = int(total_bytes), int(total_regions)
        self.done_bytes = self.done_regions = 0
        self._t0 = time.monotonic()
        if self.bar is None:
            from zarr_dask_utils._core.compute.runner import interactive

            self.bar = interactive()
        if self._events is not None:
            self._events.close()
        self._events = TopicSubscription(self.topic, self._on_event, client)

    def wait(self, timeout: float = 10.0) -> bool:
        """Wait until every region's event arrived (events travel after task results)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.done_regions < self.total_regions:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
        return True

    def finish(self) -> None:
        """Stop listening and draw the final state."""
        if self._events is not None:
            self._events.close()
            self._events = None
        self._draw(final=True)

    # --- counting --------------------------------------------------------------------------

    def _on_event(self, msg: Mapping[str, Any]) -> None:
        self.update(int(msg.get("bytes", 0)), int(msg.get("regions", 0)))

    def update(self, nbytes: int, regions: int = 1) -> None:
        """Count *regions* more regions of *nbytes* bytes written; call back and redraw."""
        with self._lock:
            self.done_bytes += int(nbytes)
            self.done_regions += int(regions)
            self._lock.notify_all()
        if self.on_progress is not None:
            try:
                self.on_progress(self.done_bytes, self.total_bytes)
            except Exception:
                logger.warning("on_progress callback failed; conversion goes on", exc_info=True)
        now = time.monotonic()
        if now - self._drawn >= self.interval:
            self._drawn = now
            self._draw()

    @property
    def elapsed(self) -> float:
        """Seconds since :meth:`start`."""
        return time.monotonic() - self._t0

    @property
    def rate(self) -> float:
        """Bytes written per second so far."""
        return self.done_bytes / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (``None`` before the first region)."""
        if not self.done_bytes or not self.rate:
            return None
        return max(self.total_bytes - self.done_bytes, 0) / self.rate

    def line(self) -> str:
        """The bar as one line of text."""
        frac = self.done_bytes / self.total_bytes if self.total_bytes else 1.0
        width = 30
        bar = "#" * int(width * min(frac, 1.0))
        eta = f"{self.eta:.0f}s" if self.eta is not None else "?"
        return (
            f"[{bar:<{width}}] {100 * frac:3.0f}% {_size(self.done_bytes)}/"
            f"{_size(self.total_bytes)} | {self.done_regions}/{self.total_regions} regions | "
            f"{_size(self.rate)}/s | ETA {eta}"
        )

    def _repr_html_(self) -> str:
        frac = self.done_bytes / self.total_bytes if self.total_bytes else 1.0
        return (
            f"<div><progress value='{frac:.4f}' max='1' style='width:20em'></progress> "
            f"<code>{self.line().split('] ', 1)[1]}</code></div>"
        )

    def _draw(self, final: bool = False) -> None:
        if not self.bar:
            return
        try:
            from zarr_dask_utils._core.compute.runner import interactive

            in_notebook = interactive() and not getattr(sys.stderr, "isatty", lambda: False)()
            if in_notebook:
                from IPython.display import HTML, display

                if self._display is None:
                    html = HTML(self._repr_html_())  # type: ignore[no-untyped-call]
                    self._display = display(html, display_id=True)  # type: ignore[no-untyped-call]
                else:
                    self._display.update(HTML(self._repr_html_()))  # type: ignore[no-untyped-call]
                return
            stream = self.stream or sys.stderr
            stream.write("\r" + self.line() + ("\n" if final else ""))
            stream.flush()
        except Exception:
            logger.debug("progress display failed; conversion goes on", exc_info=True)

    def __repr__(self) -> str:
        return f"ConversionProgress({self.line()})"
