"""The embedded SQLite store: one file in WAL mode, every call on one dedicated thread.

SQLite allows one writer at a time, so all work runs on a single thread with a single
connection (``serial.py``, most urgent call first); that thread is the serialisation
point and the event loop never blocks on disk. Batches are passed as one JSON array and
expanded inside SQLite, one statement step per batch (see ``open`` for why), and small
writes waiting for the thread share one commit (``_carry_out``). One dispatcher process
per file, held by a lock file beside the database: leases left by a
killed process are released when the next one starts.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import sys
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson

from dlrpush.errors import (
    ClaimedInPart,
    ConfigError,
    Conflict,
    NotFound,
    SettledInPart,
    StoreUnavailable,
)
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
from dlrpush.store.migrations import load_fresh_schema, load_migrations
from dlrpush.store.rows import (
    Dialect,
    endpoint_from_row,
    push_item_from_row,
    replay_filter,
    report_filter,
)
from dlrpush.store.serial import BACKGROUND, NORMAL, URGENT, SerialWorker

T = TypeVar("T")

SWITCH_INTERVAL_S = 0.001
# Every commit writes each page it changed to the WAL, one write() per page, and every
# checkpoint writes each page changed since the last one back to the database file and
# syncs it. The service's commits are many and small (a claim, a settle, an ingest
# array), so per-page costs dominate: 16 KB pages (4 KB is SQLite's default) mean a
# quarter of the write calls, and checkpointing every 64 MB of WAL instead of every 4 MB
# writes a page that every commit touches (an index's last leaf) back once per
# checkpoint instead of sixteen times. Together: `ucloud` on SQLite 3-31 % faster in
# three interleaved pairs, each variant alone faster in three more (docs/benchmarks.md).
# While the store is open the WAL file keeps the size it reached, about 64 MB.
PAGE_SIZE = 16384
WAL_CHECKPOINT_BYTES = 64 * 1024 * 1024
# Group commit (see _carry_out): how long a transaction keeps taking in waiting writes,
# and the most rows a write may carry to join one (a bigger one would hold back the
# answers of those before it). ALONE marks a write that never joins.
GROUP_BUDGET_S = 0.001
JOIN_ROWS = 50
ALONE = JOIN_ROWS + 1
# Rows a claim or settle handles before it looks whether another call waits. Every call
# runs alone on the store's thread at 10-15 µs a row: unchunked, a neighbour's claim of
# a few thousand retries held a healthy endpoint's claim up for 30-60 ms. A call that
# finds another waiting commits what it has and queues the rest behind it; with nobody
# waiting it goes on in the same transaction (docs/benchmarks.md).
CHUNK_ROWS = 400

_ENDPOINT_COLS = (
    "id, account_id, url, protocol, receiver, pswd, batch_max, retry_schedule, timeout_s,"
    " max_in_flight, enabled, description_lang, success_body_contains, created_ms"
)

# Each enabled endpoint with pending deliveries, and the earliest of their due times.
_DUE_SQL = """
SELECT id, next_ms FROM (
    SELECT e.id, (SELECT MIN(d.next_attempt_ms) FROM deliveries d
                  WHERE d.endpoint_id = e.id AND d.state = 'pending') AS next_ms
    FROM endpoints e WHERE e.deleted_ms IS NULL AND e.enabled = 1
) WHERE next_ms IS NOT NULL
"""

# Deliveries as push items (columns in push_item_from_row's order), for a claim and for
# what an ingest leased; read through _fetch, so either is one statement step.
_PUSH_ITEM_COLS = (
    "id, report_id, msgid, phone, segments, status, description, report_time_ms, uid,"
    " batch_seq, request_time_ms, unit_price, currency, access_number, country_number,"
    " region_code, mno_name, mcc, mnc, tries"
)
_PUSH_ITEMS_FROM = """
       d.id, d.report_id, r.msgid, m.phone, m.segments, r.status, r.description,
       r.report_time_ms, m.uid, m.batch_seq, m.request_time_ms, m.unit_price, m.currency,
       m.access_number, m.country_number, m.region_code, m.mno_name, m.mcc, m.mnc, d.tries
FROM deliveries d
JOIN reports r ON r.id = d.report_id
JOIN messages m ON m.msgid = r.msgid
"""
# The due deliveries of one endpoint.
_DUE_ITEMS_SQL = f"""
SELECT {_PUSH_ITEMS_FROM}
WHERE d.endpoint_id = ? AND d.state = 'pending' AND d.next_attempt_ms <= ?
  AND d.lease_until_ms <= ?
ORDER BY d.next_attempt_ms, d.id
LIMIT ?
"""

# A report's state is the least advanced of its deliveries; the JSON parameter lists
# the report ids to recompute.
_REPORT_STATE_SQL = """
UPDATE reports SET state = (
    SELECT CASE WHEN SUM(d.state = 'pending') > 0 THEN 'pending'
                WHEN SUM(d.state = 'failed') > 0 THEN 'failed'
                ELSE 'delivered' END
    FROM deliveries d WHERE d.report_id = reports.id)
FROM json_each(?) AS s
WHERE reports.id = s.value
"""

# Bulk writes take their rows as one JSON array and expand it inside SQLite, so a batch
# is one statement step whatever its size. New reports are numbered in array order.
_INSERT_REPORTS_SQL = """
INSERT INTO reports (msgid, account_id, status, error_code, description, receipt,
                     report_time_ms, received_ms, hold_until_ms, state)
SELECT j.value ->> 0, m.account_id, j.value ->> 1, j.value ->> 2,
       j.value ->> 3, j.value ->> 4, j.value ->> 5, :now,
       CASE WHEN m.account_id IS NULL THEN :hold_until END,
       CASE WHEN m.account_id IS NULL THEN 'held' ELSE 'pending' END
FROM json_each(:rows) AS j
LEFT JOIN messages m ON m.msgid = (j.value ->> 0)
ORDER BY j.key
"""

# How many of an ingest's reports matched, and how many deliveries each endpoint got
# (:made is the first new delivery id, NULL when none was made).
_INGEST_SUMMARY_SQL = """
SELECT (SELECT COUNT(*) FROM reports
        WHERE id BETWEEN :first AND :last AND state = 'pending'),
       (SELECT json_group_array(json_array(endpoint_id, n)) FROM (
            SELECT endpoint_id, COUNT(*) AS n FROM deliveries WHERE id >= :made
            GROUP BY endpoint_id))
"""

# Lease an ingest's new deliveries to the dispatcher beside it: for each endpoint of
# :takers, [endpoint id, limit, lease ms], its first ones in report order up to its limit.
_LEASE_NEW_SQL = """
UPDATE deliveries SET lease_until_ms = :now + p.lease
FROM (SELECT d.id, t.value ->> 1 AS lim, t.value ->> 2 AS lease,
             ROW_NUMBER() OVER (PARTITION BY d.endpoint_id ORDER BY d.id) AS n
      FROM deliveries d JOIN json_each(:takers) AS t ON d.endpoint_id = (t.value ->> 0)
      WHERE d.id BETWEEN :made AND :last_made) AS p
WHERE deliveries.id = p.id AND p.n <= p.lim
"""

# The push items of an ingest's leased deliveries, each led by its endpoint id.
_LEASED_ITEMS_SQL = f"""
SELECT d.endpoint_id, {_PUSH_ITEMS_FROM}
WHERE d.id BETWEEN ? AND ? AND d.lease_until_ms > 0
ORDER BY d.id LIMIT -1
"""

_INSERT_MESSAGES_SQL = """
INSERT OR IGNORE INTO messages (msgid, account_id, phone, segments, uid, batch_seq,
                                request_time_ms, unit_price, currency, access_number,
                                country_number, region_code, mno_name, mcc, mnc, created_ms)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
       value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11,
       value ->> 12, value ->> 13, value ->> 14, ?
FROM json_each(?) ORDER BY key
"""

# One pending delivery per enabled endpoint of the report's account, for the reports
# picked by the WHERE clause appended to it.
_FAN_OUT_SQL = """
INSERT INTO deliveries (report_id, endpoint_id, state, tries, next_attempt_ms,
                        lease_until_ms, updated_ms)
SELECT r.id, e.id, 'pending', 0, :now, 0, :now
FROM reports r
JOIN endpoints e ON e.account_id = r.account_id AND e.deleted_ms IS NULL AND e.enabled = 1
"""

# A settle's delivery update. Each right-hand side reads the row as it was before the
# update; a delivery failed meanwhile (its endpoint was deleted) stays failed, and the
# attempt is still logged. The rows come in groups that share an outcome, read once into
# a materialised table: with one JSON array per delivery, SQLite 3.40 parsed that array
# again for each field it read (docs/benchmarks.md).
_SETTLE_SET = """
UPDATE deliveries SET
    push_ids = json_insert(push_ids, '$[#]', s.push_id),
    attempts = attempts + 1,
    state = IIF(state = 'pending', s.new_state, state),
    tries = IIF(state = 'pending', s.new_tries, tries),
    next_attempt_ms = IIF(state = 'pending', s.next_ms, next_attempt_ms),
    lease_until_ms = IIF(state = 'pending', 0, lease_until_ms),
    updated_ms = IIF(state = 'pending', :now, updated_ms)
"""
# Requests that carried several deliveries: [push id, state, tries, next attempt,
# [delivery ids]], a group per request as a rule (38 % less than a row per delivery
# at 100 a request).
_SETTLE_BY_REQUEST_SQL = f"""
WITH g AS MATERIALIZED (
    SELECT value ->> 0 AS push_id, value ->> 1 AS new_state, value ->> 2 AS new_tries,
           value ->> 3 AS next_ms, value -> 4 AS ids
    FROM json_each(:groups))
{_SETTLE_SET}
FROM (SELECT g.push_id, g.new_state, g.new_tries, g.next_ms, d.value AS id
      FROM g, json_each(g.ids) AS d) AS s
WHERE deliveries.id = s.id
"""
# Requests of one delivery each: [state, tries, next attempt, [[delivery id, push id]]],
# a group per outcome (a group per request costs more than a row per delivery here;
# this, 12 % less).
_SETTLE_BY_OUTCOME_SQL = f"""
WITH g AS MATERIALIZED (
    SELECT value ->> 0 AS new_state, value ->> 1 AS new_tries, value ->> 2 AS next_ms,
           value -> 3 AS items
    FROM json_each(:groups))
{_SETTLE_SET}
FROM (SELECT g.new_state, g.new_tries, g.next_ms, d.value ->> 0 AS id, d.value ->> 1 AS push_id
      FROM g, json_each(g.items) AS d) AS s
WHERE deliveries.id = s.id
"""

_INSERT_PUSHES_SQL = """
INSERT INTO pushes (id, endpoint_id, started_ms, latency_ms, http_status, outcome, snippet,
                    items)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
       value ->> 6, value ->> 7
FROM json_each(?)
"""


class _WriteCall(Generic[T]):
    """A write transaction's body and the sync level its commit needs, as queued on the
    store's thread: a call the running one can recognise and take into its own
    transaction."""

    __slots__ = ("body", "level", "rows", "store", "urgent")

    def __init__(
        self,
        store: SqliteStore,
        level: str,
        body: Callable[[sqlite3.Connection], T],
        *,
        rows: int,
        urgent: bool,
    ) -> None:
        self.store = store
        self.level = level
        self.body = body
        self.rows = rows
        self.urgent = urgent

    def __call__(self) -> T:
        result: T = self.store._guarded(self.store._carry_out, self)
        return result


def _json_array(ids: Iterable[object]) -> str:
    return orjson.dumps(list(ids)).decode()


def _state_is(state: ReportState, ph: str) -> str:
    """Reports not delivered are indexed by state (``reports_open``, migration 0006); SQLite
    uses a partial index only when the query repeats its condition."""
    if state is ReportState.DELIVERED:
        return f"r.state = {ph}"  # most reports: found in id order
    return f"r.state = {ph} AND r.state <> 'delivered'"


_DIALECT = Dialect(
    placeholder="?",
    msgid_in="r.msgid IN (SELECT value FROM json_each(?))",
    msgid_list=_json_array,
    state_is=_state_is,
)


class SqliteStore:
    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        install_from_snapshot: bool = True,
        create: bool = True,
    ) -> None:
        self._path = path
        self._create = create
        self._sync_ack = synchronous.upper()
        self._sync_bookkeeping = "NORMAL" if self._sync_ack in ("FULL", "EXTRA") else self._sync_ack
        self._sync_now = self._sync_ack
        self._from_snapshot = install_from_snapshot
        self._worker = SerialWorker("dlrpush-sqlite")
        # Listings and counts that read many rows run on a connection and thread of
        # their own (WAL lets them read beside the writer): on the writer's thread,
        # counting 500,000 reports by state held every claim and ingest up for 60 ms.
        self._reader = SerialWorker("dlrpush-sqlite-read")
        self._rconn: sqlite3.Connection | None = None
        self._dispatch_lock: int | None = None
        self._conn: sqlite3.Connection | None = None

    # -- plumbing ---------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any, priority: int = NORMAL) -> T:
        return await self._worker.run(priority, partial(self._guarded, fn, *args))

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read that may touch many rows, given the connection to read with: the
        reading one, or the writer's for a store in memory (which a second connection
        would not see)."""
        if self._path == ":memory:":
            return await self._run(lambda: fn(self.conn))
        return await self._reader.run(NORMAL, partial(self._guarded_read, fn))

    def _guarded_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            if self._rconn is None:
                if self._conn is None:
                    raise StoreUnavailable("store is not open")
                conn = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False, timeout=10.0
                )
                conn.execute("PRAGMA query_only=1")
                conn.execute("PRAGMA cache_size=-8192")  # 8 MB: the writer has its own
                self._rconn = conn
            # One snapshot for all the read's statements (a page and its deliveries).
            self._rconn.execute("BEGIN")
            try:
                return fn(self._rconn)
            finally:
                self._rconn.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except sqlite3.OperationalError as exc:
            # "database is locked", disk I/O errors: the caller may retry; nothing
            # half-written survives because the transaction was rolled back.
            if self._conn is not None and self._conn.in_transaction:
                self._conn.rollback()
            raise StoreUnavailable(f"sqlite: {exc}") from exc

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable("store is not open")
        return self._conn

    def _connect(self) -> None:
        if self._path != ":memory:":
            if not self._create and not Path(self._path).is_file():
                raise ConfigError(
                    f"no SQLite store at {self._path}; start the service or run"
                    " `dlrpush migrate` to create one"
                )
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        # Only a new file takes the page size (an existing one keeps its own).
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._sync_ack}")
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("PRAGMA temp_store=MEMORY")
        # 32 MB of page cache: most of the service's memory. 64 MB put a draining
        # service near 150 MB; 16 MB cut the drain rate by a quarter (docs/benchmarks.md).
        conn.execute("PRAGMA cache_size=-32768")
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        conn.execute(f"PRAGMA wal_autocheckpoint={max(1000, WAL_CHECKPOINT_BYTES // page_size)}")
        self._conn = conn
        self._migrate()

    def _migrate(self) -> None:
        c = self.conn
        c.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)"
        )
        done = {row[0] for row in c.execute("SELECT version FROM schema_migrations")}
        migrations = load_migrations("sqlite")
        now = int(time.time() * 1000)
        if not done and self._from_snapshot:
            with self._txn(c):
                for statement in load_fresh_schema("sqlite"):
                    c.execute(statement)
                c.executemany(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    [(m.version, m.name, now) for m in migrations],
                )
            return
        for mig in migrations:
            if mig.version in done:
                continue
            with self._txn(c):
                for statement in mig.statements:
                    c.execute(statement)
                c.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)", (mig.version, mig.name, now)
                )

    @staticmethod
    @contextmanager
    def _txn(c: sqlite3.Connection) -> Iterator[None]:
        c.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    async def _write(
        self, body: Callable[[sqlite3.Connection], T], *, rows: int = 1, priority: int = NORMAL
    ) -> T:
        """A write whose commit is acknowledged to a client: synced as configured.
        ``rows``: about how many rows it writes (see JOIN_ROWS)."""
        call = _WriteCall(self, self._sync_ack, body, rows=rows, urgent=priority == URGENT)
        return await self._worker.run(priority, call)

    async def _bookkeeping(
        self, body: Callable[[sqlite3.Connection], T], *, rows: int = 1, priority: int = BACKGROUND
    ) -> T:
        """A dispatcher write (lease, outcome). Losing the last of these to a power cut
        only means a report is pushed again, so it skips the fsync; a process crash
        loses nothing either way in WAL mode, and the next synced commit covers it."""
        level = self._sync_bookkeeping
        call = _WriteCall(self, level, body, rows=rows, urgent=priority == URGENT)
        return await self._worker.run(priority, call)

    def _joins(self, level: str) -> Callable[[Callable[[], Any]], bool]:
        """Which waiting calls may join a transaction committed at ``level``: this
        store's small writes, not claims, that need no more syncing than it gives."""

        def accept(fn: Callable[[], Any]) -> bool:
            return (
                isinstance(fn, _WriteCall)
                and fn.store is self
                and fn.rows <= JOIN_ROWS
                and not fn.urgent
                and (fn.level == level or fn.level == self._sync_bookkeeping)
            )

        return accept

    def _carry_out(self, first: _WriteCall[T]) -> T:
        """Run ``first`` in a transaction, with the writes waiting behind it (group
        commit). A small write costs one commit more than its statements: writing every
        page it changed to the log, and for an acknowledged one a sync. While the
        thread is busy the small writes waiting for it share one commit, for as long as
        the transaction is younger than ``GROUP_BUDGET_S``. A claim (a push waits for
        it) neither joins nor is joined: its commit is never held back by other writes
        or by their sync (taking claims in made the healthy endpoint's p50 1.5 ms worse
        beside failing neighbours, docs/benchmarks.md). Each joined write runs in a
        savepoint: one that fails is undone alone and its caller gets its error; a
        failed commit fails all."""
        c = self.conn
        level = first.level
        if (
            not first.urgent
            and level != self._sync_ack
            and self._worker.waiting(self._joins(self._sync_ack))
        ):
            level = self._sync_ack  # an acknowledged write waits: one sync covers all
        if level != self._sync_now:
            c.execute(f"PRAGMA synchronous={level}")
            self._sync_now = level
        joined: list[list[Any]] = []
        started = time.perf_counter()
        c.execute("BEGIN IMMEDIATE")
        try:
            result = first.body(c)
            accept = self._joins(level)
            while not first.urgent and time.perf_counter() - started < GROUP_BUDGET_S:
                taken = self._worker.take(accept)
                if taken is None:
                    break
                call, fut = taken
                # Listed before it runs: whatever happens next, its caller hears of it.
                entry: list[Any] = [fut, None, False]
                joined.append(entry)
                c.execute("SAVEPOINT joined")
                try:
                    entry[1], entry[2] = call.body(c), True
                except sqlite3.OperationalError:
                    raise  # the connection's trouble, not the call's: fail them all
                except Exception as exc:
                    c.execute("ROLLBACK TO joined")
                    entry[1] = exc
                c.execute("RELEASE joined")
            c.execute("COMMIT")
        except BaseException as exc:
            if c.in_transaction:
                with suppress(sqlite3.Error):  # the callers must hear back regardless
                    c.execute("ROLLBACK")
            failure = (
                StoreUnavailable(f"sqlite: {exc}")
                if isinstance(exc, sqlite3.OperationalError)
                else exc
            )
            for fut, _, _ in joined:
                fut.set_exception(failure)
            raise
        for fut, value, ok in joined:
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
        return result

    @staticmethod
    def _next_id(c: sqlite3.Connection, table: str) -> int:
        row = c.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()
        return int(row[0]) + 1

    # -- lifecycle --------------------------------------------------------------------

    @property
    def exclusive_dispatch(self) -> bool:
        return True

    @property
    def settle_concurrency(self) -> int:
        return 1  # one thread writes: a second settle would only queue behind the first

    def work_notifications(self) -> AsyncIterator[frozenset[int]] | None:
        return None

    async def open(self) -> None:
        # Each statement step gives up the GIL and must win it back from the event
        # loop; with the default 5 ms switch interval a busy loop makes every step of
        # the store thread wait up to 5 ms. 1 ms keeps store calls near their
        # unloaded time (measured in docs/benchmarks.md) at a small cost to the loop.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        await self._run(self._connect)

    async def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        def _close_reader() -> None:
            if self._rconn is not None:
                self._rconn.close()
                self._rconn = None

        await self._reader.run(NORMAL, _close_reader)
        self._reader.shutdown()
        await self._run(_close)
        self._worker.shutdown()
        if self._dispatch_lock is not None:
            os.close(self._dispatch_lock)  # releases the lock
            self._dispatch_lock = None

    def _take_dispatch_lock(self) -> None:
        """Become the file's one dispatcher, or fail saying who is.

        A second dispatcher on the same file would release the first one's leases and
        push its work twice; an advisory lock on a file beside the database keeps it
        out, and the kernel drops the lock when the holder exits, even on ``kill -9``.
        """
        if self._path == ":memory:" or self._dispatch_lock is not None:
            return
        lock_path = self._path + ".dispatch.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"another dispatcher (pid {holder}) already pushes from {self._path};"
                " a SQLite store has exactly one (`serve`, or `serve --no-dispatch` plus"
                " one `worker`)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._dispatch_lock = fd

    async def housekeeping(self, now_ms: int) -> None:
        """Nothing to do: SQLite reuses freed pages by itself."""

    async def ping(self) -> None:
        await self._run(lambda: self.conn.execute("SELECT 1").fetchone())

    # -- accounts and endpoints -------------------------------------------------------

    async def create_account(self, account: Account) -> Account:
        def _do(c: sqlite3.Connection) -> Account:
            try:
                c.execute(
                    "INSERT INTO accounts (id, name, created_ms) VALUES (?, ?, ?)",
                    (account.id, account.name, account.created_ms),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"account {account.id!r} exists") from None
            return account

        return await self._write(_do)

    async def get_account(self, account_id: str) -> Account | None:
        def _do() -> Account | None:
            row = self.conn.execute(
                "SELECT id, name, created_ms FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
            return Account(*row) if row else None

        return await self._run(_do)

    async def missing_accounts(self, ids: Collection[str]) -> set[str]:
        wanted = set(ids)

        def _do() -> set[str]:
            rows = self.conn.execute(
                "SELECT id FROM accounts WHERE id IN (SELECT value FROM json_each(?))",
                (_json_array(wanted),),
            )
            return wanted - {r[0] for r in rows}

        return await self._run(_do)

    async def create_api_key(
        self, account_id: str, prefix: str, key_hash: str, now_ms: int
    ) -> ApiKey:
        def _do(c: sqlite3.Connection) -> ApiKey:
            if not c.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone():
                raise NotFound(f"account {account_id!r} does not exist")
            key_id = self._next_id(c, "api_keys")
            c.execute(
                "INSERT INTO api_keys (id, account_id, prefix, key_hash, created_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (key_id, account_id, prefix, key_hash, now_ms),
            )
            return ApiKey(key_id, account_id, prefix, now_ms)

        return await self._write(_do)

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        def _do() -> ApiKey | None:
            row = self.conn.execute(
                "SELECT id, account_id, prefix, created_ms, revoked_ms FROM api_keys"
                " WHERE key_hash = ? AND revoked_ms IS NULL",
                (key_hash,),
            ).fetchone()
            return ApiKey(*row) if row else None

        return await self._run(_do)

    async def list_api_keys(self, account_id: str) -> list[ApiKey]:
        def _do() -> list[ApiKey]:
            return [
                ApiKey(*row)
                for row in self.conn.execute(
                    "SELECT id, account_id, prefix, created_ms, revoked_ms FROM api_keys"
                    " WHERE account_id = ? ORDER BY id",
                    (account_id,),
                )
            ]

        return await self._run(_do)

    async def revoke_api_key(self, key_id: int, now_ms: int) -> bool:
        def _do(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE api_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
                (now_ms, key_id),
            )
            return cur.rowcount > 0

        return await self._write(_do)

    async def create_endpoint(self, endpoint: Endpoint) -> Endpoint:
        def _do(c: sqlite3.Connection) -> Endpoint:
            if not c.execute(
                "SELECT 1 FROM accounts WHERE id = ?", (endpoint.account_id,)
            ).fetchone():
                raise NotFound(f"account {endpoint.account_id!r} does not exist")
            new_id = self._next_id(c, "endpoints")
            ep = _replace_id(endpoint, new_id)
            c.execute(
                f"INSERT INTO endpoints ({_ENDPOINT_COLS}) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _endpoint_params(ep),
            )
            return ep

        return await self._write(_do)

    async def get_endpoint(self, endpoint_id: int) -> Endpoint | None:
        def _do() -> Endpoint | None:
            row = self.conn.execute(
                f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE id = ? AND deleted_ms IS NULL",
                (endpoint_id,),
            ).fetchone()
            return endpoint_from_row(row, orjson.loads(row[7])) if row else None

        return await self._run(_do)

    async def list_endpoints(
        self, account_id: str | None = None, *, enabled_only: bool = False
    ) -> list[Endpoint]:
        def _do() -> list[Endpoint]:
            sql = f"SELECT {_ENDPOINT_COLS} FROM endpoints WHERE deleted_ms IS NULL"
            params: list[object] = []
            if account_id is not None:
                sql += " AND account_id = ?"
                params.append(account_id)
            if enabled_only:
                sql += " AND enabled = 1"
            return [
                endpoint_from_row(r, orjson.loads(r[7]))
                for r in self.conn.execute(sql + " ORDER BY id", params)
            ]

        return await self._run(_do)

    async def endpoints_version(self) -> int:
        def _do() -> int:
            return int(self.conn.execute("SELECT version FROM endpoint_changes").fetchone()[0])

        return await self._run(_do)

    async def update_endpoint(self, endpoint: Endpoint) -> Endpoint:
        def _do(c: sqlite3.Connection) -> Endpoint:
            params = _endpoint_params(endpoint)
            cur = c.execute(
                "UPDATE endpoints SET account_id = ?, url = ?, protocol = ?, receiver = ?,"
                " pswd = ?, batch_max = ?, retry_schedule = ?, timeout_s = ?,"
                " max_in_flight = ?, enabled = ?, description_lang = ?,"
                " success_body_contains = ?, created_ms = ?"
                " WHERE id = ? AND deleted_ms IS NULL",
                (*params[1:], params[0]),
            )
            if cur.rowcount == 0:
                raise NotFound(f"endpoint {endpoint.id} does not exist")
            return endpoint

        return await self._write(_do)

    async def delete_endpoint(self, endpoint_id: int, now_ms: int) -> bool:
        def _do(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE endpoints SET deleted_ms = ?, enabled = 0"
                " WHERE id = ? AND deleted_ms IS NULL",
                (now_ms, endpoint_id),
            )
            if cur.rowcount == 0:
                return False
            report_ids = [
                r[0]
                for r in c.execute(
                    "UPDATE deliveries SET state = 'failed', next_attempt_ms = NULL,"
                    " lease_until_ms = 0, updated_ms = ?"
                    " WHERE endpoint_id = ? AND state = 'pending' RETURNING report_id",
                    (now_ms, endpoint_id),
                )
            ]
            c.execute(_REPORT_STATE_SQL, (_json_array(report_ids),))
            return True

        return await self._write(_do, rows=ALONE)

    # -- ingest -----------------------------------------------------------------------

    @staticmethod
    def _make_deliveries(c: sqlite3.Connection, where: str, params: Mapping[str, object]) -> range:
        """Create the pending deliveries of the reports ``where`` picks; returns their ids."""
        return SqliteStore._inserted_ids(
            c.execute(f"{_FAN_OUT_SQL} WHERE {where} ORDER BY r.id, e.id", params)
        )

    @staticmethod
    def _fan_out(c: sqlite3.Connection, where: str, params: Mapping[str, object]) -> frozenset[int]:
        """Create the pending deliveries of the reports ``where`` picks; returns the
        endpoints that got work."""
        made = SqliteStore._make_deliveries(c, where, params)
        if not made:
            return frozenset()
        rows = c.execute(
            "SELECT DISTINCT endpoint_id FROM deliveries WHERE id >= ?", (made.start,)
        ).fetchall()
        return frozenset(r[0] for r in rows)

    @staticmethod
    def _inserted_ids(cur: sqlite3.Cursor) -> range:
        """The rowids an ``INSERT … SELECT`` just gave its rows: SQLite numbers new rows
        on from the table's largest rowid, one by one, so they are consecutive. Read
        from the cursor, this costs no statement (each one is a GIL hand-off)."""
        n = cur.rowcount
        last = cur.lastrowid or 0
        return range(last - n + 1, last + 1) if n > 0 else range(0)

    async def add_messages(self, messages: Sequence[Message], now_ms: int) -> IngestResult:
        rows = _json_array(
            (
                m.msgid,
                m.account_id,
                m.phone,
                m.segments,
                m.uid,
                m.batch_seq,
                m.request_time_ms if m.request_time_ms is not None else now_ms,
                m.unit_price,
                m.currency,
                m.access_number,
                m.enrichment.country_number,
                m.enrichment.region_code,
                m.enrichment.mno_name,
                m.mcc or m.enrichment.mcc,
                m.mnc or m.enrichment.mnc,
            )
            for m in messages
        )

        def _do(c: sqlite3.Connection) -> IngestResult:
            # A msgid already known keeps its first record, as does the first of two
            # copies in one array (json_each runs in array order).
            c.execute(_INSERT_MESSAGES_SQL, (now_ms, rows))
            waiting = c.execute(
                "SELECT r.id, m.account_id FROM reports r JOIN messages m ON m.msgid = r.msgid"
                " WHERE r.state IN ('held', 'unmatched')"
                " AND r.msgid IN (SELECT value FROM json_each(?)) ORDER BY r.id",
                (_json_array({m.msgid for m in messages}),),
            ).fetchall()
            if not waiting:
                return IngestResult(accepted=len(messages))
            c.execute(
                "UPDATE reports SET state = 'pending', account_id = (w.value ->> 1),"
                " hold_until_ms = NULL FROM json_each(?) AS w WHERE reports.id = (w.value ->> 0)",
                (_json_array(waiting),),
            )
            endpoints = self._fan_out(
                c,
                "r.id IN (SELECT value FROM json_each(:ids))",
                {"now": now_ms, "ids": _json_array(rid for rid, _ in waiting)},
            )
            return IngestResult(accepted=len(messages), endpoints=endpoints, matched=len(waiting))

        return await self._write(_do, rows=len(messages))

    async def add_reports(
        self,
        reports: Sequence[IncomingReport],
        now_ms: int,
        hold_ms: int,
        offer: Offer | None = None,
    ) -> IngestResult:
        rows = orjson.dumps(
            [
                (r.msgid, r.status, r.error_code, r.description, r.receipt, r.report_time_ms)
                for r in reports
            ]
        ).decode()

        def _do(c: sqlite3.Connection) -> IngestResult:
            # Three statements, five when new work is leased: each is a hand-off of the
            # GIL that, beside a busy event loop, can wait a whole switch interval
            # (docs/benchmarks.md).
            ids = self._inserted_ids(
                c.execute(
                    _INSERT_REPORTS_SQL,
                    {"now": now_ms, "hold_until": now_ms + hold_ms, "rows": rows},
                )
            )
            span = {"now": now_ms, "first": ids.start, "last": ids.stop - 1}
            made = self._make_deliveries(
                c, "r.id BETWEEN :first AND :last AND r.state = 'pending'", span
            )
            matched, counts = c.execute(
                _INGEST_SUMMARY_SQL, {**span, "made": made.start if made else None}
            ).fetchone()
            wake: set[int] = set()
            takers: list[tuple[int, int, int]] = []
            taken: dict[int, int] = {}
            for ep, n in orjson.loads(counts or "[]"):
                # The offer is the dispatcher's own, read (and used) now, on this
                # thread, for the endpoints this ingest gave work only: an offer names
                # every idle endpoint, and a copy of it per ingest would cost as much as
                # the ingest of a report. Its values are tuples, replaced, never changed.
                limit, lease = offer.get(ep, (0, 0)) if offer is not None else (0, 0)
                if limit > 0:
                    takers.append((ep, limit, lease))
                    taken[ep] = min(n, limit)
                if n > limit:
                    wake.add(ep)
            if offer is not None:
                use_offer(offer, taken, wake)
            leased: dict[int, list[PushItem]] = {}
            if takers:
                c.execute(
                    _LEASE_NEW_SQL,
                    {
                        "now": now_ms,
                        "made": made.start,
                        "last_made": made.stop - 1,
                        "takers": _json_array(takers),
                    },
                )
                columns = "endpoint_id, " + _PUSH_ITEM_COLS
                for row in self._fetch(columns, _LEASED_ITEMS_SQL, (made.start, made.stop - 1)):
                    leased.setdefault(row[0], []).append(push_item_from_row(row[1:]))
            return IngestResult(
                accepted=len(reports),
                endpoints=frozenset(wake),
                matched=matched,
                leased=leased,
            )

        return await self._write(_do, rows=len(reports))

    # -- dispatch ---------------------------------------------------------------------

    async def claim(
        self, endpoint_id: int, limit: int, now_ms: int, lease_ms: int
    ) -> list[PushItem]:
        def _do(c: sqlite3.Connection, want: int) -> tuple[list[PushItem], bool]:
            items: list[PushItem] = []
            while True:
                n = min(CHUNK_ROWS, want - len(items))
                rows = self._fetch(
                    _PUSH_ITEM_COLS, _DUE_ITEMS_SQL, (endpoint_id, now_ms, now_ms, n)
                )
                if rows:
                    c.execute(
                        "UPDATE deliveries SET lease_until_ms = ?"
                        " WHERE id IN (SELECT value FROM json_each(?))",
                        (now_ms + lease_ms, _json_array(r[0] for r in rows)),
                    )
                items += [push_item_from_row(r) for r in rows]
                if len(rows) < n or len(items) >= want:
                    return items, False
                if self._worker.make_way():
                    return items, True  # make way; the rest is claimed in a new call

        items: list[PushItem] = []
        while True:
            try:
                got, cut = await self._bookkeeping(
                    partial(_do, want=limit - len(items)), priority=URGENT
                )
            except StoreUnavailable as exc:
                if items:
                    # Leased and committed: pushed by the caller, who must not take
                    # the short answer for "nothing more is due".
                    raise ClaimedInPart(items, str(exc)) from exc
                raise
            items += got
            if not cut:
                return items

    async def settle(self, outcomes: Sequence[PushOutcome], now_ms: int) -> None:
        def _do(c: sqlite3.Connection, todo: Sequence[PushOutcome]) -> int:
            """Record outcomes in chunks of about ``CHUNK_ROWS`` deliveries; returns
            how many were recorded (fewer than all when another call is waiting)."""
            done = 0
            while done < len(todo):
                chunk, rows = [], 0
                for outcome in todo[done:]:
                    chunk.append(outcome)
                    rows += len(outcome.settlements)
                    if rows >= CHUNK_ROWS:
                        break
                self._settle_chunk(c, chunk, now_ms)
                done += len(chunk)
                # Asked only with work left: a yes binds the thread's next pick.
                if done < len(todo) and self._worker.make_way():
                    break
            return done

        done = 0
        while done < len(outcomes):
            try:
                todo = outcomes[done:]
                rows = sum(len(o.settlements) for o in todo)
                done += await self._bookkeeping(partial(_do, todo=todo), rows=rows)
            except StoreUnavailable as exc:
                if done:
                    raise SettledInPart(done, str(exc)) from exc
                raise

    def _settle_chunk(
        self, c: sqlite3.Connection, outcomes: Sequence[PushOutcome], now_ms: int
    ) -> None:
        first = self._next_id(c, "pushes")
        pushes = []
        by_request = sum(len(o.settlements) for o in outcomes) >= 2 * len(outcomes)
        groups: dict[tuple[object, ...], list[object]] = {}
        final: set[int] = set()
        for push_id, (a, settlements) in enumerate(outcomes, first):
            pushes.append(
                (
                    push_id,
                    a.endpoint_id,
                    a.started_ms,
                    a.latency_ms,
                    a.http_status,
                    a.outcome.value,
                    a.snippet,
                    len(settlements),
                )
            )
            for st in settlements:
                outcome = (st.state.value, st.tries, st.next_attempt_ms)
                if by_request:
                    groups.setdefault((push_id, *outcome), []).append(st.delivery_id)
                else:
                    groups.setdefault(outcome, []).append((st.delivery_id, push_id))
                # A retry leaves the report pending, as it was: nothing to rewrite.
                if st.state is not DeliveryState.PENDING:
                    final.add(st.report_id)
        c.execute(_INSERT_PUSHES_SQL, (_json_array(pushes),))
        c.execute(
            _SETTLE_BY_REQUEST_SQL if by_request else _SETTLE_BY_OUTCOME_SQL,
            {"now": now_ms, "groups": _json_array([*key, ids] for key, ids in groups.items())},
        )
        if final:
            c.execute(_REPORT_STATE_SQL, (_json_array(final),))

    async def release(self, delivery_ids: Collection[int]) -> None:
        ids = _json_array(delivery_ids)

        def _do(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE deliveries SET lease_until_ms = 0"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (ids,),
            )

        await self._bookkeeping(_do, rows=len(delivery_ids))

    async def release_all_leases(self) -> int:
        # Only the file's dispatcher may do this: it is how a dispatcher starts.
        self._take_dispatch_lock()

        def _do(c: sqlite3.Connection) -> int:
            return c.execute(
                "UPDATE deliveries SET lease_until_ms = 0"
                " WHERE state = 'pending' AND lease_until_ms > 0"
            ).rowcount

        return await self._bookkeeping(_do, rows=ALONE)

    async def due_endpoints(self, now_ms: int) -> dict[int, int]:
        def _do() -> dict[int, int]:
            # One index seek per endpoint (a GROUP BY would walk the whole backlog), all
            # in one statement: with a statement per endpoint, every poll, an idle
            # service with 1,000 endpoints used 4.2-4.9 % of a core, 3.3-3.8 % so
            # (docs/benchmarks.md).
            return {int(ep): int(nxt) for ep, nxt in self._fetch("id, next_ms", _DUE_SQL, ())}

        return await self._run(_do)

    async def expire_held(self, now_ms: int) -> int:
        def _do(c: sqlite3.Connection) -> int:
            return c.execute(
                "UPDATE reports SET state = 'unmatched'"
                " WHERE state = 'held' AND hold_until_ms <= ?",
                (now_ms,),
            ).rowcount

        return await self._bookkeeping(_do, rows=ALONE)

    # -- reading and operating --------------------------------------------------------

    def _fetch(
        self,
        columns: str,
        sql: str,
        params: Sequence[object],
        conn: sqlite3.Connection | None = None,
    ) -> list[list[Any]]:
        """The rows of ``sql`` (which selects ``columns``, unqualified) in one statement
        step, however many there are: a claim or a page of reports read under load must
        not wait for the GIL once per row (see ``open``). With ``ORDER BY … LIMIT`` the
        subquery is not flattened and the rows keep its order; without, sort them."""
        (text,) = (
            (conn or self.conn)
            .execute(f"SELECT json_group_array(json_array({columns})) FROM ({sql})", params)
            .fetchone()
        )
        rows: list[list[Any]] = orjson.loads(text)
        return rows

    def _deliveries_of(
        self, report_ids: Sequence[int], conn: sqlite3.Connection | None = None
    ) -> tuple[dict[int, list[DeliveryView]], dict[int, int]]:
        """Each report's deliveries, and its attempts (the sum over them)."""
        out: dict[int, list[DeliveryView]] = {}
        attempts: dict[int, int] = {}
        cols = "report_id, endpoint_id, state, tries, next_attempt_ms, updated_ms, attempts"
        rows = self._fetch(
            cols,
            f"SELECT {cols} FROM deliveries WHERE report_id IN (SELECT value FROM json_each(?))",
            (_json_array(report_ids),),
            conn,
        )
        # Sorted here: the order of a JSON aggregate is not one SQLite promises.
        rows.sort(key=lambda r: (r[0], r[1]))
        for rid, ep, state, tries, nxt, upd, n in rows:
            out.setdefault(rid, []).append(DeliveryView(ep, DeliveryState(state), tries, nxt, upd))
            attempts[rid] = attempts.get(rid, 0) + n
        return out, attempts

    def _views(
        self, rows: Sequence[Sequence[Any]], conn: sqlite3.Connection | None = None
    ) -> list[ReportView]:
        deliveries, attempts = self._deliveries_of([r[0] for r in rows], conn)
        return [
            ReportView(
                id=r[0],
                msgid=r[1],
                account=r[2],
                status=r[3],
                error_code=r[4],
                description=r[5],
                report_time_ms=r[6],
                received_ms=r[7],
                state=ReportState(r[8]),
                attempts=attempts.get(r[0], 0),
                deliveries=tuple(deliveries.get(r[0], ())),
            )
            for r in rows
        ]

    _REPORT_COLS = (
        "id, msgid, account_id, status, error_code, description, report_time_ms, received_ms, state"
    )

    async def list_reports(self, flt: ReportFilter, cursor: str | None, limit: int) -> Page:
        def _do(c: sqlite3.Connection) -> Page:
            where, params = report_filter(flt, _DIALECT)
            if cursor is not None:
                where.append("r.id > ?")
                params.append(int(cursor))
            sql = f"SELECT {self._REPORT_COLS} FROM reports r"
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY id LIMIT ?"
            rows = self._fetch(self._REPORT_COLS, sql, (*params, limit + 1), c)
            rows.sort(key=lambda r: int(r[0]))
            more = len(rows) > limit
            rows = rows[:limit]
            views = self._views(rows, c)
            return Page(tuple(views), str(rows[-1][0]) if more else None)

        return await self._read(_do)

    async def get_report(self, report_id: int) -> ReportView | None:
        def _do() -> ReportView | None:
            row = self.conn.execute(
                f"SELECT {self._REPORT_COLS} FROM reports WHERE id = ?", (report_id,)
            ).fetchone()
            return self._views([row])[0] if row else None

        return await self._run(_do)

    async def list_attempts(self, report_id: int) -> list[AttemptView]:
        def _do() -> list[AttemptView]:
            return [
                AttemptView(r[0], report_id, r[1], r[2], r[3], r[4], AttemptOutcome(r[5]), r[6])
                for r in self.conn.execute(
                    "SELECT p.id, p.endpoint_id, p.started_ms, p.latency_ms, p.http_status,"
                    " p.outcome, p.snippet FROM pushes p WHERE p.id IN"
                    " (SELECT j.value FROM deliveries d, json_each(d.push_ids) j"
                    "  WHERE d.report_id = ?) ORDER BY p.id",
                    (report_id,),
                )
            ]

        return await self._run(_do)

    async def replay(self, flt: ReplayFilter, now_ms: int) -> ReplayResult:
        def _do(c: sqlite3.Connection) -> ReplayResult:
            where, params = replay_filter(flt, _DIALECT)
            # A delivery being pushed right now settles by itself; resetting it would
            # push it twice at once.
            where.append("d.lease_until_ms <= ?")
            params.append(now_ms)
            # Each statement below is one step, however many deliveries are replayed.
            (ids,) = c.execute(
                "SELECT json_group_array(d.id) FROM deliveries d"
                " JOIN reports r ON r.id = d.report_id"
                " JOIN endpoints e ON e.id = d.endpoint_id AND e.deleted_ms IS NULL"
                f" WHERE {' AND '.join(where)}",
                params,
            ).fetchone()
            picked = "id IN (SELECT value FROM json_each(?))"
            c.execute(
                "UPDATE deliveries SET state = 'pending', tries = 0, next_attempt_ms = ?,"
                f" lease_until_ms = 0, updated_ms = ? WHERE {picked}",
                (now_ms, now_ms, ids),
            )
            c.execute(
                "UPDATE reports SET state = 'pending'"
                f" WHERE id IN (SELECT report_id FROM deliveries WHERE {picked})",
                (ids,),
            )
            queued, endpoints = c.execute(
                "SELECT COUNT(DISTINCT report_id), json_group_array(DISTINCT endpoint_id)"
                f" FROM deliveries WHERE {picked}",
                (ids,),
            ).fetchone()
            return ReplayResult(queued=queued, endpoints=frozenset(orjson.loads(endpoints)))

        return await self._write(_do, rows=ALONE)

    async def counts(self) -> dict[str, int]:
        def _do(c: sqlite3.Connection) -> dict[str, int]:
            # One read transaction: the total and the states not delivered are one
            # snapshot. COUNT(*) walks the smallest index's pages; the rest reads
            # reports_open, which holds only the reports not delivered.
            (total,) = c.execute("SELECT COUNT(*) FROM reports").fetchone()
            out = {s.value: 0 for s in ReportState}
            for state, n in c.execute(
                "SELECT state, COUNT(*) FROM reports WHERE state <> 'delivered' GROUP BY state"
            ):
                out[state] = n
            out[ReportState.DELIVERED.value] = total - sum(out.values())
            return out

        return await self._read(_do)


def _replace_id(ep: Endpoint, new_id: int) -> Endpoint:
    from dataclasses import replace

    return replace(ep, id=new_id)


def _endpoint_params(ep: Endpoint) -> tuple[object, ...]:
    return (
        ep.id,
        ep.account_id,
        ep.url,
        ep.protocol,
        ep.credentials.receiver,
        ep.credentials.pswd,
        ep.batch_max,
        orjson.dumps(list(ep.retry_schedule_s)).decode(),
        ep.timeout_s,
        ep.max_in_flight,
        int(ep.enabled),
        ep.description_lang,
        ep.success_body_contains,
        ep.created_ms,
    )
