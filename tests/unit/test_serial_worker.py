"""The SQLite store's one thread: priorities, fairness, and making way.

Each test holds the thread with a gate until every call it needs is queued, so the
order asserted is the worker's choice, not a race between threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from dlrpush.store.serial import BACKGROUND, FAIRNESS_STREAK, NORMAL, URGENT, SerialWorker


@pytest.fixture
def worker() -> Iterator[SerialWorker]:
    w = SerialWorker("test-serial")
    yield w
    w.shutdown()


class _Gate:
    def __init__(self, worker: SerialWorker) -> None:
        self._event = threading.Event()
        worker.submit(URGENT, self._event.wait)  # the thread takes it at once

    def open(self) -> None:
        self._event.set()


def _recorder(order: list[str], name: str) -> Callable[[], None]:
    return lambda: order.append(name)


def test_the_most_urgent_waiting_call_runs_first(worker: SerialWorker) -> None:
    order: list[str] = []
    gate = _Gate(worker)
    last = [
        worker.submit(BACKGROUND, _recorder(order, "settle")),
        worker.submit(NORMAL, _recorder(order, "api")),
        worker.submit(URGENT, _recorder(order, "claim")),
    ]
    gate.open()
    for f in last:
        f.result(5)

    assert order == ["claim", "api", "settle"]


def test_a_lower_call_is_not_starved(worker: SerialWorker) -> None:
    order: list[str] = []
    gate = _Gate(worker)
    futures = [worker.submit(BACKGROUND, _recorder(order, "settle"))]
    futures += [worker.submit(URGENT, _recorder(order, f"claim{i}")) for i in range(10)]
    gate.open()
    for f in futures:
        f.result(5)

    assert order.index("settle") <= FAIRNESS_STREAK


def test_a_call_that_makes_way_is_followed_by_a_call_that_was_waiting(
    worker: SerialWorker,
) -> None:
    order: list[str] = []
    continuation: list[object] = []

    def long_call() -> None:
        order.append("claim, first part")
        assert worker.make_way()
        # The caller's loop queues the rest at once, at a higher priority than the
        # waiting call, before the thread has picked its next call.
        continuation.append(worker.submit(URGENT, _recorder(order, "claim, the rest")))

    gate = _Gate(worker)
    first = worker.submit(URGENT, long_call)
    waiting = worker.submit(NORMAL, _recorder(order, "ping"))
    gate.open()
    first.result(5)
    waiting.result(5)
    continuation[0].result(5)  # type: ignore[attr-defined]

    assert order == ["claim, first part", "ping", "claim, the rest"]


def test_with_nobody_waiting_a_call_goes_on(worker: SerialWorker) -> None:
    answers: list[bool] = []
    worker.submit(URGENT, lambda: answers.append(worker.make_way())).result(5)

    assert answers == [False]


def test_shutdown_runs_what_is_queued() -> None:
    w = SerialWorker("test-serial-stop")
    order: list[str] = []
    gate = _Gate(w)
    futures = [w.submit(NORMAL, _recorder(order, str(i))) for i in range(3)]
    gate.open()
    w.shutdown()

    assert order == ["0", "1", "2"]
    assert all(f.done() for f in futures)
    with pytest.raises(RuntimeError):
        w.submit(NORMAL, lambda: None)
