"""Writes waiting for the SQLite store's thread share one commit, and stay separate.

While the thread is busy, the writes queued behind the running one join its transaction
(one commit, one sync). Each joined write runs in a savepoint: one that fails is undone
alone and only its caller hears of it; a failure of the connection fails every write of
the transaction, and none of them is kept.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest

from dlrpush.errors import Conflict, StoreUnavailable
from dlrpush.models import Account, Endpoint, IncomingReport, Message
from dlrpush.store.serial import NORMAL, URGENT
from dlrpush.store.sqlite import JOIN_ROWS, SqliteStore, _WriteCall

T0 = 1_750_000_000_000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    st = SqliteStore(str(tmp_path / "g.db"))
    await st.open()
    await st.create_account(Account("acme", "Acme", T0))
    yield st
    await st.close()


class _Held:
    """Holds the store's thread until released, and records every statement run."""

    def __init__(self, st: SqliteStore) -> None:
        self.statements: list[str] = []
        self._gate = threading.Event()
        st.conn.set_trace_callback(self.statements.append)
        st._worker.submit(URGENT, self._gate.wait)

    def release(self) -> None:
        self._gate.set()

    def count(self, prefix: str) -> int:
        return sum(1 for s in self.statements if s.startswith(prefix))


async def _queued(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    task = asyncio.create_task(coro)
    await asyncio.sleep(0.02)  # queued on the store's thread, in this order
    return task


async def test_writes_waiting_behind_the_thread_share_one_commit(store: SqliteStore) -> None:
    held = _Held(store)
    tasks = [await _queued(store.create_account(Account(a, a, T0))) for a in ("a", "b", "c")]
    held.release()
    await asyncio.gather(*tasks)

    assert held.count("BEGIN") == 1 and held.count("COMMIT") == 1
    for a in ("a", "b", "c"):
        assert await store.get_account(a) is not None


async def test_a_joined_write_that_fails_is_undone_alone(store: SqliteStore) -> None:
    held = _Held(store)
    first = await _queued(store.create_account(Account("a", "a", T0)))
    dup = await _queued(store.create_account(Account("acme", "again", T0)))
    last = await _queued(store.create_account(Account("b", "b", T0)))
    held.release()

    await first
    with pytest.raises(Conflict):
        await dup
    await last
    assert held.count("COMMIT") == 1
    assert await store.get_account("a") is not None and await store.get_account("b") is not None
    acme = await store.get_account("acme")
    assert acme is not None and acme.name == "Acme"


async def test_a_connection_failure_fails_the_whole_transaction_and_keeps_none_of_it(
    store: SqliteStore,
) -> None:
    def broken(c: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    held = _Held(store)
    first = await _queued(store.create_account(Account("a", "a", T0)))
    bad = asyncio.wrap_future(
        store._worker.submit(NORMAL, _WriteCall(store, "FULL", broken, rows=1, urgent=False))
    )
    await asyncio.sleep(0.02)
    held.release()

    for task in (first, bad):
        with pytest.raises(StoreUnavailable):
            await task
    assert await store.get_account("a") is None
    await store.create_account(Account("b", "b", T0))  # the store goes on working
    assert await store.get_account("b") is not None


async def test_an_acknowledged_write_waiting_makes_the_shared_commit_a_synced_one(
    store: SqliteStore,
) -> None:
    """Outcomes and leases skip the sync; an ingest may not. A transaction started for
    bookkeeping that an ingest will join is committed at the ingest's level."""
    await store.add_messages([Message("m0", "acme", "8618888888888")], T0)
    await store.release([1])  # bookkeeping alone: the connection now skips the sync
    held = _Held(store)
    release = await _queued(store.release([1]))
    ingest = await _queued(store.add_reports([IncomingReport("m0", "DELIVRD", T0)], T0, 60_000))
    held.release()
    await asyncio.gather(release, ingest)

    assert held.count("COMMIT") == 1
    assert held.statements[0] == "PRAGMA synchronous=FULL"


def _transactions(statements: list[str]) -> list[list[str]]:
    """The statements of each transaction, in order."""
    out: list[list[str]] = []
    inside = False
    for s in statements:
        if s.startswith("BEGIN"):
            out.append([])
            inside = True
        elif s in ("COMMIT", "ROLLBACK"):
            inside = False
        elif inside:
            out[-1].append(s)
    return out


async def test_a_claim_is_committed_at_once_and_a_big_write_commits_alone(
    store: SqliteStore,
) -> None:
    """Joining delays a write's answer by whatever runs after it in the transaction: a
    claim (a push waits for it) runs in a transaction of its own, and a write of many
    rows never joins, so it holds up no one's answer but its own."""
    await store.create_endpoint(Endpoint(0, "acme", "http://127.0.0.1:9/", "ucloud"))
    ids = [f"m{i}" for i in range(JOIN_ROWS + 1)]
    await store.add_messages([Message(m, "acme", "8618888888888") for m in ids], T0)
    held = _Held(store)
    small = [await _queued(store.create_account(Account(a, a, T0))) for a in ("a", "b")]
    big = await _queued(
        store.add_reports([IncomingReport(m, "DELIVRD", T0) for m in ids], T0, 60_000)
    )
    claim = await _queued(store.claim(1, 10, T0 + 1, 60_000))
    held.release()
    await asyncio.gather(*small, big)
    assert await claim == []  # the reports came after the claim: nothing was due yet

    txns = _transactions(held.statements)
    with_claim = [t for t in txns if any("ORDER BY d.next_attempt_ms" in s for s in t)]
    with_reports = [t for t in txns if any("INSERT INTO reports" in s for s in t)]
    assert len(with_claim) == 1 and len(with_reports) == 1
    assert not any("INSERT INTO accounts" in s for s in with_claim[0] + with_reports[0])
    # the claim ran first (most urgent), in a transaction of its own
    assert txns[0] is with_claim[0] and len(txns[0]) == 1  # its SELECT, nothing else
    assert len(txns) <= 4
