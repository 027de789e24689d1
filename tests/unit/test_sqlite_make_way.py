"""Long SQLite calls make way for waiting ones, and lose or repeat nothing doing so.

Every SQLite call runs alone on the store's one thread. A claim or settle of thousands
of rows checks between chunks whether another call waits; if one does, it commits what
it has done and queues the rest behind that call.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from dlrpush.dispatcher import _Settler
from dlrpush.errors import ClaimedInPart, SettledInPart, StoreUnavailable
from dlrpush.models import (
    Account,
    AttemptOutcome,
    AttemptRecord,
    DeliveryState,
    Endpoint,
    IncomingReport,
    Message,
    PushItem,
    PushOutcome,
    Settlement,
)
from dlrpush.store import sqlite as sqlite_store
from dlrpush.store.sqlite import CHUNK_ROWS, SqliteStore

T0 = 1_750_000_000_000
N = 1_000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    st = SqliteStore(str(tmp_path / "w.db"))
    await st.open()
    await st.create_account(Account("acme", "Acme", T0))
    await st.create_endpoint(Endpoint(0, "acme", "http://127.0.0.1:9/", "ucloud"))
    ids = [f"m{i}" for i in range(N)]
    await st.add_messages([Message(m, "acme", "8618888888888") for m in ids], T0)
    await st.add_reports([IncomingReport(m, "DELIVRD", T0) for m in ids], T0, 60_000)
    yield st
    await st.close()


class _Calls:
    """Holds the store's thread until released, and records which store method each
    call that runs on it belongs to, in the order they start."""

    def __init__(self, st: SqliteStore) -> None:
        self.order: list[str] = []
        self._gate = threading.Event()
        worker = st._worker
        submit = worker.submit

        def labelled(priority: int, fn: Callable[[], Any]) -> Future[Any]:
            label = _method_of(fn)

            def run() -> Any:
                self.order.append(label)
                return fn()

            return submit(priority, run)

        worker.submit = labelled  # type: ignore[method-assign]
        submit(0, self._gate.wait)  # queued first, so it runs first

    def release(self) -> None:
        self._gate.set()


def _method_of(fn: Callable[[], Any]) -> str:
    # Writes reach the thread as a call holding their body (a function or a partial of
    # one), reads as partial(_guarded, <body>).
    parts = [fn.body] if hasattr(fn, "body") else list(getattr(fn, "args", ()))
    names = " ".join(getattr(getattr(a, "func", a), "__qualname__", "") for a in parts)
    return next((m for m in ("claim", "settle", "release", "ping") if f".{m}." in names), "?")


async def _started(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    task = asyncio.create_task(coro)
    await asyncio.sleep(0.05)  # the call is queued on the store's thread
    return task


def _outcomes(items: Sequence[PushItem]) -> list[PushOutcome]:
    attempt = AttemptRecord(1, T0, 1.0, 200, AttemptOutcome.DELIVERED, '{"code":0}')
    return [
        PushOutcome(
            attempt,
            tuple(
                Settlement(i.delivery_id, i.report_id, DeliveryState.DELIVERED, 1, None)
                for i in items[lo : lo + 100]
            ),
        )
        for lo in range(0, len(items), 100)
    ]


def _count(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(sql).fetchone()[0])


async def test_a_big_claim_lets_a_waiting_call_in_and_still_returns_everything(
    store: SqliteStore, tmp_path: Path
) -> None:
    calls = _Calls(store)
    claim = await _started(store.claim(1, N, T0 + 1, 60_000))
    ping = await _started(store.ping())
    calls.release()
    items = await claim
    await ping

    assert calls.order[:2] == ["claim", "ping"]
    assert calls.order.count("claim") >= 2  # cut, and continued behind the ping
    assert sorted(i.delivery_id for i in items) == list(range(1, N + 1))
    leased = _count(tmp_path / "w.db", "SELECT COUNT(*) FROM deliveries WHERE lease_until_ms > 0")
    assert leased == N


async def test_a_claim_with_nobody_waiting_is_one_call(store: SqliteStore) -> None:
    calls = _Calls(store)
    calls.release()

    items = await store.claim(1, N, T0 + 1, 60_000)

    assert len(items) == N > CHUNK_ROWS
    assert calls.order == ["claim"]


async def test_a_big_settle_lets_a_waiting_call_in_and_records_each_push_once(
    store: SqliteStore, tmp_path: Path
) -> None:
    items = await store.claim(1, N, T0 + 1, 60_000)
    calls = _Calls(store)
    settle = await _started(store.settle(_outcomes(items), T0 + 2))
    # A call of the settle's own (lowest) priority, so the settle is taken first.
    other = await _started(store.release([]))
    calls.release()
    await settle
    await other

    assert calls.order[:2] == ["settle", "release"]
    assert calls.order.count("settle") >= 2
    db = tmp_path / "w.db"
    assert _count(db, "SELECT COUNT(*) FROM pushes") == N // 100
    assert _count(db, "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'") == N
    assert _count(db, "SELECT MAX(attempts) FROM deliveries") == 1
    assert _count(db, "SELECT COUNT(*) FROM reports WHERE state = 'delivered'") == N


async def test_a_settle_failing_after_making_way_says_how_much_it_recorded(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = await store.claim(1, N, T0 + 1, 60_000)
    chunk = store._settle_chunk

    def failing_after_a_cut(*args: Any) -> None:
        if calls.order.count("settle") > 1:  # the continuation, after the other call
            raise sqlite3.OperationalError("disk I/O error")
        chunk(*args)

    monkeypatch.setattr(store, "_settle_chunk", failing_after_a_cut)
    calls = _Calls(store)
    settle = await _started(store.settle(_outcomes(items), T0 + 2))
    # A call of the settle's own (lowest) priority, so the settle is taken first.
    other = await _started(store.release([]))
    calls.release()
    with pytest.raises(SettledInPart) as failed:
        await settle
    await other

    recorded = _count(tmp_path / "w.db", "SELECT COUNT(*) FROM pushes")
    assert 0 < failed.value.recorded == recorded < N // 100
    assert isinstance(failed.value, StoreUnavailable)  # callers that only retry still do


async def test_a_claim_failing_after_making_way_hands_over_what_it_leased(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leased and committed, the first part must be pushed, and the caller must know
    the claim was cut short (more may be due), not that nothing more is due."""
    fetch = store._fetch

    def failing_after_a_cut(*args: Any) -> Any:
        if calls.order.count("claim") > 1:  # the continuation, after the other call
            raise sqlite3.OperationalError("disk I/O error")
        return fetch(*args)

    monkeypatch.setattr(store, "_fetch", failing_after_a_cut)
    calls = _Calls(store)
    claim = await _started(store.claim(1, N, T0 + 1, 60_000))
    ping = await _started(store.ping())
    calls.release()
    with pytest.raises(ClaimedInPart) as failed:
        await claim
    await ping

    got = [i.delivery_id for i in failed.value.items]
    assert got == list(range(1, len(got) + 1)) and 0 < len(got) < N
    leased = _count(tmp_path / "w.db", "SELECT COUNT(*) FROM deliveries WHERE lease_until_ms > 0")
    assert leased == len(got)
    assert isinstance(failed.value, StoreUnavailable)


async def test_the_settler_retries_only_what_was_not_recorded() -> None:
    class Store:
        settle_concurrency = 1

        def __init__(self) -> None:
            self.seen: list[list[int]] = []

        async def settle(self, outcomes: Sequence[PushOutcome], now_ms: int) -> None:
            self.seen.append([o.attempt.started_ms for o in outcomes])
            if len(self.seen) == 1:
                raise SettledInPart(2, "disk I/O error")

    st = Store()
    settler = _Settler(st, lambda: T0)  # type: ignore[arg-type]
    settler.start()
    done = [
        settler.add(PushOutcome(AttemptRecord(1, n, 1.0, 200, AttemptOutcome.DELIVERED), ()))
        for n in range(5)
    ]
    await asyncio.wait_for(asyncio.gather(*done), 5)
    await settler.close()

    assert st.seen == [[0, 1, 2, 3, 4], [2, 3, 4]]


def test_chunk_size_is_what_the_store_uses() -> None:
    # The tests above rely on N spanning several chunks.
    assert sqlite_store.CHUNK_ROWS < N
