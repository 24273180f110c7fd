"""Small events from running tasks to a listener in the client process (progress, counters).

A task calls :func:`emit_event` with a topic and a small dict.  When a listener for that topic
lives in the task's own process (tasks on threads, or an embedded cluster on threads) it is
called directly; otherwise, in a Dask worker, the event goes out with ``Worker.log_event`` and
the scheduler forwards it to the client subscribed with ``Client.subscribe_topic``.  A
:class:`TopicSubscription` sets up both halves on the client side.  Nothing polls a store and
nothing depends on which scheduler runs the graph.

Events are a nicety: emitting never raises (outside a worker with no local listener, or from a
closing worker, the event is dropped and logged at debug level), and a listener that raises is
logged and ignored, so an event can never fail the task or the operation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

__all__ = ["TopicSubscription", "emit_event"]

logger = logging.getLogger(__name__)

Handler = Callable[[Mapping[str, Any]], None]

#: Listeners in this process by topic (tasks running in this process call them directly).
_LOCAL: dict[str, Handler] = {}
_LOCK = threading.Lock()


def emit_event(topic: str | None, msg: Mapping[str, Any]) -> None:
    """Send *msg* on *topic* from a task: to this process's listener, else as a worker event.

    Parameters
    ----------
    topic
        The topic a :class:`TopicSubscription` listens on; ``None`` or ``""`` sends nothing.
    msg
        A small, msgpack-serializable dict (ints and strings).

    Never raises: with no listener in this process and no worker to send from, the event is
    dropped (logged at debug level).

    Examples
    --------
    >>> seen = []
    >>> with TopicSubscription("zdu-example", seen.append):
    ...     emit_event("zdu-example", {"bytes": 10})
    >>> seen
    [{'bytes': 10}]
    """
    if not topic:
        return
    with _LOCK:
        handler = _LOCAL.get(topic)
    try:
        if handler is not None:
            handler(msg)
            return
        from distributed import get_worker

        get_worker().log_event(topic, dict(msg))
    except Exception:  # not in a worker, a closing worker, a failing listener: no event
        logger.debug("event on %s dropped", topic, exc_info=True)


class TopicSubscription:
    """Listen to the events tasks emit on *topic*, in this process and from *client*'s workers.

    Parameters
    ----------
    topic
        The topic to listen on (unique per run, e.g. ``zdu-<op>-progress-<uuid>``).
    handler
        Called with each event's dict, from the emitting task's thread (tasks in this process)
        or from the client's event-loop thread (worker events): keep it short.  Exceptions it
        raises are logged at debug level and ignored.
    client
        The ``distributed.Client`` whose workers emit; ``None``: tasks run in this process.

    Attributes
    ----------
    subscribed
        Whether worker events reach *handler* (``False`` without a client, or if the client
        refused the subscription: then only tasks in this process are heard).

    Notes
    -----
    Use it as a context manager, or call :meth:`close` (idempotent) when done.
    """

    def __init__(self, topic: str, handler: Handler, client: Any = None) -> None:
        self.topic = topic
        self.handler = handler
        self._client: Any = None
        self.subscribed = False
        with _LOCK:
            _LOCAL[topic] = self._call
        if client is not None:
            try:
                client.subscribe_topic(topic, self._on_worker_event)
                self._client = client
                self.subscribed = True
            except Exception:  # an old or odd client: events from this process only
                logger.debug("cannot subscribe to events on %s", topic, exc_info=True)

    def _call(self, msg: Mapping[str, Any]) -> None:
        try:
            self.handler(msg)
        except Exception:
            logger.debug("listener of %s failed; event ignored", self.topic, exc_info=True)

    def _on_worker_event(self, event: Any) -> None:
        _, msg = event  # (timestamp, msg) as the scheduler forwards it
        self._call(msg)

    def close(self) -> None:
        """Stop listening, in this process and on the client (never raises)."""
        with _LOCK:
            if _LOCAL.get(self.topic) == self._call:
                del _LOCAL[self.topic]
        client, self._client = self._client, None
        self.subscribed = False
        if client is not None:
            try:
                client.unsubscribe_topic(self.topic)
            except Exception:  # a closed client
                logger.debug("cannot unsubscribe from %s", self.topic, exc_info=True)

    def __enter__(self) -> TopicSubscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TopicSubscription({self.topic!r}, subscribed={self.subscribed})"
