"""Migrations applied one by one give the same schema as a fresh install (PostgreSQL)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from conftest import PG_URL, needs_postgres, pg_schema
from dlrpush.models import Account
from dlrpush.store.migrations import load_migrations
from dlrpush.store.postgres import PostgresStore

pytestmark = [pytest.mark.postgres, needs_postgres]


def _schema_name(url: str) -> str:
    return url.rsplit("csearch_path%3D", 1)[1]


def _describe(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Tables, columns, constraints, indexes, storage options, functions and triggers
    of the URL's schema, with the schema's own name taken out so two schemas can be
    compared."""
    schema = _schema_name(url)
    with psycopg.connect(PG_URL) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, ordinal_position, data_type, udt_name,"
            " column_default, is_nullable, is_identity, identity_generation"
            " FROM information_schema.columns WHERE table_schema = %s"
            " ORDER BY table_name, ordinal_position",
            (schema,),
        ).fetchall()
        indexes = conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = %s"
            " ORDER BY tablename, indexname",
            (schema,),
        ).fetchall()
        constraints = conn.execute(
            "SELECT cl.relname, co.conname, co.contype, pg_get_constraintdef(co.oid)"
            " FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid"
            " JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE n.nspname = %s"
            " ORDER BY cl.relname, co.conname",
            (schema,),
        ).fetchall()
        options = conn.execute(
            "SELECT cl.relname, cl.relkind, cl.reloptions FROM pg_class cl"
            " JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE n.nspname = %s"
            " ORDER BY cl.relname",
            (schema,),
        ).fetchall()
        functions = conn.execute(
            "SELECT p.proname, pg_get_function_arguments(p.oid), p.proconfig, p.prosrc"
            " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = %s ORDER BY p.proname",
            (schema,),
        ).fetchall()
        triggers = conn.execute(
            "SELECT cl.relname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t"
            " JOIN pg_class cl ON cl.oid = t.tgrelid"
            " JOIN pg_namespace n ON n.oid = cl.relnamespace"
            " WHERE n.nspname = %s AND NOT t.tgisinternal ORDER BY cl.relname, t.tgname",
            (schema,),
        ).fetchall()

    def strip(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(v.replace(f"{schema}.", "") if isinstance(v, str) else v for v in row)

    return {
        "columns": [strip(r) for r in columns],
        "indexes": [strip(r) for r in indexes],
        "constraints": [strip(r) for r in constraints],
        "relations": [strip(r) for r in options],
        "functions": [strip(r) for r in functions],
        "triggers": [strip(r) for r in triggers],
    }


async def test_migrations_and_snapshot_give_the_same_schema() -> None:
    with pg_schema() as fresh_url, pg_schema() as stepped_url:
        fresh = PostgresStore(fresh_url)
        stepped = PostgresStore(stepped_url, install_from_snapshot=False)
        for st in (fresh, stepped):
            await st.open()
            await st.close()
        got_fresh, got_stepped = _describe(fresh_url), _describe(stepped_url)
        for part in got_fresh:
            assert got_fresh[part] == got_stepped[part], part
        tables = {r[0] for r in got_fresh["columns"]}
        assert {"accounts", "endpoints", "messages", "reports", "deliveries", "pushes"} <= tables
        # Every change to endpoints moves the dispatcher's version (migration 0011).
        assert [r[:2] for r in got_fresh["triggers"]] == [("endpoints", "endpoints_changed")]
        # The partial indexes the claim, the matcher and the hold sweep rely on.
        defs = {name: d for _, name, d in got_fresh["indexes"]}
        assert "WHERE (state = 'pending'::text)" in defs["deliveries_due"]
        assert "lease_until_ms" not in " ".join(defs.values())  # claims stay HOT
        assert "WHERE (hold_until_ms IS NOT NULL)" in defs["reports_held_until"]
        assert "WHERE (account_id IS NULL)" in defs["reports_unowned"]
        # A settle's state update is HOT only while no index on reports mentions state.
        on_reports = [d for table, _, d in got_fresh["indexes"] if table == "reports"]
        assert on_reports and not any("state" in d for d in on_reports)
        # The settle's and ingest's functions, with the settings their plans are made
        # under: by key, and once per session rather than at every call (migrations
        # 0007, 0008 and 0010).
        settings = {f[0]: f[2] for f in got_fresh["functions"]}
        generic = "plan_cache_mode=force_generic_plan"
        for name in (
            "dlrpush_settle",
            "dlrpush_refresh_reports",
            "dlrpush_add_reports",
            "dlrpush_ingest",
            "dlrpush_fan_out",
        ):
            assert settings[name] == ["enable_seqscan=off", "enable_bitmapscan=off", generic]


async def test_reopening_applies_nothing_twice_and_keeps_data() -> None:
    with pg_schema() as url:
        st = PostgresStore(url)
        await st.open()
        await st.create_account(Account("acme", "Acme", 1))
        await st.close()
        with psycopg.connect(url) as conn:
            first = conn.execute(
                "SELECT version, applied_ms FROM schema_migrations ORDER BY version"
            ).fetchall()
        st = PostgresStore(url)
        await st.open()
        assert await st.get_account("acme") == Account("acme", "Acme", 1)
        await st.close()
        with psycopg.connect(url) as conn:
            again = conn.execute(
                "SELECT version, applied_ms FROM schema_migrations ORDER BY version"
            ).fetchall()
        assert again == first
        assert [v for v, _ in again] == [m.version for m in load_migrations("postgres")]


async def test_stepped_install_can_be_reopened() -> None:
    # A database migrated file by file is recognised as up to date on the next start.
    with pg_schema() as url:
        st = PostgresStore(url, install_from_snapshot=False)
        await st.open()
        await st.close()
        st = PostgresStore(url)
        await st.open()
        await st.close()
        with psycopg.connect(url) as conn:
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        assert sorted(versions) == [m.version for m in load_migrations("postgres")]


async def test_the_attempt_log_survives_the_move_to_one_row_per_request() -> None:
    """A store from before 0003 (one attempt row per report) keeps every attempt, and
    new attempts get ids after the old ones."""
    with pg_schema() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE schema_migrations"
                " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
            )
            for mig in load_migrations("postgres"):
                if mig.version >= 3:
                    break
                for statement in mig.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (%s, %s, 1)", (mig.version, mig.name)
                )
            conn.execute("INSERT INTO accounts VALUES ('acme', 'Acme', 1)")
            conn.execute(
                "INSERT INTO reports (id, msgid, account_id, status, report_time_ms,"
                " received_ms, state, attempts)"
                " OVERRIDING SYSTEM VALUE VALUES (1, 'm1', 'acme', 'DELIVRD', 1, 1, 'delivered', 2)"
            )
            conn.execute(
                "INSERT INTO deliveries (id, report_id, endpoint_id, state, tries, updated_ms)"
                " OVERRIDING SYSTEM VALUE VALUES (7, 1, 3, 'delivered', 2, 1)"
            )
            for attempt_id, started, status, outcome, snippet in (
                (10, 100, 500, "http_error", "boom"),
                (11, 1100, 200, "delivered", "ok"),
            ):
                conn.execute(
                    "INSERT INTO attempts (id, delivery_id, report_id, endpoint_id, started_ms,"
                    " latency_ms, http_status, outcome, snippet)"
                    " OVERRIDING SYSTEM VALUE VALUES (%s, 7, 1, 3, %s, 1.5, %s, %s, %s)",
                    (attempt_id, started, status, outcome, snippet),
                )
        st = PostgresStore(url)
        await st.open()
        try:
            attempts = await st.list_attempts(1)
            report = await st.get_report(1)
        finally:
            await st.close()
        with psycopg.connect(url) as conn:
            (next_id,) = conn.execute("SELECT nextval('pushes_id_seq')").fetchone() or (0,)
    got = [(a.id, a.started_ms, a.http_status, a.outcome.value, a.snippet) for a in attempts]
    assert got == [(10, 100, 500, "http_error", "boom"), (11, 1100, 200, "delivered", "ok")]
    assert report is not None and report.attempts == 2
    assert next_id > 11
