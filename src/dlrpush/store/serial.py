"""One worker thread that runs calls one at a time, most urgent first.

The SQLite store runs every call on a single thread. With a plain FIFO a claim that a
healthy endpoint is waiting on queues behind every settle batch a failing neighbour has
produced; here a call carries a priority, so latency-critical work only waits for the
call already running. Lower priorities are never starved: after a few calls in a row
from above, the oldest waiting lower call runs. A long call can make way itself: it
asks ``make_way`` between chunks of its work and, told yes, commits what it has done and
queues the rest as a new call. The next call to run is then one that was already
waiting, even if the rest is queued at a higher priority before the thread picks (the
caller's event loop may win the GIL first): otherwise the cut would buy nothing. A
running call may also ``take`` waiting calls and carry them out itself: the store does
so to commit several small writes together.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

URGENT = 0  # a push is waiting: claims
NORMAL = 1  # a client is waiting for an answer: API calls
BACKGROUND = 2  # nobody waits: outcomes, lease releases, expiry
# After this many calls taken ahead of waiting lower-priority work, one of those runs.
FAIRNESS_STREAK = 4

_Call = tuple[int, Callable[[], Any], Future[Any]]


class SerialWorker:
    def __init__(self, name: str) -> None:
        self._queues: tuple[deque[_Call], ...] = (deque(), deque(), deque())
        self._cond = threading.Condition()
        self._stopping = False
        self._streak = 0
        self._seq = 0  # calls submitted so far; each call carries its number
        # Set by make_way: the next call taken must be numbered at most this.
        self._waiting_since: int | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._started = False

    def _next(self) -> _Call | None:
        with self._cond:
            while True:
                waiting = [q for q in self._queues if q]
                if waiting:
                    break
                if self._stopping:
                    return None
                self._cond.wait()
            if self._waiting_since is not None:
                limit, self._waiting_since = self._waiting_since, None
                earlier = [q for q in waiting if q[0][0] <= limit]
                if earlier:
                    return earlier[0].popleft()
            top = waiting[0]
            if len(waiting) > 1 and self._streak >= FAIRNESS_STREAK:
                self._streak = 0
                return waiting[-1].popleft()
            self._streak = self._streak + 1 if len(waiting) > 1 else 0
            return top.popleft()

    def _loop(self) -> None:
        while (call := self._next()) is not None:
            _, fn, fut = call
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

    def make_way(self) -> bool:
        """Called by the running call between chunks of its work: whether another call
        is waiting. If so, the caller is expected to end now and queue the rest; one of
        the calls waiting at this moment runs before anything queued later."""
        with self._cond:
            if not any(self._queues):
                return False
            self._waiting_since = self._seq
            return True

    def take(self, accept: Callable[[Callable[[], Any]], bool]) -> tuple[Any, Future[Any]] | None:
        """Called by the running call: the most urgent waiting call that ``accept``
        takes, removed from the queue and marked running, for the caller to carry out
        (and answer) itself; None when no queue starts with such a call."""
        with self._cond:
            for queue in self._queues:
                while queue and accept(queue[0][1]):
                    _, fn, fut = queue.popleft()
                    if fut.set_running_or_notify_cancel():
                        return fn, fut
        return None

    def waiting(self, accept: Callable[[Callable[[], Any]], bool]) -> bool:
        """Whether any waiting call is one ``accept`` takes."""
        with self._cond:
            return any(accept(fn) for queue in self._queues for _, fn, _ in queue)

    def submit(self, priority: int, fn: Callable[[], T]) -> Future[T]:
        fut: Future[T] = Future()
        with self._cond:
            if self._stopping:
                raise RuntimeError("the store worker has stopped")
            if not self._started:
                self._thread.start()
                self._started = True
            self._seq += 1
            self._queues[priority].append((self._seq, fn, fut))
            self._cond.notify()
        return fut

    async def run(self, priority: int, fn: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self.submit(priority, fn))

    def shutdown(self) -> None:
        """Run what is queued, then stop the thread."""
        with self._cond:
            self._stopping = True
            started = self._started
            self._cond.notify()
        if started:
            self._thread.join()
