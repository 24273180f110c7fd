"""Progress bars for running graphs: on stderr, on the operation's own client, never fatal.

``distributed.progress(futures)`` looks for a *default* client; the client an operation runs
on is often not one (the embedded cluster's client is made with ``set_as_default=False``, and
a notebook may have none), so the bar here is told the scheduler and the event loop of the
client explicitly.  It draws on ``stderr`` (``zdu --json`` keeps ``stdout`` for the report),
and any failure of the bar itself is logged at debug level and ignored: a progress bar must
never be able to fail an operation.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from distributed import Client, Future
from distributed.diagnostics.progressbar import TextProgressBar

__all__ = ["StderrProgressBar", "show_progress", "threaded_progress"]

logger = logging.getLogger(__name__)


class StderrProgressBar(TextProgressBar):
    """distributed's text progress bar, drawn on *stream* (default ``sys.stderr``).

    Parameters
    ----------
    keys
        Futures (or keys) to follow, with all the tasks they depend on.
    scheduler
        Address of the scheduler that runs them.
    stream
        Where to draw; ``None`` is ``sys.stderr`` at draw time.
    **kwargs
        Passed to :class:`distributed.diagnostics.progressbar.TextProgressBar` (``loop``,
        ``interval``, ``width``, ``start``).
    """

    def __init__(
        self,
        keys: Sequence[Any],
        scheduler: str,
        *,
        stream: TextIO | None = None,
        **kwargs: Any,
    ) -> None:
        self._stream = stream
        super().__init__(keys, scheduler=scheduler, **kwargs)

    @property
    def stream(self) -> TextIO:
        """The stream the bar is drawn on."""
        return self._stream if self._stream is not None else sys.stderr

    def _draw_bar(self, remaining: int, all: int, **kwargs: Any) -> None:
        frac = (1 - remaining / all) if all else 1.0
        bar = "#" * int(self.width * frac)
        elapsed = _format_time(self.elapsed)
        msg = f"\r[{bar:<{self.width}}] | {int(100 * frac)}% Completed | {elapsed}"
        self._write(msg)

    def _draw_stop(self, **kwargs: Any) -> None:
        self._write("\33[2K\r")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (ValueError, OSError):  # a closed or broken stream: no bar, same result
            pass


def _format_time(seconds: float) -> str:
    from distributed.diagnostics.progress import format_time

    return str(format_time(seconds))


def show_progress(client: Client, futures: Sequence[Future[Any]]) -> None:
    """Draw a bar on stderr until *futures* (and what they depend on) are done.

    Blocks like ``distributed.progress`` in a console.  Uses *client*'s scheduler address,
    security settings and event loop, so it works whether or not *client* is the default
    client.  Never raises: a failing bar is logged at debug level and the caller goes on
    (``client.gather`` then waits for, or raises, the real result).

    Parameters
    ----------
    client
        The client the futures belong to.
    futures
        The futures of the operation's graph.
    """
    try:
        assert client.scheduler is not None  # a connected client (mypy: Optional in stubs)
        StderrProgressBar(list(futures), scheduler=str(client.scheduler.address), loop=client.loop)
    except Exception:
        logger.debug("progress bar failed; the operation goes on without it", exc_info=True)


def threaded_progress() -> Any:
    """A ``dask.diagnostics.ProgressBar`` on stderr for graphs run on threads in this process."""
    from dask.diagnostics.progress import ProgressBar

    return ProgressBar(out=sys.stderr)
