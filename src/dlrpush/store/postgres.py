"""The PostgreSQL store: many service processes share one database through a connection pool.

This module owns the PostgreSQL side of the ``Store`` contract: the pool (psycopg 3 async
with ``psycopg_pool``), schema migrations for ``sql/postgres``, the set-based SQL for
ingest, claim and settle, the ``dlrpush_work`` NOTIFY sent when ingest or replay creates
due work, and the LISTEN connection behind ``work_notifications()``. Unlike SQLite,
several dispatchers may claim from the same tables at once, so a claim locks its rows
with ``FOR UPDATE SKIP LOCKED`` and nobody ever releases another worker's leases at
start. Every method is one or two short transactions on a pooled connection; none is
held open while anything but the database is awaited, and a claim is committed before
the caller pushes. Driver and pool failures surface as ``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from itertools import islice
from typing import Any, LiteralString

import orjson
import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from dlrpush.errors import Conflict, NotFound, StoreUnavailable
from dlrpush.models import (
    Account,
    ApiKey,
    AttemptOutcome,
    DeliveryState,
    Endpoint,
    IncomingReport,
    Message,
    PushItem,
    PushOutcome,
    ReportState,
    Settlement,
)
from dlrpush.store.base import (
    AttemptView,
    DeliveryView,
    IngestResult,
    Offer,
    Page,
    ReplayFilter,
    ReplayResult,
    ReportFilter,
    ReportView,
    use_offer,
)
from dlrpush.store.coalesce import Coalescer
from dlrpush.store.migrations import load_fresh_schema, load_migrations
from dlrpush.store.rows import (
    Dialect,
    endpoint_from_row,
    push_item_from_row,
    replay_filter,
    report_filter,
)

log = logging.getLogger("dlrpush.store.postgres")

Conn = psycopg.AsyncConnection[TupleRow]

CHANNEL = "dlrpush_work"
# The most offer entries (idle endpoints ready to take new work) an ingest call sends:
# the server joins them against the endpoints that got work, and every call would
# otherwise carry one entry per idle endpoint of the process (thousands, for a platform
# of many quiet customers). The newest go (a runner rejoins the offer's end each time
# it reviews it, so they are the endpoints that were busy last); an endpoint left out
# has its new work claimed after the notification, as without an offer.
OFFER_SENT_MAX = 256
# Ingest requests smaller than this are merged with those arriving while an ingest
# call runs (coalesce.py), up to COALESCE_MAX reports a call; the API's bulk arrays go
# alone. A call of 1,000 reports costs the server ~15 µs a report, of one ~700 µs.
COALESCE_BELOW = 100
COALESCE_MAX = 1000
# Pauses between tries of an ingest's second look for held reports (see _second_look).
_SECOND_LOOK_DELAYS_S = (0.05, 0.25, 1.0)
# NOTIFY payloads must stay under 8000 bytes; ids are sent in chunks well below that.
_NOTIFY_MAX_CHARS = 7000

# The reports of one ingest request, the time it was received, how long its
# unmatched reports are held, and the offer of the dispatcher beside it (if any).
_ReportRequest = tuple[Sequence[IncomingReport], int, int, Offer | None]
# The LISTEN connection wakes this often to notice a closed store and, when idle for
# _LISTEN_PING_S, sends a query so a dead TCP connection is found without waiting for
# the kernel's keepalive (two hours by default).
_LISTEN_POLL_S = 0.5
_VACUUM_EVERY_MS = 10_000
# The in-app stand-in for autovacuum, for servers that run without it. A table is
# vacuumed once a fifth of its rows are dead versions (autovacuum's default scale
# factor) and analyzed when it first has rows, then whenever its size has doubled or
# halved (see _needs_statistics). Both are throttled as autovacuum's are (2 ms pauses),
# and analyze samples 3,000 rows instead of 30,000. Vacuuming and analyzing every table
# every 10 s at full speed took ~100-300 ms of server CPU in one burst each time, and
# the healthy customer's p99 beside failing neighbours tripled (docs/benchmarks.md).
# messages is insert-only, so it is never vacuumed, but it needs statistics: without
# them the planner reads all of a small messages table for each ingest's owner lookup.
_ANALYZE_MIN_ROWS = 500
_VACUUMED_TABLES = ("deliveries", "reports", "api_keys", "endpoints")
_ANALYZED_TABLES = (*_VACUUMED_TABLES, "messages")
_VACUUM_SQL: dict[str, LiteralString] = {t: f"VACUUM {t}" for t in _VACUUMED_TABLES}
_ANALYZE_SQL: dict[str, LiteralString] = {t: f"ANALYZE {t}" for t in _ANALYZED_TABLES}
_UPKEEP_DUE_SQL = """
SELECT s.relname,
       s.n_dead_tup > 50 + 0.2 * greatest(c.reltuples, 0),
       s.n_live_tup,
       s.last_analyze IS NULL AND s.last_autoanalyze IS NULL
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = current_schema() AND s.relname = ANY(%s)
ORDER BY s.relname
"""
_UPKEEP_SETTINGS_SQL = (
    "SELECT set_config('vacuum_cost_delay', '2ms', false),"
    " set_config('default_statistics_target', '10', false)"
)
_UPKEEP_RESET_SQL: tuple[LiteralString, ...] = (
    "RESET vacuum_cost_delay",
    "RESET default_statistics_target",
)
_LISTEN_PING_S = 30.0
_RECONNECT_MIN_S = 0.2
_RECONNECT_MAX_S = 10.0

_ENDPOINT_COLS = (
    "id, account_id, url, protocol, receiver, pswd, batch_max, retry_schedule, timeout_s,"
    " max_in_flight, enabled, description_lang, success_body_contains, created_ms"
)

# Dispatcher bookkeeping (claim, settle, release, expire_held) commits without waiting
# for the WAL flush, as the SQLite store skips the fsync for the same writes: the commit
# is still atomic and visible to every other session at once, which is all the lease
# exclusion needs, and losing the last few of these writes to a server crash only means
# a report is pushed again (delivery is at-least-once anyway). Ingest, replay and the
# account and endpoint calls keep the server's setting: their commit is acknowledged.
_BOOKKEEPING_SQL = "SET LOCAL synchronous_commit = off"

# The claim is one statement, so in autocommit it is committed before it returns (the
# ``cfg`` CTE is the SET LOCAL above for that one-statement transaction, saving the
# BEGIN/SET/COMMIT round trips on the hottest call). The inner SELECT locks its rows
# with SKIP LOCKED, so concurrent claimers (other processes, other runners) pass over
# each other's rows instead of queueing behind them; a row another claimer leased and
# committed after our snapshot is re-checked on lock and dropped, since its
# lease_until_ms is then in the future.
_CLAIM_SQL = """
WITH cfg AS (
    SELECT set_config('synchronous_commit', 'off', true)
), picked AS (
    SELECT id FROM deliveries
    WHERE endpoint_id = %(ep)s AND state = 'pending' AND next_attempt_ms <= %(now)s
      AND lease_until_ms <= %(now)s
    ORDER BY next_attempt_ms, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE deliveries d SET lease_until_ms = %(lease)s
    FROM picked WHERE d.id = picked.id
    RETURNING d.id, d.report_id, d.tries, d.next_attempt_ms
)
SELECT l.id, l.report_id, x.msgid, x.phone, x.segments, x.status, x.description,
       x.report_time_ms, x.uid, x.batch_seq, x.request_time_ms, x.unit_price, x.currency,
       x.access_number, x.country_number, x.region_code, x.mno_name, x.mcc, x.mnc, l.tries
FROM leased l
CROSS JOIN LATERAL (
    SELECT r.msgid, m.phone, m.segments, r.status, r.description, r.report_time_ms, m.uid,
           m.batch_seq, m.request_time_ms, m.unit_price, m.currency, m.access_number,
           m.country_number, m.region_code, m.mno_name, m.mcc, m.mnc
    FROM reports r JOIN messages m ON m.msgid = r.msgid
    WHERE r.id = l.report_id
    -- Keeps the lookup a per-row index probe: joined plainly, the planner reads all of
    -- reports into a hash table for 100 rows whenever it holds fewer than some 50,000
    -- (measured: 7 ms instead of 0.3 ms per claim at 20,000 reports).
    OFFSET 0
) x
CROSS JOIN cfg
ORDER BY l.next_attempt_ms, l.id
"""

# A settle is one call of a server-side function (migration 0005 holds it and the
# reasons): one statement, one round trip, plans kept by the server for the session.
_SETTLE_SQL = """
SELECT dlrpush_settle(
    %(p_endpoint)b::bigint[], %(p_started)b::bigint[], %(p_latency)b::double precision[],
    %(p_status)b::integer[], %(p_outcome)b::text[], %(p_snippet)b::text[],
    %(p_items)b::integer[], %(c_delivery)b::bigint[], %(c_push)b::bigint[],
    %(d_id)b::bigint[], %(d_state)b::text[], %(d_tries)b::integer[], %(d_next)b::bigint[],
    %(now)s::bigint, %(final)b::bigint[])
"""

# Report rows are locked in id order by a statement of their own before the state is
# recomputed. The order keeps two settlers sharing reports (one report, two endpoints)
# from deadlocking; the separate statement matters too: under READ COMMITTED the next
# statement takes a fresh snapshot, so it sees the deliveries of whichever transaction
# held the lock before us. Recomputing inside the statement that waited would use the
# old snapshot and could leave a report "pending" after its last delivery settled.
_LOCK_REPORTS_SQL = """
SELECT id FROM reports WHERE id = ANY(%b::bigint[]) ORDER BY id FOR NO KEY UPDATE
"""

# Held or unmatched reports whose submission record is now stored become pending. Rows
# are locked in id order (the subquery) so this never deadlocks with expire_held or
# another matcher; a row that changed while we waited is re-checked and dropped.
_MATCH_WAITING_SQL = """
UPDATE reports r SET state = 'pending', account_id = w.account_id, hold_until_ms = NULL
FROM (
    SELECT rr.id, m.account_id FROM reports rr JOIN messages m ON m.msgid = rr.msgid
    WHERE rr.{key} = ANY(%b::{key_type}[]) AND rr.state IN ('held', 'unmatched')
    ORDER BY rr.id
    FOR UPDATE OF rr
) w
WHERE r.id = w.id
RETURNING r.id, r.account_id
"""

# Batches travel as one array per column and are unnested server-side: one round trip
# for 10,000 rows. Array parameters are sent in binary (``%b``): psycopg's text array
# format escapes every element with a regular expression, which took half the time of
# a 10,000-record ingest.
_INSERT_MESSAGES_SQL = """
INSERT INTO messages (msgid, account_id, phone, segments, uid, batch_seq, request_time_ms,
                      unit_price, currency, access_number, country_number, region_code,
                      mno_name, mcc, mnc, created_ms)
SELECT msgid, account_id, phone, segments, uid, batch_seq, request_time_ms, unit_price,
       currency, access_number, country_number, region_code, mno_name, mcc, mnc, %s::bigint
FROM unnest(%b::text[], %b::text[], %b::text[], %b::integer[], %b::text[], %b::text[],
            %b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
            %b::text[], %b::text[], %b::text[])
     WITH ORDINALITY AS t(msgid, account_id, phone, segments, uid, batch_seq,
                          request_time_ms, unit_price, currency, access_number,
                          country_number, region_code, mno_name, mcc, mnc, ord)
ORDER BY ord
ON CONFLICT (msgid) DO NOTHING
"""

# Ingest is one call of a server-side function (migrations 0006 and 0010 hold it and
# the reasons): report inserts take turns per schema so a pull cursor never skips an
# id, and one round trip inside that turn keeps the turns short. Ids are handed out in
# input order, as SQLite does. The leased push items come back as JSON text, each led
# by its endpoint id.
_ADD_REPORTS_SQL = """
SELECT held, endpoints, ids, leased FROM dlrpush_ingest(
    %(msgid)b::text[], %(status)b::text[], %(error_code)b::text[], %(description)b::text[],
    %(receipt)b::text[], %(report_time_ms)b::bigint[], %(now)s::bigint,
    %(hold_until)s::bigint, %(channel)s::text, %(offer_ep)b::bigint[],
    %(offer_limit)b::integer[], %(offer_lease)b::bigint[])
"""

# Deliveries are aggregated per report in the same statement, so a listed report and
# its deliveries come from one snapshot. A report's attempts are the sum over them.
_REPORT_VIEW_SQL = """
SELECT r.id, r.msgid, r.account_id, r.status, r.error_code, r.description, r.report_time_ms,
       r.received_ms, r.state, COALESCE(d.attempts, 0), d.endpoint_ids, d.states, d.tries,
       d.next_ms, d.updated_ms
FROM reports r
LEFT JOIN LATERAL (
    SELECT sum(attempts)::integer AS attempts,
           array_agg(endpoint_id ORDER BY endpoint_id) AS endpoint_ids,
           array_agg(state ORDER BY endpoint_id) AS states,
           array_agg(tries ORDER BY endpoint_id) AS tries,
           array_agg(next_attempt_ms ORDER BY endpoint_id) AS next_ms,
           array_agg(updated_ms ORDER BY endpoint_id) AS updated_ms
    FROM deliveries WHERE report_id = r.id
) d ON true
"""


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL; receivers' replies and carrier texts sometimes do.
    # A NUL would make the whole batch fail on every retry, so it becomes U+FFFD.
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _state_is(state: ReportState, ph: str) -> str:
    """No index on reports holds the state (migration 0004, so a settle's update is
    HOT); each listing by state goes through an index that leads to its reports."""
    if state in (ReportState.HELD, ReportState.UNMATCHED):
        return f"r.account_id IS NULL AND r.state = {ph}"  # reports_unowned
    if state is ReportState.FAILED:
        # A failed report has a failed delivery (deliveries_failed).
        return (
            f"r.state = {ph} AND r.id IN (SELECT report_id FROM deliveries WHERE state = 'failed')"
        )
    return f"r.state = {ph}"  # most reports: found in id order


_DIALECT = Dialect(
    placeholder="%s",
    msgid_in="r.msgid = ANY(%b::text[])",
    msgid_list=lambda msgids: [_text(m) for m in msgids],
    text=_text,
    state_is=_state_is,
)


def _opt_text(value: str | None) -> str | None:
    return None if value is None else _text(value)


def _endpoint_params(ep: Endpoint) -> tuple[object, ...]:
    return (
        _text(ep.account_id),
        _text(ep.url),
        ep.protocol,
        _text(ep.credentials.receiver),
        _text(ep.credentials.pswd),
        ep.batch_max,
        [float(x) for x in ep.retry_schedule_s],
        ep.timeout_s,
        ep.max_in_flight,
        ep.enabled,
        ep.description_lang,
        _opt_text(ep.success_body_contains),
        ep.created_ms,
    )


def _report_view_from_row(r: Sequence[Any]) -> ReportView:
    deliveries: tuple[DeliveryView, ...] = ()
    if r[10] is not None:
        deliveries = tuple(
            DeliveryView(ep, DeliveryState(state), tries, nxt, upd)
            for ep, state, tries, nxt, upd in zip(r[10], r[11], r[12], r[13], r[14], strict=True)
        )
    return ReportView(
        id=r[0],
        msgid=r[1],
        account=r[2],
        status=r[3],
        error_code=r[4],
        description=r[5],
        report_time_ms=r[6],
        received_ms=r[7],
        state=ReportState(r[8]),
        attempts=r[9],
        deliveries=deliveries,
    )


def _parse_payload(payload: str) -> frozenset[int]:
    out = set()
    for part in payload.split(","):
        part = part.strip()
        if part.isdigit():
            out.add(int(part))
    return frozenset(out)


def _payloads(endpoint_ids: Iterable[int]) -> list[str]:
    chunks: list[str] = []
    current = ""
    for ep_id in sorted(endpoint_ids):
        piece = str(ep_id)
        if current and len(current) + 1 + len(piece) > _NOTIFY_MAX_CHARS:
            chunks.append(current)
            current = ""
        current = f"{current},{piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def _unavailable(exc: BaseException) -> StoreUnavailable:
    lines = str(exc).strip().splitlines()
    detail = lines[0] if lines else type(exc).__name__
    return StoreUnavailable(f"postgresql: {detail}")


class PostgresStore:
    def __init__(
        self,
        url: str,
        *,
        pool_max: int = 10,
        connect_timeout_s: float = 10.0,
        install_from_snapshot: bool = True,
    ) -> None:
        self._url = url
        self._pool_max = max(1, pool_max)
        self._vacuumed_ms = 0
        self._autovacuum: bool | None = None
        self._analyzed_rows: dict[str, int] = {}  # live rows at this process's ANALYZE
        self._connect_timeout_s = connect_timeout_s
        self._from_snapshot = install_from_snapshot
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._ingest: Coalescer[_ReportRequest, IngestResult] = Coalescer(
            self._add_report_requests, lambda request: len(request[0]), COALESCE_MAX
        )
        self._closed = asyncio.Event()
        # libpq waits forever on an unreachable host unless told otherwise; a value the
        # URL gives wins.
        given = conninfo_to_dict(url)
        self._connect_kwargs: dict[str, Any] = {}
        if "connect_timeout" not in given:
            self._connect_kwargs["connect_timeout"] = max(1, int(connect_timeout_s))
        if "application_name" not in given:
            self._connect_kwargs["application_name"] = "dlrpush"

    # -- plumbing ---------------------------------------------------------------------

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Conn]:
        """A pooled connection in autocommit: a single statement is its own transaction;
        several go in ``conn.transaction()``."""
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("store is not open")
        try:
            async with pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreUnavailable(
                f"postgresql: no connection available within {pool.timeout:g}s"
            ) from exc
        except psycopg.OperationalError as exc:
            # Lost connection, server restart, deadlock victim, statement timeout: the
            # transaction was rolled back and the caller may retry. The pool drops a
            # broken connection when it comes back.
            raise _unavailable(exc) from exc

    async def _notify(self, conn: Conn, endpoint_ids: Collection[int]) -> None:
        # Inside the caller's transaction: listeners hear it only if the work committed.
        for payload in _payloads(endpoint_ids):
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))

    # -- lifecycle --------------------------------------------------------------------

    @property
    def exclusive_dispatch(self) -> bool:
        # Dispatchers in other processes may hold live leases on the same tables.
        return False

    @property
    def settle_concurrency(self) -> int:
        # Settles lock deliveries and then reports in id order, so side by side they
        # wait for each other at worst; half the pool leaves room for claims and the API.
        return max(1, min(4, self._pool_max // 2))

    def work_notifications(self) -> AsyncIterator[frozenset[int]] | None:
        return self._listen()

    async def open(self) -> None:
        if self._pool is not None:
            return
        self._closed.clear()
        # One direct connection first: a wrong host, password or database name fails
        # here at once with the server's own words, where the pool would keep retrying
        # until its timeout and then only say that it timed out.
        try:
            probe = await psycopg.AsyncConnection.connect(self._url, **self._connect_kwargs)
        except psycopg.Error as exc:
            raise _unavailable(exc) from exc
        await probe.close()
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._url,
            min_size=min(2, self._pool_max),
            max_size=self._pool_max,
            kwargs={"autocommit": True, **self._connect_kwargs},
            open=False,
            name="dlrpush",
            timeout=self._connect_timeout_s,
        )
        try:
            await pool.open(wait=True, timeout=self._connect_timeout_s)
        except PoolTimeout as exc:
            await pool.close()
            raise StoreUnavailable(
                f"postgresql: cannot connect within {self._connect_timeout_s:g}s"
            ) from exc
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        try:
            await self._migrate()
        except BaseException:
            self._pool = None
            await pool.close()
            raise

    async def close(self) -> None:
        self._closed.set()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.execute("SELECT 1")

    async def housekeeping(self, now_ms: int) -> None:
        """Vacuum the hot tables ourselves when the server's autovacuum is off.

        Every claim and settle leaves a dead row version in ``deliveries``; without
        vacuuming, claims wade through ever more of them and slow down without bound.
        One process at a time (an advisory lock), at most every ``_VACUUM_EVERY_MS``.
        """
        if now_ms - self._vacuumed_ms < _VACUUM_EVERY_MS:
            return
        self._vacuumed_ms = now_ms
        async with self._conn() as conn:
            if self._autovacuum is None:
                cur = await conn.execute("SELECT current_setting('autovacuum')::boolean")
                row = await cur.fetchone()
                self._autovacuum = bool(row and row[0])
                if not self._autovacuum:
                    log.warning(
                        "PostgreSQL's autovacuum is off: dlrpush checks its own tables"
                        " every %d s and vacuums or analyzes them as needed; turn"
                        " autovacuum on in production",
                        _VACUUM_EVERY_MS // 1000,
                    )
            if self._autovacuum:
                return
            cur = await conn.execute(
                "SELECT pg_try_advisory_lock(hashtext('dlrpush.vacuum.' || current_schema()))"
            )
            row = await cur.fetchone()
            if not (row and row[0]):
                return
            try:
                cur = await conn.execute(_UPKEEP_DUE_SQL, (list(_ANALYZED_TABLES),))
                due = await cur.fetchall()
                await conn.execute(_UPKEEP_SETTINGS_SQL)
                for table, vacuum, live, never_analyzed in due:
                    if vacuum and table in _VACUUMED_TABLES:
                        await conn.execute(_VACUUM_SQL[table])
                    if self._needs_statistics(table, int(live), bool(never_analyzed)):
                        await conn.execute(_ANALYZE_SQL[table])
                        self._analyzed_rows[table] = int(live)
            finally:
                if not conn.closed:
                    for reset in _UPKEEP_RESET_SQL:
                        await conn.execute(reset)
                    await conn.execute(
                        "SELECT pg_advisory_unlock(hashtext('dlrpush.vacuum.' || current_schema()))"
                    )

    def _needs_statistics(self, table: str, live: int, never_analyzed: bool) -> bool:
        """Whether ``table`` has grown or shrunk enough since this process last analyzed
        it to change a plan: statistics for a table that never had any, then at every
        doubling or halving of its rows. Updates do not count, unlike autovacuum's
        rule: they leave the table's size and key distributions as they were, and a
        delivery is rewritten several times (claim, each retry, settle)."""
        if never_analyzed:
            return live > 0
        last = self._analyzed_rows.get(table)
        if last is None:
            return True  # once per process: another may have analyzed it long ago
        return live > 2 * max(last, _ANALYZE_MIN_ROWS) or 2 * live < last

    async def _migrate(self) -> None:
        async with self._conn() as conn:
            # Several processes may start at once: one migrates, the others wait and
            # then find nothing left to do. Keyed by schema so separate schemas (tests,
            # deployments sharing a database) do not wait for each other.
            await conn.execute(
                "SELECT pg_advisory_lock(hashtext('dlrpush.migrate.' || current_schema()))"
            )
            try:
                await self._apply_migrations(conn)
            finally:
                if not conn.closed:
                    await conn.execute(
                        "SELECT pg_advisory_unlock("
                        "hashtext('dlrpush.migrate.' || current_schema()))"
                    )

    async def _apply_migrations(self, conn: Conn) -> None:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
        )
        cur = await conn.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in await cur.fetchall()}
        migrations = load_migrations("postgres")
        now = int(time.time() * 1000)
        record = "INSERT INTO schema_migrations VALUES (%s, %s, %s)"
        if not done and self._from_snapshot:
            async with conn.transaction():
                for statement in load_fresh_schema("postgres"):
                    await conn.execute(statement)
                async with conn.cursor() as c:
                    await c.executemany(record, [(m.version, m.name, now) for m in migrations])
            return
        for mig in migrations:
            if mig.version in done:
                continue
            async with conn.transaction():
                for statement in mig.statements:
                    await conn.execute(statement)
                await conn.execute(record, (mig.version, mig.name, now))
            log.info("applied migration %s", mig.name)

    # -- accounts and endpoints -------------------------------------------------------

    async def create_account(self, account: Account) -> Account:
        async with self._conn() as conn:
            try:
                await conn.execute(
                    "INSERT INTO accounts (id, name, created_ms) VALUES (%s, %s, %s)",
                    (_text(account.id), _text(account.name), account.created_ms),
                )
            except pg_errors.UniqueViolation:
                raise Conflict(f"account {account.id!r} exists") from None
        return account

    async def get_account(self, account_id: str) -> Account | None:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT id, name, created_ms FROM accounts WHERE id = %s", (_text(account_id),)
            )
            row = await cur.fetchone()
        return Account(*row) if row else None

    async def missing_accounts(self, ids: Collection[str]) -> set[str]:
        wanted = set(ids)
        if not wanted:
            return set()
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT id FROM accounts WHERE id = ANY(%b::text[])",
                ([_text(i) for i in wanted],),
            )
            found = {r[0] for r in await cur.fetchall()}
        return wanted - found

    async def create_api_key(
        self, account_id: str, prefix: str, key_hash: str, now_ms: int
    ) -> ApiKey:
        async with self._conn() as conn:
            try:
                cur = await conn.execute(
                    "INSERT INTO api_keys (account_id, prefix, key_hash, created_ms)"
                    " VALUES (%s, %s, %s, %s) RETURNING id",
                    (_text(account_id), prefix, key_hash, now_ms),
                )
            except pg_errors.ForeignKeyViolation:
                raise NotFound(f"account {account_id!r} does not exist") from None
            row = await cur.fetchone()
        assert row is not None
        return ApiKey(int(row[0]), account_id, prefix, now_ms)

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT id, account_id, prefix, created_ms, revoked_ms FROM api_keys"
                " WHERE key_hash = %s AND revoked_ms IS NULL",
                (key_hash,),
            )
            row = await cur.fetchone()
        return ApiKey(*row) if row else None

    async def list_api_keys(self, account_id: str) -> list[ApiKey]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT id, account_id, prefix, created_ms, revoked_ms FROM api_keys"
                " WHERE account_id = %s ORDER BY id",
                (_text(account_id),),
            )
            rows = await cur.fetchall()
        return [ApiKey(*row) for row in rows]

    async def revoke_api_key(self, key_id: int, now_ms: int) -> bool:
        async with self._conn() as conn:
            cur = await conn.execute(
                "UPDATE api_keys SET revoked_ms = %s WHERE id = %s AND revoked_ms IS NULL",
                (now_ms, key_id),
            )
            return cur.rowcount > 0

    async def create_endpoint(self, endpoint: Endpoint) -> Endpoint:
        async with self._conn() as conn:
            try:
                cur = await conn.execute(
                    "INSERT INTO endpoints (account_id, url, protocol, receiver, pswd,"
                    " batch_max, retry_schedule, timeout_s, max_in_flight, enabled,"
                    " description_lang, success_body_contains, created_ms)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %b::double precision[], %s, %s, %s,"
                    " %s, %s, %s) RETURNING id",
                    _endpoint_params(endpoint),
                )
            except pg_errors.ForeignKeyViolation:
                raise NotFound(f"account {endpoint.account_id!r} does not exist") from None
            row = await cur.fetchone()
        assert row is not None
        return replace(endpoint, id=int(row[0]))

    async def get_endpoint(self, endpoint_id: int) -> Endpoint | None:
        async with self._conn() as conn:
            cur = await conn.execute(
                f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE id = %s AND deleted_ms IS NULL",
                (endpoint_id,),
            )
            row = await cur.fetchone()
        return endpoint_from_row(row, row[7]) if row else None

    async def endpoints_version(self) -> int:
        async with self._conn() as conn:
            cur = await conn.execute("SELECT version FROM endpoint_changes")
            row = await cur.fetchone()
        assert row is not None  # the migration inserts the one row
        return int(row[0])

    async def list_endpoints(
        self, account_id: str | None = None, *, enabled_only: bool = False
    ) -> list[Endpoint]:
        sql = f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE deleted_ms IS NULL"
        params: list[object] = []
        if account_id is not None:
            sql += " AND account_id = %s"
            params.append(_text(account_id))
        if enabled_only:
            sql += " AND enabled"
        async with self._conn() as conn:
            cur = await conn.execute(sql + " ORDER BY id", params)
            rows = await cur.fetchall()
        return [endpoint_from_row(r, r[7]) for r in rows]

    async def update_endpoint(self, endpoint: Endpoint) -> Endpoint:
        async with self._conn() as conn:
            cur = await conn.execute(
                "UPDATE endpoints SET account_id = %s, url = %s, protocol = %s, receiver = %s,"
                " pswd = %s, batch_max = %s, retry_schedule = %b::double precision[],"
                " timeout_s = %s, max_in_flight = %s, enabled = %s, description_lang = %s,"
                " success_body_contains = %s, created_ms = %s"
                " WHERE id = %s AND deleted_ms IS NULL",
                (*_endpoint_params(endpoint), endpoint.id),
            )
        if cur.rowcount == 0:
            raise NotFound(f"endpoint {endpoint.id} does not exist")
        return endpoint

    async def delete_endpoint(self, endpoint_id: int, now_ms: int) -> bool:
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE endpoints SET deleted_ms = %s, enabled = false"
                " WHERE id = %s AND deleted_ms IS NULL",
                (now_ms, endpoint_id),
            )
            if cur.rowcount == 0:
                return False
            cur = await conn.execute(
                "UPDATE deliveries SET state = 'failed', next_attempt_ms = NULL,"
                " lease_until_ms = 0, updated_ms = %s"
                " WHERE endpoint_id = %s AND state = 'pending' RETURNING report_id",
                (now_ms, endpoint_id),
            )
            report_ids = sorted({r[0] for r in await cur.fetchall()})
            await self._refresh_reports(conn, report_ids)
        return True

    # -- ingest -----------------------------------------------------------------------

    async def _fan_out(
        self, conn: Conn, matched: Sequence[tuple[int, str]], now_ms: int
    ) -> frozenset[int]:
        """Create one pending delivery per enabled endpoint for each (report, account) and
        announce the work (in the caller's transaction)."""
        if not matched:
            return frozenset()
        ordered = sorted(matched)
        cur = await conn.execute(
            "SELECT dlrpush_fan_out(%b::bigint[], %b::text[], %s::bigint, %s::text)",
            ([r for r, _ in ordered], [a for _, a in ordered], now_ms, CHANNEL),
        )
        row = await cur.fetchone()
        return frozenset(int(e) for e in row[0]) if row else frozenset()

    async def _match_waiting(
        self, conn: Conn, key: LiteralString, values: list[Any], now_ms: int
    ) -> tuple[set[int], frozenset[int]]:
        """Match waiting reports (by msgid or report id) whose record is stored, fan them
        out and announce the work; all in the caller's transaction. Returns the ids of
        the reports matched and the endpoints that got work."""
        key_type: LiteralString = "text" if key == "msgid" else "bigint"
        cur = await conn.execute(_MATCH_WAITING_SQL.format(key=key, key_type=key_type), (values,))
        waiting = [(int(r[0]), str(r[1])) for r in await cur.fetchall()]
        endpoints = await self._fan_out(conn, waiting, now_ms)
        return {report_id for report_id, _ in waiting}, endpoints

    async def add_messages(self, messages: Sequence[Message], now_ms: int) -> IngestResult:
        if not messages:
            return IngestResult(accepted=0)
        cols: list[list[Any]] = [[] for _ in range(15)]
        for m in messages:
            row = (
                _text(m.msgid),
                _text(m.account_id),
                _text(m.phone),
                m.segments,
                _opt_text(m.uid),
                _text(m.batch_seq),
                m.request_time_ms if m.request_time_ms is not None else now_ms,
                _opt_text(m.unit_price),
                _text(m.currency),
                _text(m.access_number),
                _text(m.enrichment.country_number),
                _text(m.enrichment.region_code),
                _text(m.enrichment.mno_name),
                _text(m.mcc or m.enrichment.mcc),
                _text(m.mnc or m.enrichment.mnc),
            )
            for col, value in zip(cols, row, strict=True):
                col.append(value)
        msgids = sorted(set(cols[0]))
        async with self._conn() as conn:
            # The records are committed before waiting reports are looked for. A report
            # ingested concurrently either committed before our match statement starts
            # (we see it) or commits after our records did (its own insert, or its
            # re-check in add_reports, sees them). Matching inside the insert's
            # transaction would let the two miss each other and leave a report held.
            await conn.execute(_INSERT_MESSAGES_SQL, (now_ms, *cols))
            async with conn.transaction():
                matched, endpoints = await self._match_waiting(conn, "msgid", msgids, now_ms)
        return IngestResult(accepted=len(messages), endpoints=endpoints, matched=len(matched))

    async def add_reports(
        self,
        reports: Sequence[IncomingReport],
        now_ms: int,
        hold_ms: int,
        offer: Offer | None = None,
    ) -> IngestResult:
        if not reports:
            return IngestResult(accepted=0)
        # The offer is the dispatcher's own, read when the call is made (the freshest).
        request = (reports, now_ms, hold_ms, offer)
        if len(reports) >= COALESCE_BELOW:
            return (await self._add_report_requests([request]))[0]
        return await self._ingest.submit(request)

    async def _add_report_requests(self, requests: list[_ReportRequest]) -> list[IngestResult]:
        """Store the reports of one or more ingest requests in one call. Merged requests
        share the latest request's time (received, and the hold counted from it): they
        arrived within the call before them, a few milliseconds at most."""
        reports = [r for batch, _, _, _ in requests for r in batch]
        now_ms = max(now for _, now, _, _ in requests)
        hold_until = max(now + hold for _, now, hold, _ in requests)
        # Every request of one process passes the same offer (its dispatcher's), read as
        # the call is made. Only its newest entries go (see OFFER_SENT_MAX).
        offer = next((o for _, _, _, o in requests if o is not None), None) or {}
        takers = list(
            islice(
                ((ep, lim, lease) for ep, (lim, lease) in reversed(offer.items()) if lim > 0),
                OFFER_SENT_MAX,
            )
        )
        params = {
            "now": now_ms,
            "hold_until": hold_until,
            "msgid": [_text(r.msgid) for r in reports],
            "status": [_text(r.status) for r in reports],
            "error_code": [_opt_text(r.error_code) for r in reports],
            "description": [_opt_text(r.description) for r in reports],
            "receipt": [_opt_text(r.receipt) for r in reports],
            "report_time_ms": [r.report_time_ms for r in reports],
            "channel": CHANNEL,
            "offer_ep": [t[0] for t in takers],
            "offer_limit": [t[1] for t in takers],
            "offer_lease": [t[2] for t in takers],
        }
        async with self._conn() as conn:
            cur = await conn.execute(_ADD_REPORTS_SQL, params)
            row = await cur.fetchone() or ([], [], [], "[]")  # the function returns one row
        unmatched = {int(i) for i in row[0]}
        endpoints = frozenset(int(e) for e in row[1])
        ids = [int(i) for i in row[2]]
        # Each request gets the leased work of its own reports: a caller that went away
        # strands only its own (until the lease ends), as with one call per request.
        items = orjson.loads(row[3])
        owner: dict[int, int] = {}
        if items and len(requests) > 1:
            start = 0
            for k, (batch, _, _, _) in enumerate(requests):
                for report_id in ids[start : start + len(batch)]:
                    owner[report_id] = k
                start += len(batch)
        leased: list[dict[int, list[PushItem]]] = [{} for _ in requests]
        taken: dict[int, int] = {}
        for item in items:
            pushed = push_item_from_row(item[1:])
            leased[owner.get(pushed.report_id, 0)].setdefault(item[0], []).append(pushed)
            taken[item[0]] = taken.get(item[0], 0) + 1
        if offer:
            use_offer(offer, taken, endpoints)
        if unmatched:
            found, more_eps = await self._second_look(sorted(unmatched), now_ms)
            unmatched -= found
            endpoints |= more_eps
        out: list[IngestResult] = []
        start = 0
        for k, (batch, _, _, _) in enumerate(requests):
            own = ids[start : start + len(batch)]
            start += len(batch)
            matched = sum(1 for i in own if i not in unmatched)
            out.append(
                IngestResult(
                    accepted=len(batch), endpoints=endpoints, matched=matched, leased=leased[k]
                )
            )
            # The call's endpoints go to its first request only: each request wakes the
            # dispatcher for what it is told, and a thousand requests each naming
            # hundreds of endpoints would be that many wake-ups for the same work. The
            # NOTIFY reaches every dispatcher anyway.
            endpoints = frozenset()
        return out

    async def _second_look(self, held: list[int], now_ms: int) -> tuple[set[int], frozenset[int]]:
        """The other half of the race described in add_messages: a record committed
        after the insert looked for it, but before its matcher could see these reports,
        is found by this second look.

        The reports are committed by now, so nothing here may fail the requests: an
        error would make their senders (and the coalescer) store them again. The look
        changes only what is still held, so it is tried again; if it keeps failing the
        reports stay held, as they would without the race, and the log says so."""
        for attempt, delay in enumerate((*_SECOND_LOOK_DELAYS_S, None)):
            try:
                async with self._conn() as conn, conn.transaction():
                    return await self._match_waiting(conn, "id", held, now_ms)
            except Exception as exc:
                if delay is None:
                    log.warning(
                        "second look for %d held reports failed %d times (%s); they stay"
                        " held until a record for them is ingested or their window ends",
                        len(held),
                        attempt + 1,
                        exc,
                    )
                    break
                await asyncio.sleep(delay)
        return set(), frozenset()

    # -- dispatch ---------------------------------------------------------------------

    async def claim(
        self, endpoint_id: int, limit: int, now_ms: int, lease_ms: int
    ) -> list[PushItem]:
        if limit <= 0:
            return []
        async with self._conn() as conn:
            cur = await conn.execute(
                _CLAIM_SQL,
                {"ep": endpoint_id, "now": now_ms, "limit": limit, "lease": now_ms + lease_ms},
            )
            rows = await cur.fetchall()
        return [push_item_from_row(r) for r in rows]

    async def settle(self, outcomes: Sequence[PushOutcome], now_ms: int) -> None:
        if not outcomes:
            return
        # One row per delivery, the last settlement winning as it would when applied in
        # order; every push that carried it is still listed.
        last: dict[int, Settlement] = {}
        carried: list[tuple[int, int]] = []  # (delivery id, push ordinal)
        final: set[int] = set()
        for ordinal, (_, settlements) in enumerate(outcomes, 1):
            for st in settlements:
                last[st.delivery_id] = st
                carried.append((st.delivery_id, ordinal))
                # A retry leaves the report pending, as it was: nothing to rewrite.
                if st.state is not DeliveryState.PENDING:
                    final.add(st.report_id)
        ordered = [last[d] for d in sorted(last)]
        attempts = [o.attempt for o in outcomes]
        params = {
            "p_endpoint": [a.endpoint_id for a in attempts],
            "p_started": [a.started_ms for a in attempts],
            "p_latency": [float(a.latency_ms) for a in attempts],
            "p_status": [a.http_status for a in attempts],
            "p_outcome": [a.outcome.value for a in attempts],
            "p_snippet": [_text(a.snippet) for a in attempts],
            "p_items": [len(o.settlements) for o in outcomes],
            "c_delivery": [d for d, _ in carried],
            "c_push": [o for _, o in carried],
            "d_id": [st.delivery_id for st in ordered],
            "d_state": [st.state.value for st in ordered],
            "d_tries": [st.tries for st in ordered],
            "d_next": [st.next_attempt_ms for st in ordered],
            "now": now_ms,
            "final": sorted(final),
        }
        async with self._conn() as conn:
            await conn.execute(_SETTLE_SQL, params)

    async def _refresh_reports(self, conn: Conn, report_ids: Collection[int]) -> None:
        """Recompute the state of these reports (in a transaction)."""
        if not report_ids:
            return
        await conn.execute("SELECT dlrpush_refresh_reports(%b::bigint[])", (sorted(report_ids),))

    async def release(self, delivery_ids: Collection[int]) -> None:
        if not delivery_ids:
            return
        # One statement in autocommit, the setting taken in its FROM as the claim does:
        # psycopg's pipeline mode busy-polls the socket while the server works.
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE deliveries SET lease_until_ms = 0"
                " FROM (SELECT set_config('synchronous_commit', 'off', true)) AS cfg"
                " WHERE id = ANY(%b::bigint[])",
                (sorted(set(delivery_ids)),),
            )

    async def release_all_leases(self) -> int:
        async with self._conn() as conn, conn.transaction():
            await conn.execute(_BOOKKEEPING_SQL)
            cur = await conn.execute(
                "UPDATE deliveries SET lease_until_ms = 0"
                " WHERE state = 'pending' AND lease_until_ms > 0"
            )
        return cur.rowcount

    async def due_endpoints(self, now_ms: int) -> dict[int, int]:
        # One index seek per endpoint (min() over the partial index becomes a LIMIT 1
        # scan): a GROUP BY would walk the whole backlog.
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT e.id, d.next_ms FROM endpoints e"
                " CROSS JOIN LATERAL (SELECT min(next_attempt_ms) AS next_ms FROM deliveries"
                "   WHERE endpoint_id = e.id AND state = 'pending') d"
                " WHERE e.deleted_ms IS NULL AND e.enabled AND d.next_ms IS NOT NULL"
            )
            rows = await cur.fetchall()
        return {int(ep): int(nxt) for ep, nxt in rows}

    async def expire_held(self, now_ms: int) -> int:
        # SKIP LOCKED: a report being matched right now is left to its matcher, and
        # dispatchers in several processes share the sweep without waiting on each other.
        async with self._conn() as conn, conn.transaction():
            await conn.execute(_BOOKKEEPING_SQL)
            cur = await conn.execute(
                # hold_until_ms is cleared: reports_held_until keeps held reports only.
                "UPDATE reports SET state = 'unmatched', hold_until_ms = NULL"
                " WHERE id IN (SELECT id FROM reports WHERE state = 'held'"
                "   AND hold_until_ms <= %s ORDER BY id FOR UPDATE SKIP LOCKED)"
                " AND state = 'held'",
                (now_ms,),
            )
        return cur.rowcount

    # -- reading and operating --------------------------------------------------------

    async def list_reports(self, flt: ReportFilter, cursor: str | None, limit: int) -> Page:
        where, params = report_filter(flt, _DIALECT)
        if cursor is not None:
            where.append("r.id > %s")
            params.append(int(cursor))
        sql = _REPORT_VIEW_SQL
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.id LIMIT %s"
        async with self._conn() as conn:
            cur = await conn.execute(sql, (*params, limit + 1))
            rows = await cur.fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(
            tuple(_report_view_from_row(r) for r in rows), str(rows[-1][0]) if more else None
        )

    async def get_report(self, report_id: int) -> ReportView | None:
        async with self._conn() as conn:
            cur = await conn.execute(_REPORT_VIEW_SQL + " WHERE r.id = %s", (report_id,))
            row = await cur.fetchone()
        return _report_view_from_row(row) if row else None

    async def list_attempts(self, report_id: int) -> list[AttemptView]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT id, endpoint_id, started_ms, latency_ms, http_status, outcome, snippet"
                " FROM pushes WHERE id IN (SELECT unnest(push_ids) FROM deliveries"
                " WHERE report_id = %s) ORDER BY id",
                (report_id,),
            )
            rows = await cur.fetchall()
        return [
            AttemptView(r[0], report_id, r[1], r[2], r[3], r[4], AttemptOutcome(r[5]), r[6])
            for r in rows
        ]

    async def replay(self, flt: ReplayFilter, now_ms: int) -> ReplayResult:
        where, params = replay_filter(flt, _DIALECT)
        # A delivery being pushed right now settles by itself; resetting it would push
        # it twice at once.
        where.append("d.lease_until_ms <= %s")
        params.append(now_ms)
        async with self._conn() as conn, conn.transaction():
            # Share-lock the live endpoints first (in id order), for the reason given at
            # dlrpush_fan_out (migration 0006): a delete that committed is seen by the
            # next statement, one still to come waits and then fails what we re-queue.
            lock_sql = "SELECT id FROM endpoints WHERE deleted_ms IS NULL"
            lock_params: list[object] = []
            if flt.endpoint is not None:
                lock_sql += " AND id = %s"
                lock_params.append(flt.endpoint)
            await conn.execute(lock_sql + " ORDER BY id FOR SHARE", lock_params)
            cur = await conn.execute(
                (
                    "UPDATE deliveries SET state = 'pending', tries = 0, next_attempt_ms = %s,"
                    " lease_until_ms = 0, updated_ms = %s"
                    " WHERE id IN (SELECT d.id FROM deliveries d"
                    " JOIN reports r ON r.id = d.report_id"
                    " JOIN endpoints e ON e.id = d.endpoint_id AND e.deleted_ms IS NULL"
                    f" WHERE {' AND '.join(where)})"
                    " RETURNING report_id, endpoint_id"
                ),
                (now_ms, now_ms, *params),
            )
            rows = await cur.fetchall()
            report_ids = sorted({int(r[0]) for r in rows})
            endpoints = frozenset(int(r[1]) for r in rows)
            if report_ids:
                await conn.execute(_LOCK_REPORTS_SQL, (report_ids,))
                await conn.execute(
                    "UPDATE reports SET state = 'pending' WHERE id = ANY(%b::bigint[])",
                    (report_ids,),
                )
            await self._notify(conn, endpoints)
        return ReplayResult(queued=len(report_ids), endpoints=endpoints)

    async def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in ReportState}
        async with self._conn() as conn:
            cur = await conn.execute("SELECT state, count(*) FROM reports GROUP BY state")
            for state, n in await cur.fetchall():
                out[state] = int(n)
        return out

    # -- notifications ----------------------------------------------------------------

    async def _listen(self) -> AsyncIterator[frozenset[int]]:
        """LISTEN on a dedicated connection (a pooled one would be handed to others and
        lose the subscription); reconnect with backoff, end when the store closes.

        Notifications sent while disconnected are lost; the dispatcher's poll of
        ``due_endpoints`` finds that work, so a drop only costs latency.
        """
        delay = _RECONNECT_MIN_S
        while not self._closed.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url,
                    autocommit=True,
                    **{**self._connect_kwargs, "application_name": self._listen_app_name()},
                )
            except psycopg.Error as exc:
                log.warning("cannot connect to listen for work, retrying: %s", _unavailable(exc))
                await self._pause(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)
                continue
            try:
                await conn.execute(f"LISTEN {CHANNEL}")
                delay = _RECONNECT_MIN_S
                idle_since = time.monotonic()
                while not self._closed.is_set():
                    # Collected first and yielded after: the notifies() generator holds
                    # the connection's lock while it runs.
                    got = [
                        n.payload async for n in conn.notifies(timeout=_LISTEN_POLL_S, stop_after=1)
                    ]
                    if got:
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since > _LISTEN_PING_S:
                        await conn.execute("SELECT 1")
                        idle_since = time.monotonic()
                    for payload in got:
                        ids = _parse_payload(payload)
                        if ids:
                            yield ids
            except psycopg.Error as exc:
                if not self._closed.is_set():
                    log.warning("lost the work-notification connection, reconnecting: %s", exc)
            finally:
                await conn.close()
            if not self._closed.is_set():
                await self._pause(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)

    def _listen_app_name(self) -> str:
        given = conninfo_to_dict(self._url).get("application_name")
        return str(given) if given else "dlrpush-listen"

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the store is closed."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), seconds)
