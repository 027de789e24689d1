"""Claim throughput of the PostgreSQL store: how fast one dispatcher can lease work.

Creates a throw-away schema, ingests ``--pending`` matched reports for one endpoint (so
that many deliveries are pending), then for each batch size claims repeatedly the way a
runner does: claim ``batch`` due deliveries under a lease, then settle them as delivered
(the settle is not timed, but it keeps the backlog realistic: leased rows that were never
settled would pile up at the head of the due index and every later claim would have to
step over them). Prints a markdown table of milliseconds per claim and claims per second
for one claimer; the schema is dropped at the end.

    python -m bench.claims_postgres [--url postgresql://…] [--pending 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from dataclasses import dataclass

import psycopg

from dlrpush.models import (
    Account,
    AttemptOutcome,
    AttemptRecord,
    DeliveryState,
    Endpoint,
    IncomingReport,
    Message,
    PushItem,
    PushOutcome,
    Settlement,
)
from dlrpush.store.postgres import PostgresStore

DEFAULT_URL = os.environ.get("DLRPUSH_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
T0 = 1_750_000_000_000
LEASE_MS = 30_000
CHUNK = 10_000


@dataclass
class Row:
    batch: int
    claims: int
    mean_ms: float
    p50_ms: float
    p99_ms: float
    claims_per_s: float
    deliveries_per_s: float


def _delivered(items: list[PushItem], endpoint_id: int) -> list[PushOutcome]:
    """One accepted request carrying ``items``."""
    attempt = AttemptRecord(endpoint_id, T0, 1.0, 200, AttemptOutcome.DELIVERED)
    delivered = DeliveryState.DELIVERED
    return [
        PushOutcome(
            attempt,
            tuple(
                Settlement(i.delivery_id, i.report_id, delivered, i.tries + 1, None) for i in items
            ),
        )
    ]


async def _seed(store: PostgresStore, pending: int) -> tuple[int, float]:
    """One endpoint with ``pending`` due deliveries; returns its id and reports/s ingested."""
    await store.create_account(Account("bench", "Bench", T0))
    ep = await store.create_endpoint(Endpoint(0, "bench", "http://127.0.0.1:9/cb", "ucloud"))
    for start in range(0, pending, CHUNK):
        ids = [f"m{n}" for n in range(start, min(start + CHUNK, pending))]
        await store.add_messages([Message(m, "bench", "8613800000000") for m in ids], T0)
    spent = 0.0
    for start in range(0, pending, CHUNK):
        ids = [f"m{n}" for n in range(start, min(start + CHUNK, pending))]
        t0 = time.perf_counter()
        await store.add_reports([IncomingReport(m, "DELIVRD", T0) for m in ids], T0, 60_000)
        spent += time.perf_counter() - t0
    return ep.id, pending / spent


async def _measure(store: PostgresStore, endpoint_id: int, batch: int, claims: int) -> Row:
    now = T0 + 1
    for _ in range(5):  # warm up: psycopg prepares a statement on its fifth run
        items = await store.claim(endpoint_id, batch, now, LEASE_MS)
        await store.settle(_delivered(items, endpoint_id), now)
    latencies: list[float] = []
    got = 0
    for _ in range(claims):
        t0 = time.perf_counter()
        items = await store.claim(endpoint_id, batch, now, LEASE_MS)
        latencies.append(time.perf_counter() - t0)
        if not items:
            break
        got += len(items)
        await store.settle(_delivered(items, endpoint_id), now)
    total = sum(latencies)
    ordered = sorted(latencies)
    return Row(
        batch=batch,
        claims=len(latencies),
        mean_ms=total / len(latencies) * 1000,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        claims_per_s=len(latencies) / total,
        deliveries_per_s=got / total,
    )


async def run(url: str, pending: int, batches: list[int], claims: int) -> tuple[list[Row], float]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    store = PostgresStore(f"{url}{sep}options=-csearch_path%3D{schema}", pool_max=4)
    try:
        await store.open()
        endpoint_id, ingest_rate = await _seed(store, pending)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"VACUUM ANALYZE {schema}.deliveries")
            conn.execute(f"VACUUM ANALYZE {schema}.reports")
        rows = []
        for batch in batches:
            # Never drain the backlog: the claim should always find a full batch.
            n = max(1, min(claims, (pending // 2) // (batch * len(batches))))
            rows.append(await _measure(store, endpoint_id, batch, n))
        return rows, ingest_rate
    finally:
        await store.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--batches", default="1,10,100")
    parser.add_argument("--claims", type=int, default=2000, help="claims per batch size")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    rows, ingest_rate = asyncio.run(run(args.url, args.pending, batches, args.claims))
    print(f"PostgreSQL claim, one claimer, {args.pending:,} pending deliveries on one endpoint")
    print(f"(seeding ingested {ingest_rate:,.0f} reports/s in calls of {CHUNK:,})\n")
    print("| batch | claims | ms/claim mean | p50 | p99 | claims/s | deliveries/s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r.batch} | {r.claims:,} | {r.mean_ms:.2f} | {r.p50_ms:.2f} | {r.p99_ms:.2f}"
            f" | {r.claims_per_s:,.0f} | {r.deliveries_per_s:,.0f} |"
        )


if __name__ == "__main__":
    main()
