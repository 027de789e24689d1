"""Listings and counts on the SQLite store read on a connection and thread of their own.

WAL lets a reader work beside the writer, so a listing or count over many reports does
not hold up the claims, ingests and settles queued on the writer's thread; it still
sees every write committed before it started. A store in memory has one connection
only, and reads on it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from dlrpush.models import Account, Endpoint, IncomingReport, Message
from dlrpush.store.base import ReportFilter
from dlrpush.store.sqlite import SqliteStore

T0 = 1_750_000_000_000


async def _ingest(store: SqliteStore, msgid: str) -> None:
    await store.add_messages([Message(msgid, "acme", "8613800000000")], T0)
    await store.add_reports([IncomingReport(msgid, "DELIVRD", T0)], T0, 60_000)


async def test_writes_go_on_while_a_long_read_runs(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "r.db"))
    await store.open()
    try:
        await store.create_account(Account("acme", "Acme", T0))
        await store.create_endpoint(Endpoint(0, "acme", "http://127.0.0.1:9/", "ucloud"))
        await _ingest(store, "m1")
        entered, release = threading.Event(), threading.Event()

        def held_read(c: sqlite3.Connection) -> int:
            entered.set()
            release.wait(10)
            return int(c.execute("SELECT COUNT(*) FROM reports").fetchone()[0])

        reading = asyncio.ensure_future(store._read(held_read))
        assert await asyncio.to_thread(entered.wait, 10)
        # The writer's thread is free: an ingest completes meanwhile.
        await asyncio.wait_for(_ingest(store, "m2"), 5)
        assert not reading.done()
        release.set()
        # The held read's snapshot began with its first statement, after both ingests.
        assert await reading == 2
        page = await store.list_reports(ReportFilter(), None, 10)
        assert [r.msgid for r in page.items] == ["m1", "m2"]
        assert (await store.counts())["pending"] == 2
    finally:
        await store.close()


async def test_a_store_in_memory_lists_what_it_holds() -> None:
    store = SqliteStore(":memory:")
    await store.open()
    try:
        await store.create_account(Account("acme", "Acme", T0))
        await store.create_endpoint(Endpoint(0, "acme", "http://127.0.0.1:9/", "ucloud"))
        await _ingest(store, "m1")
        page = await store.list_reports(ReportFilter(), None, 10)
        assert [r.msgid for r in page.items] == ["m1"]
        assert (await store.counts())["pending"] == 1
    finally:
        await store.close()
