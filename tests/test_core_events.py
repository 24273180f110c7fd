"""emit_event / TopicSubscription: events from tasks reach the client, locally or from workers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import dask
import pytest

from zarr_dask_utils._core.compute import events
from zarr_dask_utils._core.compute.events import TopicSubscription, emit_event


def _emit_in_task(topic: str, i: int) -> int:
    emit_event(topic, {"bytes": 10 * i, "n": 1})
    return i


def _wait_for(seen: list[Any], count: int, timeout: float = 60.0) -> None:
    """Wait until *count* events arrived (worker events travel after the task results)."""
    deadline = time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_worker_events_reach_the_subscribed_client(client):
    topic = f"zdu-test-{uuid.uuid4().hex}"
    seen: list[Mapping[str, Any]] = []
    lock = threading.Lock()

    def handler(msg: Mapping[str, Any]) -> None:
        with lock:
            seen.append(msg)

    with TopicSubscription(topic, handler, client) as sub:
        assert sub.subscribed
        futures = client.map(_emit_in_task, [topic] * 6, range(6), pure=False)
        assert sorted(client.gather(futures)) == list(range(6))
        _wait_for(seen, 6)
    assert sorted(m["bytes"] for m in seen) == [0, 10, 20, 30, 40, 50]
    assert not sub.subscribed
    assert topic not in events._LOCAL
    # after close, worker events on the topic reach nobody here
    client.gather(client.map(_emit_in_task, [topic] * 2, range(2), pure=False))
    assert len(seen) == 6


def test_tasks_in_this_process_call_the_listener_directly():
    topic = f"zdu-test-{uuid.uuid4().hex}"
    seen: list[Mapping[str, Any]] = []
    with TopicSubscription(topic, seen.append) as sub:  # no client: threads of this process
        assert not sub.subscribed
        tasks = [dask.delayed(_emit_in_task)(topic, i) for i in range(4)]
        dask.compute(*tasks, scheduler="threads")
    assert sorted(m["bytes"] for m in seen) == [0, 10, 20, 30]
    emit_event(topic, {"bytes": 1})  # closed: dropped, no error
    sub.close()  # idempotent
    assert len(seen) == 4


def test_emitting_never_raises():
    emit_event(None, {"bytes": 1})
    emit_event("", {"bytes": 1})
    emit_event(f"zdu-test-{uuid.uuid4().hex}", {"bytes": 1})  # no listener, not on a worker

    def broken(msg: Mapping[str, Any]) -> None:
        raise RuntimeError("listener failed")

    topic = f"zdu-test-{uuid.uuid4().hex}"
    with TopicSubscription(topic, broken):
        emit_event(topic, {"bytes": 1})  # logged and ignored


@pytest.mark.parametrize("first_closed", [True, False])
def test_closing_an_old_subscription_keeps_a_newer_one(first_closed):
    topic = f"zdu-test-{uuid.uuid4().hex}"
    old: list[Mapping[str, Any]] = []
    new: list[Mapping[str, Any]] = []
    first = TopicSubscription(topic, old.append)
    second = TopicSubscription(topic, new.append)
    if first_closed:
        first.close()
    emit_event(topic, {"bytes": 1})
    second.close()
    first.close()
    assert (old, new) == ([], [{"bytes": 1}])
