"""The coalescer: requests arriving while a call runs go together in the next call."""

from __future__ import annotations

import asyncio

import pytest

from dlrpush.errors import StoreUnavailable
from dlrpush.store.coalesce import Coalescer


class _Backend:
    """Doubles each number; one call at a time, each held open until released."""

    def __init__(self, refuse: int | None = None, down: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.gate = asyncio.Event()
        self.refuse = refuse
        self.down = down

    async def run(self, items: list[int]) -> list[int]:
        self.calls.append(list(items))
        await self.gate.wait()
        if self.down:
            raise StoreUnavailable("postgresql: connection lost")
        if self.refuse in items:
            raise ValueError(f"refused {self.refuse}")
        return [i * 2 for i in items]


def _coalescer(backend: _Backend, max_size: int = 100) -> Coalescer[int, int]:
    return Coalescer(backend.run, lambda item: 1, max_size)


async def _busy(co: Coalescer[int, int]) -> asyncio.Task[int]:
    """Submit 1 and let its call start, so what is submitted next has to wait."""
    first = asyncio.create_task(co.submit(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return first


async def test_an_idle_coalescer_runs_a_request_at_once_and_merges_those_that_wait() -> None:
    backend = _Backend()
    co = _coalescer(backend)
    first = await _busy(co)
    assert backend.calls == [[1]]  # nothing waited for company
    rest = [asyncio.create_task(co.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    backend.gate.set()
    assert await asyncio.gather(first, *rest) == [2, 4, 6, 8]
    assert backend.calls == [[1], [2, 3, 4]]


async def test_a_call_carries_at_most_max_size() -> None:
    backend = _Backend()
    backend.gate.set()
    co = _coalescer(backend, max_size=2)
    got = await asyncio.gather(*(co.submit(n) for n in range(5)))
    assert got == [0, 2, 4, 6, 8]
    assert max(len(call) for call in backend.calls) <= 2
    assert sorted(n for call in backend.calls for n in call) == [0, 1, 2, 3, 4]


async def test_a_request_larger_than_max_size_still_goes_alone() -> None:
    backend = _Backend()
    backend.gate.set()
    co: Coalescer[int, int] = Coalescer(backend.run, lambda item: item, 5)
    assert list(await asyncio.gather(co.submit(9), co.submit(1))) == [18, 2]
    assert [9] in backend.calls


async def test_a_refused_call_is_run_again_one_request_at_a_time() -> None:
    backend = _Backend(refuse=3)
    co = _coalescer(backend)
    first = await _busy(co)
    rest = [asyncio.create_task(co.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    backend.gate.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert results[:2] == [2, 4] and results[3] == 8
    assert isinstance(results[2], ValueError) and "refused 3" in str(results[2])
    assert backend.calls == [[1], [2, 3, 4], [2], [3], [4]]


async def test_a_lost_store_fails_every_request_of_the_call_without_running_it_again() -> None:
    backend = _Backend(down=True)
    co = _coalescer(backend)
    backend.gate.set()
    results = await asyncio.gather(*(co.submit(n) for n in (1, 2, 3)), return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results)
    # Whether a lost call took effect is unknown: none is repeated.
    assert sum(len(call) for call in backend.calls) == 3


async def test_a_request_given_up_before_its_call_started_is_not_carried_out() -> None:
    backend = _Backend()
    co = _coalescer(backend)
    first = await _busy(co)
    gone = asyncio.create_task(co.submit(2))
    kept = asyncio.create_task(co.submit(3))
    await asyncio.sleep(0)
    gone.cancel()
    backend.gate.set()
    assert await first == 2 and await kept == 6
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert backend.calls == [[1], [3]]


async def test_requests_waiting_when_the_loop_stops_are_told_the_store_is_closing() -> None:
    backend = _Backend()
    co = _coalescer(backend)
    first = await _busy(co)
    second = asyncio.create_task(co.submit(2))
    await asyncio.sleep(0)
    drain = co._task
    assert drain is not None
    drain.cancel()
    for waiting in (first, second):
        with pytest.raises(StoreUnavailable, match="closing"):
            await waiting


async def test_a_call_that_answers_for_the_wrong_number_of_requests_fails_them_all() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    co: Coalescer[int, int] = Coalescer(short, lambda item: 1, 10)
    results = await asyncio.gather(co.submit(1), co.submit(2), co.submit(3), return_exceptions=True)
    # All three were queued before the call started: no answer may be handed out.
    assert all(isinstance(r, RuntimeError) and "2 results for 3" in str(r) for r in results)
