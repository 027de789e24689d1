"""Two measurements behind the SQLite store's design, small enough to rerun anywhere.

1. **A batch as one statement step.** Python's ``sqlite3`` releases the GIL around each
   ``sqlite3_step`` and must win it back afterwards. ``executemany`` over N rows is N
   steps; beside a thread that keeps the interpreter busy (the event loop, in the
   service) each one may wait a whole switch interval. The same rows passed as one JSON
   array and expanded by ``json_each`` are one step. Timed alone, beside a busy thread,
   and with the switch interval lowered to 1 ms as the service does.
2. **Building a record per report.** A frozen dataclass's ``__init__`` sets every field
   through ``object.__setattr__``; a named tuple is built in one call.
3. **The stores' hot calls**, one at a time on a fresh SQLite file and a fresh
   PostgreSQL schema with nothing else running: ingest in arrays of 1,000, claims of 400,
   settles of requests of 100 (the ``ucloud`` shape) and of one report (``innopaas``),
   and the last reports (about 2,000) ingested one per call and settled one request per
   call (a quiet customer's shape).
   Wall time per report, store thread hand-offs and round trips included; for
   PostgreSQL also the server's CPU per report.

    python -m bench.micro [--rows 1000] [--repeat 20] [--reports 20000] [--pg-url URL]

Prints markdown tables. Nothing is written to disk except a scratch SQLite file in a
temporary directory; the PostgreSQL schema is dropped afterwards (skipped when no server
answers at ``--pg-url``).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import threading
import time
import timeit
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import make_dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from bench.procs import DEFAULT_PG_URL, pg_available, pg_schema, postgres_cpu_seconds
from dlrpush.models import (
    Account,
    AttemptOutcome,
    AttemptRecord,
    DeliveryState,
    Endpoint,
    Enrichment,
    IncomingReport,
    Message,
    PushOutcome,
    Settlement,
)
from dlrpush.store.base import Store
from dlrpush.store.migrations import load_fresh_schema
from dlrpush.store.sqlite import SqliteStore

_COLUMNS = (
    "id, msgid, account_id, status, error_code, description, receipt, report_time_ms,"
    " received_ms, hold_until_ms, state"
)
_MANY = f"INSERT INTO reports ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_JSON = (
    f"INSERT INTO reports ({_COLUMNS}) SELECT "
    + ", ".join(f"value ->> {i}" for i in range(11))
    + " FROM json_each(?)"
)


def _rows(first: int, n: int) -> list[tuple[object, ...]]:
    t = 1_700_000_000_000
    rows: list[tuple[object, ...]] = []
    for i in range(first, first + n):
        # Scattered msgids, as real ones are: the msgid index takes random inserts.
        msgid = f"{i * 7919 % 10**12:020d}"
        rows.append((i, msgid, "acme", "DELIVRD", None, None, None, t, t, None, "pending"))
    return rows


@contextmanager
def _busy_thread() -> Iterator[None]:
    """A thread that never waits, as a loaded event loop."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def _insert_ms(path: Path, mode: str, rows: int, repeat: int) -> float:
    """Mean milliseconds to insert and commit ``rows`` reports in one transaction."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for statement in load_fresh_schema("sqlite"):
        conn.execute(statement)
    total = 0.0
    for r in range(repeat):
        batch = _rows(r * rows + 1, rows)
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        if mode == "executemany":
            conn.executemany(_MANY, batch)
        else:
            conn.execute(_JSON, (orjson.dumps(batch).decode(),))
        conn.execute("COMMIT")
        total += time.perf_counter() - t0
    conn.close()
    return total / repeat * 1000


def _run_in_thread(fn: Callable[[], float]) -> float:
    """The store runs its calls on a thread of its own; so does this."""
    out: list[float] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


class _Tuple(NamedTuple):
    a: int
    b: int
    c: str
    d: str
    e: int
    f: str
    g: str | None
    h: int


# The same eight fields as a frozen dataclass.
_Frozen: Any = make_dataclass(
    "_Frozen", list(_Tuple.__annotations__.items()), frozen=True, slots=True
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1000, help="rows per batch (default 1000)")
    ap.add_argument("--repeat", type=int, default=20, help="batches per figure (default 20)")
    ap.add_argument(
        "--reports", type=int, default=20_000, help="reports through the store (default 20000)"
    )
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL, help="server for the PostgreSQL figures")
    args = ap.parse_args(argv)

    print(
        f"`python -m bench.micro --rows {args.rows} --repeat {args.repeat}"
        f" --reports {args.reports}`\n"
    )
    print(f"| insert {args.rows} reports, one transaction | switch interval | ms |")
    print("| --- | ---: | ---: |")
    default_switch = sys.getswitchinterval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "micro.db"
        for busy, switch in ((False, default_switch), (True, default_switch), (True, 0.001)):
            sys.setswitchinterval(switch)
            for mode in ("executemany", "json_each"):
                # executemany beside a busy thread at 5 ms can take seconds a batch.
                repeat = 2 if (busy and mode == "executemany") else args.repeat
                with _busy_thread() if busy else _nullcontext():
                    ms = _run_in_thread(partial(_insert_ms, path, mode, args.rows, repeat))
                where = "beside a busy thread" if busy else "alone"
                print(f"| `{mode}`, {where} | {switch * 1000:g} ms | {ms:,.1f} |")
        sys.setswitchinterval(default_switch)

    values = (1, 2, "m", "DELIVRD", 3, "x", None, 4)
    n = 200_000
    frozen = timeit.timeit(lambda: _Frozen(*values), number=n) / n * 1e6
    named = timeit.timeit(lambda: _Tuple(*values), number=n) / n * 1e6
    print("\n| build one 8-field record | µs |")
    print("| --- | ---: |")
    print(f"| frozen dataclass (slots) | {frozen:.2f} |")
    print(f"| named tuple | {named:.2f} |")

    with tempfile.TemporaryDirectory() as tmp:
        calls = asyncio.run(_store_calls(SqliteStore(str(Path(tmp) / "calls.db")), args.reports))
    _print_calls("SQLite", args.reports, calls)
    why = pg_available(args.pg_url)
    if why is not None:
        print(f"\nPostgreSQL skipped: {why}")
        return
    from dlrpush.store.postgres import PostgresStore  # psycopg is an optional dependency

    with pg_schema(args.pg_url) as url:
        calls = asyncio.run(_store_calls(PostgresStore(url), args.reports, postgres_cpu_seconds))
    _print_calls("PostgreSQL", args.reports, calls)


def _print_calls(kind: str, n: int, calls: dict[str, tuple[float, float]]) -> None:
    server = kind == "PostgreSQL"
    print(
        f"\n| {kind} store call ({n:,} reports) | µs per report |" + (" server CPU µs |" * server)
    )
    print("| --- | ---: |" + (" ---: |" * server))
    for name, (us, cpu_us) in calls.items():
        print(f"| {name} | {us:.1f} |" + (f" {cpu_us:.1f} |" * server))


async def _store_calls(
    store: Store, n: int, server_cpu: Callable[[], float] = lambda: 0.0
) -> dict[str, tuple[float, float]]:
    """Wall time and server CPU per report of each hot store call, one at a time; every
    report goes through each call once, the settles split between the three shapes."""
    await store.open()
    spent: dict[str, list[float]] = {}
    half = n // 2
    alone = n - min(2000, n // 10)  # the last ones are ingested and settled one per call

    def timed(name: str) -> AbstractContextManager[None]:
        return _timed(spent.setdefault(name, [0.0, 0.0, 0.0]), server_cpu)

    try:
        now = 1_700_000_000_000
        await store.create_account(Account("acme", "Acme", now))
        ep = await store.create_endpoint(Endpoint(0, "acme", "http://127.0.0.1:9/", "ucloud"))
        msgids = [f"{i * 7919 % 10**12:020d}" for i in range(n)]
        enrichment = Enrichment("0086", "CN", "中国移动", "460", "2")
        for lo in range(0, n, 1000):
            await store.add_messages(
                [
                    Message(m, "acme", "+8613800138000", request_time_ms=now, enrichment=enrichment)
                    for m in msgids[lo : lo + 1000]
                ],
                now,
            )
        for lo in range(0, alone, 1000):
            batch = msgids[lo : min(lo + 1000, alone)]
            reports = [IncomingReport(m, "DELIVRD", now) for m in batch]
            with timed("add_reports (arrays of 1,000)"):
                await store.add_reports(reports, now, 60_000)
            spent["add_reports (arrays of 1,000)"][2] += len(reports)
        for m in msgids[alone:]:
            # What a platform posting each report as it comes costs.
            with timed("add_reports (one a call)"):
                await store.add_reports([IncomingReport(m, "DELIVRD", now)], now, 60_000)
            spent["add_reports (one a call)"][2] += 1
        attempt = AttemptRecord(ep.id, now, 1.5, 200, AttemptOutcome.DELIVERED, '{"code":0}')
        settled = 0
        while True:
            with timed("claim (400 at a time)"):
                items = await store.claim(ep.id, 400, now + 1, 60_000)
            if not items:
                break
            per_request = 100 if settled < half else 1
            outcomes = [
                PushOutcome(
                    attempt,
                    tuple(
                        Settlement(i.delivery_id, i.report_id, DeliveryState.DELIVERED, 1, None)
                        for i in items[lo : lo + per_request]
                    ),
                )
                for lo in range(0, len(items), per_request)
            ]
            if settled + len(items) > alone:
                # What a quiet customer costs: each outcome settled by a call of its own.
                for outcome in outcomes:
                    with timed("settle (requests of 1, one a call)"):
                        await store.settle([outcome], now)
                spent["settle (requests of 1, one a call)"][2] += len(items)
            else:
                with timed(f"settle (requests of {per_request})"):
                    await store.settle(outcomes, now)
                spent[f"settle (requests of {per_request})"][2] += len(items)
            settled += len(items)
    finally:
        await store.close()
    out: dict[str, tuple[float, float]] = {}
    for name, (seconds, cpu, count) in spent.items():
        per = count or n
        out[name] = (seconds / per * 1e6, cpu / per * 1e6)
    return out


@contextmanager
def _timed(acc: list[float], server_cpu: Callable[[], float]) -> Iterator[None]:
    cpu0, t0 = server_cpu(), time.perf_counter()
    yield
    acc[0] += time.perf_counter() - t0
    acc[1] += server_cpu() - cpu0


@contextmanager
def _nullcontext() -> Iterator[None]:
    yield


if __name__ == "__main__":
    main()
