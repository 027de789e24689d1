"""Does reading hold up writing? Ingest latency on SQLite while reports are counted.

Builds a SQLite store of ``--reports`` reports (nine in ten delivered), then, on a copy
of it for each run, ingests 300 reports one per call, 10 ms apart, while another task
counts the reports by state (what ``GET /v1/stats`` does) every 50 ms. Each run reads
either on the store's reading connection (as the service does) or on the writer's own
thread (as it did before); the two alternate for ``--rounds`` rounds. Prints a
markdown table of the ingest's latency per call.

    python -m bench.reads [--reports 500000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from dlrpush.models import (
    Account,
    AttemptOutcome,
    AttemptRecord,
    DeliveryState,
    Endpoint,
    IncomingReport,
    Message,
    PushOutcome,
    Settlement,
)
from dlrpush.store.sqlite import SqliteStore

T = TypeVar("T")
NOW = 1_700_000_000_000


class _ReadsOnWriter(SqliteStore):
    """The store as it was before its reading connection."""

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(lambda: fn(self.conn))


async def _build(path: Path, n: int) -> None:
    store = SqliteStore(str(path))
    await store.open()
    try:
        await store.create_account(Account("acme", "Acme", NOW))
        ep = await store.create_endpoint(Endpoint(0, "acme", "http://127.0.0.1:9/", "ucloud"))
        for lo in range(0, n, 5000):
            ids = [f"{i * 7919 % 10**12:020d}" for i in range(lo, min(lo + 5000, n))]
            await store.add_messages([Message(m, "acme", "8613800138000") for m in ids], NOW)
            await store.add_reports([IncomingReport(m, "DELIVRD", NOW) for m in ids], NOW, 60_000)
        attempt = AttemptRecord(ep.id, NOW, 1.5, 200, AttemptOutcome.DELIVERED, "ok")
        settled = 0
        while settled < n * 9 // 10:
            items = await store.claim(ep.id, 2000, NOW + 1, 60_000)
            if not items:
                break
            done = tuple(
                Settlement(i.delivery_id, i.report_id, DeliveryState.DELIVERED, 1, None)
                for i in items
            )
            await store.settle([PushOutcome(attempt, done)], NOW)
            settled += len(items)
    finally:
        await store.close()


async def _run(store: SqliteStore) -> tuple[list[float], int]:
    """Ingest latencies in ms, and how many counts ran meanwhile."""
    await store.open()
    stop = asyncio.Event()

    async def count() -> int:
        n = 0
        while not stop.is_set():
            await store.counts()
            n += 1
            await asyncio.sleep(0.05)
        return n

    counting = asyncio.ensure_future(count())
    latencies: list[float] = []
    try:
        for i in range(300):
            msgid = f"new{i}"
            await store.add_messages([Message(msgid, "acme", "8613800138000")], NOW)
            t0 = time.perf_counter()
            await store.add_reports([IncomingReport(msgid, "DELIVRD", NOW)], NOW, 60_000)
            latencies.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        counts = await counting
        await store.close()
    return sorted(latencies), counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.reads", description=__doc__.split("\n")[0])
    ap.add_argument("--reports", type=int, default=500_000, help="reports in the store")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each way, alternating")
    args = ap.parse_args(argv)
    print(f"`python -m bench.reads --reports {args.reports} --rounds {args.rounds}`\n")
    print("| reads on | ingest p50 ms | p99 ms | max ms | counts meanwhile |")
    print("| --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="dlrpush-reads-") as tmp:
        built = Path(tmp) / "built.db"
        asyncio.run(_build(built, args.reports))
        for _ in range(args.rounds):
            for name, cls in (("the writer's thread", _ReadsOnWriter), ("its own", SqliteStore)):
                copy = Path(tmp) / "run.db"
                shutil.copy(built, copy)  # closed cleanly: the log is checkpointed away
                lat, counts = asyncio.run(_run(cls(str(copy))))
                p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
                print(
                    f"| {name} | {lat[len(lat) // 2]:.1f} | {p99:.1f} | {lat[-1]:.1f} | {counts} |",
                    flush=True,
                )
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{copy}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
