"""PostgreSQL-only behaviour: several store objects (processes, in production) sharing one
schema. The generic contract runs one store at a time; these tests run two, each with its
own pool, against the same tables."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest

from conftest import needs_postgres
from dlrpush.errors import StoreUnavailable
from dlrpush.models import Account, Endpoint, IncomingReport, Message, ReportState
from dlrpush.store import postgres as postgres_store
from dlrpush.store.base import ReplayFilter, ReportFilter
from dlrpush.store.postgres import PostgresStore

pytestmark = [pytest.mark.postgres, needs_postgres]

T0 = 1_750_000_000_000
HOLD = 3_600_000
LEASE = 30_000


@pytest.fixture
async def two_stores(pg_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    a, b = PostgresStore(pg_url, pool_max=4), PostgresStore(pg_url, pool_max=4)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def _endpoint(store: PostgresStore) -> Endpoint:
    await store.create_account(Account("acme", "Acme", T0))
    return await store.create_endpoint(Endpoint(0, "acme", "http://127.0.0.1:9/cb", "ucloud"))


def _msgs(ids: list[str]) -> list[Message]:
    return [Message(m, "acme", "8618888888888") for m in ids]


def _reps(ids: list[str]) -> list[IncomingReport]:
    return [IncomingReport(m, "DELIVRD", T0) for m in ids]


async def test_concurrent_claimers_on_two_stores_never_share_a_delivery(
    pg_url: str, two_stores: tuple[PostgresStore, PostgresStore]
) -> None:
    a, b = two_stores
    ep = await _endpoint(a)
    ids = [f"m{i}" for i in range(2000)]
    await a.add_messages(_msgs(ids), T0)
    await a.add_reports(_reps(ids), T0, HOLD)
    with psycopg.connect(pg_url) as conn:
        everything = {r[0] for r in conn.execute("SELECT id FROM deliveries").fetchall()}
    assert len(everything) == 2000

    async def claimer(store: PostgresStore) -> list[int]:
        got: list[int] = []
        while items := await store.claim(ep.id, 50, T0, LEASE):
            assert len(items) <= 50
            got += [i.delivery_id for i in items]
        return got

    results = await asyncio.gather(claimer(a), claimer(b), claimer(a), claimer(b))
    claimed = [d for r in results for d in r]
    assert len(claimed) == len(set(claimed)), "a delivery was leased twice"
    assert set(claimed) == everything
    assert sum(1 for r in results if r) >= 2, "the claimers did not overlap in time"
    assert await a.claim(ep.id, 50, T0, LEASE) == []
    assert await b.claim(ep.id, 50, T0, LEASE) == []


async def test_expired_lease_is_taken_over_by_the_other_store(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two_stores
    assert not a.exclusive_dispatch  # a starting dispatcher must not release all leases
    ep = await _endpoint(a)
    await a.add_messages(_msgs(["x", "y"]), T0)
    await a.add_reports(_reps(["x", "y"]), T0, HOLD)
    held_by_a = await a.claim(ep.id, 10, T0, 1000)
    assert [i.msgid for i in held_by_a] == ["x", "y"]
    assert await b.claim(ep.id, 10, T0 + 999, 1000) == []  # A's lease is live
    taken = await b.claim(ep.id, 10, T0 + 1000, LEASE)  # A "died": its lease ran out
    assert [i.delivery_id for i in taken] == [i.delivery_id for i in held_by_a]
    assert await a.claim(ep.id, 10, T0 + 1001, LEASE) == []


async def _next_ids(queue: asyncio.Queue[frozenset[int]], wait_s: float) -> frozenset[int]:
    return await asyncio.wait_for(queue.get(), wait_s)


async def _collect(
    store: PostgresStore, queue: asyncio.Queue[frozenset[int]]
) -> asyncio.Task[None]:
    notifications = store.work_notifications()
    assert notifications is not None

    async def run() -> None:
        async for ids in notifications:
            queue.put_nowait(ids)

    return asyncio.create_task(run())


async def _until_notified(
    queue: asyncio.Queue[frozenset[int]],
    endpoint_id: int,
    make_work: Callable[[int], Awaitable[None]],
    deadline_s: float,
) -> None:
    """Create work (``make_work(round)``) until ``endpoint_id`` is announced: the LISTEN
    connection comes up in the background, so the first rounds may go unheard."""
    deadline = time.monotonic() + deadline_s
    n = 0
    while time.monotonic() < deadline:
        await make_work(n)
        n += 1
        try:
            while True:
                if endpoint_id in await _next_ids(queue, 0.5):
                    return
        except TimeoutError:
            continue
    raise AssertionError(f"endpoint {endpoint_id} was not announced within {deadline_s}s")


async def test_work_notifications_of_one_store_hear_ingest_by_the_other(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two_stores
    ep = await _endpoint(a)
    queue: asyncio.Queue[frozenset[int]] = asyncio.Queue()
    task = await _collect(b, queue)
    try:

        async def matched_report(n: int) -> None:
            await a.add_messages(_msgs([f"r{n}"]), T0)
            result = await a.add_reports(_reps([f"r{n}"]), T0, HOLD)
            assert result.endpoints == {ep.id}

        await _until_notified(queue, ep.id, matched_report, 10)

        # A held report announces nothing; its record landing later does.
        await a.add_reports(_reps(["late"]), T0, HOLD)
        with pytest.raises(TimeoutError):
            await _next_ids(queue, 0.5)
        await a.add_messages(_msgs(["late"]), T0)
        assert ep.id in await _next_ids(queue, 5)

        # So does a replay (of a delivery not in flight: its lease has run out).
        (item,) = await a.claim(ep.id, 1, T0, LEASE)
        replayed = await a.replay(ReplayFilter(msgids=(item.msgid,)), T0 + LEASE)
        assert replayed.queued == 1
        assert ep.id in await _next_ids(queue, 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_listener_reconnects_when_its_connection_is_killed(pg_url: str) -> None:
    app = f"dlrpush-test-{uuid.uuid4().hex[:8]}"
    a = PostgresStore(pg_url)
    b = PostgresStore(f"{pg_url}&application_name={app}")
    await a.open()
    await b.open()
    queue: asyncio.Queue[frozenset[int]] = asyncio.Queue()
    task = await _collect(b, queue)
    try:
        ep = await _endpoint(a)

        async def work(n: int) -> None:
            await a.add_messages(_msgs([f"k{n}"]), T0)
            await a.add_reports(_reps([f"k{n}"]), T0, HOLD)

        await _until_notified(queue, ep.id, work, 10)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND query LIKE 'LISTEN%%'",
                (app,),
            ).fetchall()
        assert killed == [(True,)]
        await _until_notified(queue, ep.id, lambda n: work(1000 + n), 15)
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await a.close()
        await b.close()


async def test_closing_the_store_ends_its_notification_iterator(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.open()
    notifications = store.work_notifications()
    assert notifications is not None
    consumer = asyncio.create_task(anext(notifications, None))
    await asyncio.sleep(0.3)
    await store.close()
    assert await asyncio.wait_for(consumer, 5) is None


async def test_reports_and_records_racing_in_two_stores_all_match(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    # The report and its submission record land at the same moment through different
    # processes; neither transaction can see the other's uncommitted row, and yet no
    # report may stay held.
    a, b = two_stores
    ep = await _endpoint(a)
    rounds = 150
    for n in range(rounds):
        ids = [f"race{n}-{i}" for i in range(3)]
        await asyncio.gather(a.add_reports(_reps(ids), T0, HOLD), b.add_messages(_msgs(ids), T0))
    counts = await a.counts()
    assert counts["held"] == 0
    assert counts["pending"] == rounds * 3
    page = await a.list_reports(ReportFilter(state=ReportState.PENDING), None, rounds * 3)
    assert all([d.endpoint_id for d in r.deliveries] == [ep.id] for r in page.items)


async def test_unreachable_server_is_a_plain_store_unavailable() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test", connect_timeout_s=2)
    with pytest.raises(StoreUnavailable, match=r"^postgresql: .*127\.0\.0\.1"):
        await store.open()
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.ping()


async def test_cursor_pull_misses_nothing_while_two_stores_ingest(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    # A client pulling /v1/reports keeps the last id it saw as its cursor. Ids must
    # therefore become visible in order, or a report committed late with a lower id
    # than one already seen would never be pulled.
    a, b = two_stores
    await _endpoint(a)
    finished = asyncio.Event()

    async def ingest(store: PostgresStore, tag: str) -> None:
        for n in range(60):
            await store.add_reports(_reps([f"{tag}{n}-{i}" for i in range(10)]), T0, HOLD)

    async def pull() -> list[int]:
        seen: list[int] = []
        cursor: str | None = None
        while True:
            was_finished = finished.is_set()
            page = await b.list_reports(ReportFilter(), cursor, 1000)
            seen += [r.id for r in page.items]
            if page.items:
                cursor = str(page.items[-1].id)
            elif was_finished:
                return seen

    async def ingest_all() -> None:
        await asyncio.gather(
            *(ingest(s, f"{s_i}{t}") for s_i, s in enumerate((a, b)) for t in "xyz")
        )
        finished.set()

    seen, _ = await asyncio.gather(pull(), ingest_all())
    everything = [r.id for r in (await a.list_reports(ReportFilter(), None, 10_000)).items]
    assert len(everything) == 2 * 3 * 60 * 10
    assert len(seen) == len(set(seen))
    assert sorted(seen) == everything


async def test_merged_requests_count_reports_the_second_look_matched(
    two_stores: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record that commits after a merged ingest call looked for it (its own matcher
    having looked before the reports were visible) is found by the second look, and
    each request is told its own report matched."""
    a, b = two_stores
    ep = await _endpoint(a)
    await a.add_messages(_msgs(["first"]), T0)
    look_again = a._second_look

    async def no_match(*args: object) -> tuple[set[int], frozenset[int]]:
        return set(), frozenset()

    async def record_lands_first(held: list[int], now_ms: int) -> tuple[set[int], frozenset[int]]:
        with monkeypatch.context() as m:
            m.setattr(b, "_match_waiting", no_match)
            await b.add_messages(_msgs(["late0", "late1"]), T0)
        return await look_again(held, now_ms)

    monkeypatch.setattr(a, "_second_look", record_lands_first)
    # "first" is alone in the first call; the other three wait for it and go together.
    results = await asyncio.gather(
        *(a.add_reports(_reps([m]), T0, HOLD) for m in ("first", "late0", "never", "late1"))
    )
    assert [r.matched for r in results] == [1, 1, 0, 1]
    claimed = await a.claim(ep.id, 10, T0, LEASE)
    assert sorted(i.msgid for i in claimed) == ["first", "late0", "late1"]


async def test_a_second_look_that_keeps_failing_stores_each_report_once(
    two_stores: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reports are committed before the second look: its failure must not make the
    merged requests run again (each report stored twice) nor fail them."""
    a, _ = two_stores
    await _endpoint(a)

    async def broken(*args: object) -> tuple[set[int], frozenset[int]]:
        raise psycopg.errors.InternalError("cache lookup failed for function")

    monkeypatch.setattr(a, "_match_waiting", broken)
    monkeypatch.setattr("dlrpush.store.postgres._SECOND_LOOK_DELAYS_S", (0.0, 0.0))
    ids = [f"u{i}" for i in range(6)]
    results = await asyncio.gather(*(a.add_reports(_reps([m]), T0, HOLD) for m in ids))
    assert [(r.accepted, r.matched) for r in results] == [(1, 0)] * len(ids)
    page = await a.list_reports(ReportFilter(), None, 100)
    assert sorted(v.msgid for v in page.items) == ids
    assert {v.state for v in page.items} == {ReportState.HELD}


async def test_an_ingest_sends_only_the_newest_part_of_a_big_offer(
    two_stores: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process with thousands of idle endpoints would send them all with every ingest;
    only the newest entries go. An endpoint left out gets its work the usual way: left
    to claim, named for a wake-up, and out of the offer until it has claimed."""
    monkeypatch.setattr(postgres_store, "OFFER_SENT_MAX", 2)
    store, _ = two_stores
    eps = []
    for name in ("a0", "a1", "a2"):
        await store.create_account(Account(name, name, T0))
        eps.append(await store.create_endpoint(Endpoint(0, name, "http://127.0.0.1:9/", "ucloud")))
    await store.add_messages(
        [Message(f"m-{a}", a, "8618888888888") for a in ("a0", "a1", "a2")], T0
    )
    offer = {ep.id: (5, LEASE) for ep in eps}  # eps[0] joined first: the oldest entry

    result = await store.add_reports(
        [IncomingReport(f"m-{a}", "DELIVRD", T0) for a in ("a0", "a1", "a2")], T0, HOLD, offer
    )

    assert set(result.leased) == {eps[1].id, eps[2].id}
    assert result.endpoints == {eps[0].id}
    assert offer == {eps[1].id: (4, LEASE), eps[2].id: (4, LEASE)}
    assert [i.msgid for i in await store.claim(eps[0].id, 10, T0, LEASE)] == ["m-a0"]
