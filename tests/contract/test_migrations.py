"""Migrations applied one by one give the same schema as a fresh install (SQLite)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from dlrpush.store.migrations import load_migrations
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
    assert {"accounts", "endpoints", "messages", "reports", "deliveries", "attempts"} <= tables


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
