"""Migrations applied one by one give the same schema as a fresh install (SQLite)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dlrpush.models import ReportState
from dlrpush.store import sqlite as sqlite_store
from dlrpush.store.base import ReplayFilter, ReportFilter
from dlrpush.store.migrations import load_migrations
from dlrpush.store.rows import report_filter
from dlrpush.store.sqlite import SqliteStore


def _schema(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name"
        ).fetchall()
    return [(t, n, re.sub(r"\s+", " ", sql).strip()) for t, n, sql in rows]


async def test_migrations_and_snapshot_give_the_same_schema(tmp_path: Path) -> None:
    fresh = SqliteStore(str(tmp_path / "fresh.db"))
    stepped = SqliteStore(str(tmp_path / "stepped.db"), install_from_snapshot=False)
    for st in (fresh, stepped):
        await st.open()
        await st.close()
    assert _schema(tmp_path / "fresh.db") == _schema(tmp_path / "stepped.db")
    tables = {n for t, n, _ in _schema(tmp_path / "fresh.db") if t == "table"}
    assert {"accounts", "endpoints", "messages", "reports", "deliveries", "pushes"} <= tables


async def test_reopening_applies_nothing_twice_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "again.db"
    st = SqliteStore(str(path))
    await st.open()
    from dlrpush.models import Account

    await st.create_account(Account("acme", "Acme", 1))
    await st.close()
    st = SqliteStore(str(path))
    await st.open()
    assert await st.get_account("acme") == Account("acme", "Acme", 1)
    await st.close()
    with sqlite3.connect(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in load_migrations("sqlite")]


@contextmanager
def _store_before(path: Path, version: int) -> Iterator[sqlite3.Connection]:
    """A SQLite file as a release before migration ``version`` left it."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations"
            " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)"
        )
        for mig in load_migrations("sqlite"):
            if mig.version >= version:
                break
            for statement in mig.statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 1)", (mig.version, mig.name))
        yield conn


async def test_the_attempt_log_survives_the_move_to_one_row_per_request(tmp_path: Path) -> None:
    """A store from before 0003 (one attempt row per report) keeps every attempt."""
    path = tmp_path / "old.db"
    with _store_before(path, 3) as conn:
        conn.execute("INSERT INTO accounts VALUES ('acme', 'Acme', 1)")
        conn.execute(
            "INSERT INTO reports (id, msgid, account_id, status, report_time_ms, received_ms,"
            " state, attempts) VALUES (1, 'm1', 'acme', 'DELIVRD', 1, 1, 'delivered', 2)"
        )
        conn.execute(
            "INSERT INTO deliveries (id, report_id, endpoint_id, state, tries, updated_ms)"
            " VALUES (7, 1, 3, 'delivered', 2, 1)"
        )
        conn.executemany(
            "INSERT INTO attempts VALUES (?, 7, 1, 3, ?, 1.5, ?, ?, ?)",
            [(10, 100, 500, "http_error", "boom"), (11, 1100, 200, "delivered", "ok")],
        )
    st = SqliteStore(str(path))
    await st.open()
    try:
        attempts = await st.list_attempts(1)
        report = await st.get_report(1)
    finally:
        await st.close()
    assert [(a.id, a.started_ms, a.http_status, a.outcome.value, a.snippet) for a in attempts] == [
        (10, 100, 500, "http_error", "boom"),
        (11, 1100, 200, "delivered", "ok"),
    ]
    assert report is not None and report.attempts == 2


async def test_a_store_from_before_the_failed_deliveries_index_replays_them(
    tmp_path: Path,
) -> None:
    """0004 indexes failed deliveries: an older file's failed one is replayed, and its
    reports are still listed by state."""
    path = tmp_path / "old.db"
    with _store_before(path, 4) as conn:
        conn.execute("INSERT INTO accounts VALUES ('acme', 'Acme', 1)")
        conn.executemany(
            "INSERT INTO reports (id, msgid, account_id, status, report_time_ms, received_ms,"
            " state) VALUES (?, ?, ?, 'DELIVRD', 1, 1, ?)",
            [
                (1, "d1", "acme", "delivered"),
                (2, "f1", "acme", "failed"),
                (3, "u1", None, "unmatched"),
            ],
        )
        conn.executemany(
            "INSERT INTO deliveries (id, report_id, endpoint_id, state, tries, updated_ms)"
            " VALUES (?, ?, 3, ?, 1, 1)",
            [(7, 1, "delivered"), (8, 2, "failed")],
        )
        conn.execute(
            "INSERT INTO endpoints (id, account_id, url, protocol, batch_max, retry_schedule,"
            " timeout_s, max_in_flight, enabled, description_lang, created_ms)"
            " VALUES (3, 'acme', 'http://127.0.0.1:9/', 'ucloud', 100, '[]', 5, 4, 1, 'en', 1)"
        )
    st = SqliteStore(str(path))
    await st.open()
    try:
        listed = {
            state: [
                r.msgid for r in (await st.list_reports(ReportFilter(state=state), None, 9)).items
            ]
            for state in (ReportState.DELIVERED, ReportState.FAILED, ReportState.UNMATCHED)
        }
        replayed = await st.replay(ReplayFilter(), 5)
    finally:
        await st.close()
    assert listed == {
        ReportState.DELIVERED: ["d1"],
        ReportState.FAILED: ["f1"],
        ReportState.UNMATCHED: ["u1"],
    }
    assert replayed.queued == 1
    names = {n for t, n, _ in _schema(path) if t == "index"}
    assert "deliveries_failed" in names


async def test_a_store_from_before_the_open_reports_index_lists_and_counts_by_state(
    tmp_path: Path,
) -> None:
    """0006 keeps only the reports not delivered in the state index: an older file's
    reports are still listed and counted by state, and a listing of a state other than
    delivered reads the new index."""
    path = tmp_path / "old.db"
    states = ["delivered"] * 5 + ["pending"] * 3 + ["failed"] * 2 + ["held", "unmatched"]
    with _store_before(path, 6) as conn:
        conn.execute("INSERT INTO accounts VALUES ('acme', 'Acme', 1)")
        conn.executemany(
            "INSERT INTO reports (id, msgid, account_id, status, report_time_ms, received_ms,"
            " state) VALUES (?, ?, 'acme', 'DELIVRD', 1, 1, ?)",
            [(i, f"m{i}", state) for i, state in enumerate(states, 1)],
        )
    st = SqliteStore(str(path))
    await st.open()
    try:
        counts = await st.counts()
        listed = {
            state: [
                r.msgid for r in (await st.list_reports(ReportFilter(state=state), None, 9)).items
            ]
            for state in ReportState
        }
    finally:
        await st.close()
    assert counts == {"delivered": 5, "pending": 3, "failed": 2, "held": 1, "unmatched": 1}
    expected: dict[ReportState, list[str]] = {state: [] for state in ReportState}
    for i, state in enumerate(states, 1):
        expected[ReportState(state)].append(f"m{i}")
    assert listed == expected
    names = {n for t, n, _ in _schema(path) if t == "index"}
    assert "reports_open" in names and "reports_state" not in names
    # The store's own clause for a state other than delivered reaches the index.
    where, params = report_filter(ReportFilter(state=ReportState.FAILED), sqlite_store._DIALECT)
    with sqlite3.connect(path) as conn:
        plan = " ".join(
            str(row[-1])
            for row in conn.execute(
                f"EXPLAIN QUERY PLAN SELECT r.id FROM reports r WHERE {' AND '.join(where)}"
                " ORDER BY r.id LIMIT 10",
                params,
            )
        )
    assert "reports_open" in plan


def _pragma(path: Path, name: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


async def test_a_file_from_before_the_larger_pages_keeps_its_pages_and_data(
    tmp_path: Path,
) -> None:
    """New files get 16 KB pages; a file made with SQLite's default 4 KB pages (as every
    file was before) opens, keeps its data and its page size, and checkpoints at the
    same WAL size in bytes."""
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("CREATE TABLE before_anything (x)")  # fixes the page size
    st = SqliteStore(str(old))
    await st.open()
    try:
        from dlrpush.models import Account

        await st.create_account(Account("acme", "Acme", 1))
        checkpoint_pages = int(st.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    finally:
        await st.close()
    assert _pragma(old, "page_size") == 4096
    assert checkpoint_pages * 4096 == 64 * 1024 * 1024
    st = SqliteStore(str(old))
    await st.open()
    try:
        assert await st.get_account("acme") == Account("acme", "Acme", 1)
    finally:
        await st.close()

    new = tmp_path / "new.db"
    st = SqliteStore(str(new))
    await st.open()
    await st.close()
    assert _pragma(new, "page_size") == 16384
