"""Concurrent small calls merged into one: while a call runs, the requests that arrive
wait for it and then go together in the next.

A PostgreSQL ingest costs the server about the same for one report as for fifty (its
synced commit, the plan's start-up, the per-schema ingest turn), and concurrent ingests
take that turn one after another anyway. A platform that posts each report as it comes
sends many small requests at once; merged, they pay the fixed cost once. Nothing waits
on a timer: an idle store runs a request at once, and batches only form while a call
is in flight, so they grow with the load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from dlrpush.errors import StoreUnavailable

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Runs ``run(items)`` for the items submitted while the previous call was running.

    ``run`` returns one result per item, in order. When it raises
    :class:`StoreUnavailable` every item of the call gets that error (whether the call
    took effect is unknown, so nothing is run twice). Any other error must mean the
    call was refused as a whole and changed nothing (``run`` must not raise once its
    work is committed), so each item is run again alone: the one that caused it fails,
    the others do not."""

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[R]]],
        size: Callable[[T], int],
        max_size: int,
    ) -> None:
        self._run = run
        self._size = size
        self._max_size = max_size
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="dlrpush-coalesce")
        return await done

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        # A request whose caller gave up before its call started is not carried out:
        # it was never acknowledged.
        self._queue = [entry for entry in self._queue if not entry[1].done()]
        taken = 0
        count = 0
        for item, _ in self._queue:
            taken += self._size(item)
            if count and taken > self._max_size:
                break
            count += 1
        batch, self._queue = self._queue[:count], self._queue[count:]
        return batch

    async def _drain(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._queue:
                batch = self._take()
                if batch:
                    await self._carry_out(batch)
        finally:
            self._task = None
            # Cancelled (the loop is shutting down): nobody may wait forever.
            for _, done in batch + self._queue:
                if not done.done():
                    done.set_exception(StoreUnavailable("store is closing"))
            self._queue = []

    async def _carry_out(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except StoreUnavailable as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            for one in batch:
                await self._carry_out([one])
            return
        if len(results) != len(batch):
            wrong = RuntimeError(f"{len(results)} results for {len(batch)} requests")
            for _, done in batch:
                if not done.done():
                    done.set_exception(wrong)
            return
        for (_, done), result in zip(batch, results, strict=True):
            if not done.done():
                done.set_result(result)
