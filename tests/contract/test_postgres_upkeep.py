"""PostgreSQL: the in-app stand-in for autovacuum, on servers that run without it.

Instead of vacuuming and analyzing every table on every round, it vacuums a table once
a fifth of it is dead row versions (autovacuum's rule) and analyzes it when it first
has rows and whenever its size has doubled or halved since; rewritten rows alone do
not call for new statistics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import pytest

from conftest import needs_postgres
from dlrpush.models import Account, Endpoint, IncomingReport, Message
from dlrpush.store.postgres import PostgresStore

pytestmark = [pytest.mark.postgres, needs_postgres]

T0 = 1_750_000_000_000
N = 3_000


@pytest.fixture
def store_url(pg_url: str) -> str:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT current_setting('autovacuum')::boolean").fetchone()
    if row and row[0]:
        pytest.skip("the server's autovacuum is on: dlrpush leaves its tables to it")
    return pg_url


@asynccontextmanager
async def _store(url: str) -> AsyncIterator[PostgresStore]:
    """A store for one step. Closing it ends its server connections, which is when a
    backend reports its table statistics at once (an idle one waits up to 10 s)."""
    st = PostgresStore(url, pool_max=2)
    await st.open()
    try:
        yield st
    finally:
        await st.close()


def _counts(url: str) -> dict[str, tuple[int, int, int]]:
    """Per table: (vacuums, analyzes, changes since the last ANALYZE)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT relname, vacuum_count, analyze_count, n_mod_since_analyze"
            " FROM pg_stat_user_tables WHERE schemaname = current_schema()"
        ).fetchall()
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}


async def _until_counted(url: str, table: str, changes: int) -> None:
    deadline = time.monotonic() + 10
    while _counts(url)[table][2] < changes:
        assert time.monotonic() < deadline, f"{table}: changes never reached the statistics"
        await asyncio.sleep(0.2)


async def _ingest(url: str, start: int, n: int) -> None:
    ids = [f"m{i}" for i in range(start, start + n)]
    async with _store(url) as st:
        await st.add_messages([Message(m, "acme", "8618888888888") for m in ids], T0)
        await st.add_reports([IncomingReport(m, "DELIVRD", T0) for m in ids], T0, 60_000)
    await _until_counted(url, "reports", n)


async def _setup(url: str) -> Endpoint:
    async with _store(url) as st:
        await st.create_account(Account("acme", "Acme", T0))
        return await st.create_endpoint(Endpoint(0, "acme", "http://127.0.0.1:9/cb", "ucloud"))


class _Keeper:
    """One long-lived store whose housekeeping runs a round at each call (10 s apart by
    its clock), as a dispatcher's does."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.now_ms = T0

    async def round(self) -> None:
        self.now_ms += 10_001
        await self.store.housekeeping(self.now_ms)


@pytest.fixture
async def keeper(store_url: str) -> AsyncIterator[_Keeper]:
    async with _store(store_url) as st:
        yield _Keeper(st)


async def test_tables_are_analyzed_when_they_grew_and_left_alone_when_they_did_not(
    store_url: str, keeper: _Keeper
) -> None:
    url = store_url
    await _setup(url)
    await _ingest(url, 0, N)

    await keeper.round()
    first = _counts(url)
    # Every table that grew from nothing has statistics now, messages included.
    for table in ("messages", "reports", "deliveries"):
        assert first[table][1] == 1, table

    await keeper.round()
    # Nothing changed since: nothing is vacuumed or analyzed again.
    assert _counts(url) == first

    await _ingest(url, N, 100)  # a small change against the table's size
    await keeper.round()
    assert _counts(url)["reports"][1] == 1

    await _ingest(url, N + 100, 2 * N)  # the table more than doubles
    await keeper.round()
    assert _counts(url)["reports"][1] == 2


async def test_rewritten_rows_get_a_vacuum_but_no_new_statistics(
    store_url: str, keeper: _Keeper
) -> None:
    url = store_url
    ep = await _setup(url)
    await _ingest(url, 0, N)
    await keeper.round()
    vacuums, analyzes, _ = _counts(url)["deliveries"]

    # Claiming every delivery, releasing it and claiming it again rewrites each row
    # three times: more changes than the table has rows (autovacuum's rule would
    # analyze), yet its size and keys are what they were.
    async with _store(url) as st:
        claimed = await st.claim(ep.id, N, T0 + 1, 60_000)
        await st.release([item.delivery_id for item in claimed])
        again = await st.claim(ep.id, N, T0 + 2, 60_000)
    assert len(claimed) == len(again) == N
    await _until_counted(url, "deliveries", 3 * N)
    await keeper.round()

    after = _counts(url)["deliveries"]
    assert after[0] == vacuums + 1
    assert after[1] == analyzes
