"""The claim-ahead queue of one endpoint's runner, on a real SQLite store and a set clock.

A runner claims ahead of its free slots (one round, and at least CLAIM_AHEAD_MIN). What
it claims may then wait for a push; the lease has to cover that wait, and anything that
waited a whole timeout is handed back rather than pushed, so no push can outlive its
lease. A slot that frees up takes the next request from the queue at once.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Coroutine, Sequence
from pathlib import Path
from typing import Any

import pytest

from dlrpush.catalogue import DEFAULT_CATALOGUE
from dlrpush.dispatcher import CLAIM_AHEAD_MIN, DUE_SLACK_MS, Dispatcher, _Runner
from dlrpush.errors import ClaimedInPart, StoreUnavailable
from dlrpush.models import (
    Account,
    AttemptOutcome,
    Endpoint,
    IncomingReport,
    Message,
    PushItem,
    PushRequest,
    Verdict,
)
from dlrpush.settings import Settings
from dlrpush.store.sqlite import SqliteStore

T0 = 1_750_000_000_000
TIMEOUT_S = 0.5
MARGIN_S = 30.0
AHEAD = 1 + CLAIM_AHEAD_MIN  # what the first claim of a one-slot runner takes


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> float:
        return self.ms / 1000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    st = SqliteStore(str(tmp_path / "q.db"))
    await st.open()
    yield st
    await st.close()


async def _runner(store: SqliteStore, clock: Clock) -> tuple[_Runner, list[list[int]]]:
    """A runner for one endpoint (1 slot) with two more due reports than its first claim
    takes; its pushes are recorded, not sent, and it only moves when the test calls
    ``_fill``."""
    await store.create_account(Account("acme", "Acme", T0))
    ep = await store.create_endpoint(
        Endpoint(0, "acme", "http://127.0.0.1:9/", "innopaas", max_in_flight=1, timeout_s=TIMEOUT_S)
    )
    ids = [f"m{i}" for i in range(AHEAD + 2)]
    await store.add_messages([Message(m, "acme", "8618888888888") for m in ids], T0)
    await store.add_reports([IncomingReport(m, "DELIVRD", T0) for m in ids], T0, 60_000)
    settings = Settings(lease_margin_s=MARGIN_S)
    d = Dispatcher(store=store, settings=settings, catalogue=DEFAULT_CATALOGUE, clock=clock)
    runner = _Runner(d, ep)
    runner.task.cancel()  # driven by hand below
    pushed: list[list[int]] = []

    def record(items: Sequence[PushItem]) -> Coroutine[Any, Any, None]:
        pushed.append([i.delivery_id for i in items])  # noted when the push is started
        return asyncio.sleep(0)

    runner._send = record  # type: ignore[method-assign]
    return runner, pushed


def _leases(path: str) -> dict[int, int]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT id, lease_until_ms FROM deliveries").fetchall())


async def test_work_claimed_ahead_is_leased_for_a_wait_and_a_push(
    store: SqliteStore, tmp_path: Path
) -> None:
    clock = Clock()
    runner, pushed = await _runner(store, clock)

    await runner._fill()

    assert pushed == [[1]]  # one slot: one push, and the rest of the claim queued
    assert [item.delivery_id for _, item in runner.ready] == list(range(2, AHEAD + 1))
    until = T0 + DUE_SLACK_MS + int((2 * TIMEOUT_S + MARGIN_S) * 1000)
    leases = _leases(str(tmp_path / "q.db"))
    assert {i for i, lease in leases.items() if lease == until} == set(range(1, AHEAD + 1))
    assert leases[AHEAD + 1] == leases[AHEAD + 2] == 0


async def test_work_that_waited_a_whole_timeout_is_handed_back_not_pushed(
    store: SqliteStore,
) -> None:
    clock = Clock()
    runner, pushed = await _runner(store, clock)
    await runner._fill()  # pushes 1, queues the rest of its claim

    # The push of 1 took the whole timeout and a little more; its slot is free again.
    clock.ms = T0 + int(TIMEOUT_S * 1000) + 1
    runner.inflight = 0
    await runner._fill()

    # handed back, to be claimed afresh
    assert runner.d._to_release == list(range(2, AHEAD + 1))
    assert pushed == [[1], [AHEAD + 1]]  # the next push starts with fresh work instead


async def test_a_freed_slot_takes_the_next_request_from_the_queue_without_a_claim(
    store: SqliteStore,
) -> None:
    clock = Clock()
    runner, pushed = await _runner(store, clock)
    await runner._fill()
    claims = 0
    real_claim = store.claim

    async def counted(*args: Any) -> list[PushItem]:
        nonlocal claims
        claims += 1
        return await real_claim(*args)

    store.claim = counted  # type: ignore[method-assign,assignment]
    for _ in range(3):
        runner.inflight = 0  # the push answered: what _send does when it completes
        runner._send_ready(partial=False)

    assert pushed == [[1], [2], [3], [4]]
    assert claims == 0


async def test_a_batching_runner_lingers_for_a_burst_but_not_behind_a_backlog(
    store: SqliteStore,
) -> None:
    """The linger lets a trickle become one request; with full requests queued (or
    behind a backlog: the last claim was full) waiting would only idle the customer."""
    linger_s = 0.5
    clock = Clock()
    await store.create_account(Account("acme", "Acme", T0))
    ep = await store.create_endpoint(
        Endpoint(0, "acme", "http://127.0.0.1:9/", "ucloud", batch_max=10, max_in_flight=1)
    )
    ids = [f"m{i}" for i in range(45)]
    await store.add_messages([Message(m, "acme", "8618888888888") for m in ids], T0)
    await store.add_reports([IncomingReport(m, "DELIVRD", T0) for m in ids], T0, 60_000)
    settings = Settings(linger_ms=int(linger_s * 1000), lease_margin_s=MARGIN_S)
    d = Dispatcher(store=store, settings=settings, catalogue=DEFAULT_CATALOGUE, clock=clock)
    runner = _Runner(d, ep)
    runner.task.cancel()
    pushed: list[int] = []

    def record(items: Sequence[PushItem]) -> Coroutine[Any, Any, None]:
        pushed.append(len(items))
        return asyncio.sleep(0)

    runner._send = record  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    waits = []
    while sum(pushed) < len(ids):
        # The previous push is over: its slot is free, and one fill sends one request.
        runner.inflight = 0
        d.global_free = settings.max_in_flight_total
        t0 = loop.time()
        await runner._fill()
        waits.append(loop.time() - t0)

    assert pushed == [10, 10, 10, 10, 5]
    # The first fill lingers (nothing known yet); its claim queues more than a request,
    # so the fills behind it do not, until less than a request is left.
    assert waits[0] >= linger_s
    assert all(w < linger_s / 2 for w in waits[1:-1]), waits
    assert runner.backlogged is False


async def test_a_runner_whose_customer_is_slow_claims_only_what_its_slots_take(
    store: SqliteStore, tmp_path: Path
) -> None:
    """Work queued behind pushes that take seconds would only wait out its send-by time
    and be handed back; a slow customer's runner claims for its free slots alone."""
    clock = Clock()
    runner, pushed = await _runner(store, clock)
    runner.slow = True  # as _push leaves it after a timeout

    await runner._fill()

    assert pushed == [[1]]
    assert not runner.ready
    leases = _leases(str(tmp_path / "q.db"))
    assert [i for i, lease in leases.items() if lease] == [1]


async def test_a_freed_process_slot_goes_to_a_waiting_customer_first(
    store: SqliteStore,
) -> None:
    """With the process's slots all taken, a push that completes does not start its own
    endpoint's next request from the queue: the customer waiting for a slot gets it."""
    await store.create_account(Account("acme", "Acme", T0))
    eps = [
        await store.create_endpoint(
            Endpoint(0, "acme", f"http://127.0.0.1:9/{name}", "innopaas", max_in_flight=4)
        )
        for name in ("a", "b")
    ]
    ids = [f"m{i}" for i in range(3)]
    await store.add_messages([Message(m, "acme", "8618888888888") for m in ids], T0)
    await store.add_reports([IncomingReport(m, "DELIVRD", T0) for m in ids], T0, 60_000)
    settings = Settings(max_in_flight_total=1, lease_margin_s=MARGIN_S)
    d = Dispatcher(store=store, settings=settings, catalogue=DEFAULT_CATALOGUE, clock=Clock())
    posted: list[str] = []
    answers: list[asyncio.Future[None]] = []

    async def post(ep: Endpoint, request: PushRequest, protocol: Any) -> tuple[int, Verdict, str]:
        posted.append(ep.url)
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        answers.append(answer)
        await answer
        return 200, Verdict(True, AttemptOutcome.DELIVERED), ""

    d.post = post  # type: ignore[method-assign]
    a, b = _Runner(d, eps[0]), _Runner(d, eps[1])
    for runner in (a, b):
        runner.task.cancel()  # driven by hand below
    await a._fill()  # takes the process's only slot and queues the rest
    await b._fill()  # finds no slot: waits
    await asyncio.sleep(0)
    assert posted == [eps[0].url] and a.ready and b in d.waiting

    answers[0].set_result(None)  # a's push completes
    await asyncio.sleep(0.01)
    assert posted == [eps[0].url]  # a did not take the slot back
    await b._fill()  # b, woken by the freed slot
    await asyncio.sleep(0)
    assert posted == [eps[0].url, eps[1].url]
    pending = list(d._tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def _quiet_runner(
    store: SqliteStore, *, beside_api: bool = True
) -> tuple[_Runner, list[list[int]], list[int]]:
    """A runner for an endpoint with one due report; its pushes are recorded, not sent,
    and each claim it makes is counted (by the number of items it returned). Its
    dispatcher runs beside the API (``serve``) unless ``beside_api`` is False."""
    await store.create_account(Account("acme", "Acme", T0))
    ep = await store.create_endpoint(Endpoint(0, "acme", "http://127.0.0.1:9/", "innopaas"))
    await store.add_messages([Message(f"m{i}", "acme", "8618888888888") for i in range(3)], T0)
    await store.add_reports([IncomingReport("m0", "DELIVRD", T0)], T0, 60_000)
    d = Dispatcher(
        store=store,
        settings=Settings(),
        catalogue=DEFAULT_CATALOGUE,
        clock=Clock(),
        beside_api=beside_api,
    )
    runner = _Runner(d, ep)
    runner.task.cancel()
    pushed: list[list[int]] = []
    claims: list[int] = []

    def record(items: Sequence[PushItem]) -> Coroutine[Any, Any, None]:
        pushed.append([i.delivery_id for i in items])
        return asyncio.sleep(0)

    real_claim = store.claim

    async def counted(*args: Any) -> list[PushItem]:
        items = await real_claim(*args)
        claims.append(len(items))
        return items

    runner._send = record  # type: ignore[method-assign]
    store.claim = counted  # type: ignore[method-assign,assignment]
    return runner, pushed, claims


async def test_a_drained_runner_claims_again_only_when_new_work_may_be_due(
    store: SqliteStore,
) -> None:
    """A quiet customer's push frees its slot twice (answer in, outcome committed); with
    nothing new since a claim came back short, neither is worth a claim."""
    runner, pushed, claims = await _quiet_runner(store)
    await runner._fill()
    assert pushed == [[1]] and claims == [1]

    for _ in range(2):
        runner.nudge()  # what a completed push and a committed outcome do
        await runner._fill()
    assert claims == [1]

    # An ingest for the endpoint says so (Dispatcher.wake): the next fill claims it.
    await store.add_reports([IncomingReport("m1", "DELIVRD", T0)], T0, 60_000)
    runner.kick()
    await runner._fill()
    assert pushed == [[1], [2]] and claims == [1, 1]


async def test_news_that_comes_while_a_claim_runs_is_not_lost(store: SqliteStore) -> None:
    runner, pushed, _claims = await _quiet_runner(store)
    claim = store.claim

    async def racing(*args: Any) -> list[PushItem]:
        items = await claim(*args)
        # Committed after the claim looked, announced before it returned.
        await store.add_reports([IncomingReport("m1", "DELIVRD", T0)], T0, 60_000)
        runner.kick()
        return items

    store.claim = racing  # type: ignore[method-assign,assignment]
    await runner._fill()
    store.claim = claim  # type: ignore[method-assign]
    assert pushed == [[1]]

    runner.nudge()
    await runner._fill()
    assert pushed == [[1], [2]]


async def test_a_worker_that_hears_of_new_work_only_from_the_poll_looks_when_a_slot_frees(
    store: SqliteStore,
) -> None:
    """A ``worker`` on SQLite is told of nothing: another process ingests. A freed slot
    is its chance to find that work before the next poll, so it claims then."""
    runner, pushed, claims = await _quiet_runner(store, beside_api=False)
    await runner._fill()
    # Ingested by another process: no one tells this dispatcher.
    await store.add_reports([IncomingReport("m1", "DELIVRD", T0)], T0, 60_000)

    runner.nudge()  # the push of the first report completed
    await runner._fill()

    assert claims == [1, 1]
    assert pushed == [[1], [2]]


async def test_an_idle_runner_takes_new_work_from_the_ingest_without_a_claim(
    store: SqliteStore, tmp_path: Path
) -> None:
    """Once a claim came back short, the runner offers to take new work as it is
    ingested: the ingest leases it and the runner pushes it with no claim at all."""
    runner, pushed, claims = await _quiet_runner(store)
    d = runner.d
    d.runners[runner.ep.id] = runner
    assert d.offers == {}  # nothing known yet: the runner has to look first
    await runner._fill()
    assert pushed == [[1]] and claims == [1]
    room, lease_ms = d.offers[runner.ep.id]
    assert room >= runner.ep.max_in_flight and lease_ms == d.lease_ms(runner.ep)

    result = await store.add_reports([IncomingReport("m1", "DELIVRD", T0)], T0, 60_000, d.offers)
    d.hand(result.leased, T0)
    assert result.endpoints == frozenset()  # nothing left to wake anyone for
    assert pushed == [[1], [2]] and claims == [1]
    assert _leases(str(tmp_path / "q.db"))[2] == T0 + lease_ms
    # Still idle: the next ingest is handed over too.
    assert runner.ep.id in d.offers


async def test_a_runner_with_work_left_to_claim_takes_nothing_from_the_ingest(
    store: SqliteStore,
) -> None:
    """Handing new work to a runner with older due work in the store would push the
    new before the old."""
    clock = Clock()
    runner, _pushed = await _runner(store, clock)
    d = runner.d
    await runner._fill()  # a full claim: more may be due
    assert runner.backlogged and d.offers == {}


async def test_news_or_a_slow_customer_withdraws_the_offer(store: SqliteStore) -> None:
    """News means work may be due that no claim has seen (it goes first); a slow
    customer's queue would let handed work go stale."""
    runner, _pushed, _claims = await _quiet_runner(store)
    await runner._fill()
    assert runner.ep.id in runner.d.offers
    runner.kick()  # news: work may be due that no claim has seen
    assert runner.ep.id not in runner.d.offers
    await runner._fill()
    assert runner.ep.id in runner.d.offers
    runner.slow = True
    runner._review_offer()
    assert runner.ep.id not in runner.d.offers


async def test_a_claim_cut_short_by_the_store_pushes_its_part_and_is_not_taken_as_drained(
    store: SqliteStore,
) -> None:
    """What a failing claim leased is pushed; the runner knows more may be due, so it
    does not offer to take new work from the ingest ahead of it."""
    clock = Clock()
    runner, pushed = await _runner(store, clock)
    real_claim = store.claim
    failures: list[StoreUnavailable] = []  # the store fails from the second call on

    async def cut_short(*args: Any) -> list[PushItem]:
        if failures:
            raise failures.pop()
        part = await real_claim(args[0], 3, *args[2:])
        failures.append(StoreUnavailable("sqlite: disk I/O error"))
        raise ClaimedInPart(part, "sqlite: disk I/O error")

    store.claim = cut_short  # type: ignore[method-assign,assignment]
    with pytest.raises(StoreUnavailable):
        await runner._fill()

    assert pushed == [[1]] and [item.delivery_id for _, item in runner.ready] == [2, 3]
    assert runner.drained_at != runner.news
    runner._review_offer()
    assert runner.d.offers == {}


async def test_a_runner_that_reviews_its_offer_moves_to_the_offer_end(store: SqliteStore) -> None:
    """A store that sends only the newest part of a big offer then sends the endpoints
    busy last."""
    runner, _pushed, _claims = await _quiet_runner(store)
    await runner._fill()
    runner.d.offers[runner.ep.id + 1] = (1, 1)  # another endpoint joined since
    runner._review_offer()
    assert list(runner.d.offers)[-1] == runner.ep.id


async def test_work_handed_to_a_runner_that_is_gone_is_given_back(store: SqliteStore) -> None:
    runner, pushed, _claims = await _quiet_runner(store)
    d = runner.d
    d.runners[runner.ep.id] = runner
    await runner._fill()
    offer = dict(d.offers)
    runner.stop()  # the endpoint was changed or deleted meanwhile
    del d.runners[runner.ep.id]
    result = await store.add_reports([IncomingReport("m1", "DELIVRD", T0)], T0, 60_000, offer)
    d.hand(result.leased, T0)
    assert pushed == [[1]]
    assert d._to_release == [2]


async def test_a_runner_held_back_by_unrecorded_outcomes_has_them_written_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The settler lingers so outcomes finishing together share a write; a runner of
    one-report requests that may push no more until its outcomes are recorded cuts the
    linger short instead of idling through it."""
    import dlrpush.dispatcher as dispatcher_module
    from dlrpush.dispatcher import _Settler
    from dlrpush.models import AttemptRecord, PushOutcome

    monkeypatch.setattr(dispatcher_module, "SETTLE_LINGER_S", 30.0)
    written: list[int] = []

    class Store:
        settle_concurrency = 1

        async def settle(self, outcomes: Sequence[PushOutcome], now_ms: int) -> None:
            written.append(len(outcomes))

    settler = _Settler(Store(), lambda: T0)  # type: ignore[arg-type]
    settler.start()
    attempt = AttemptRecord(1, T0, 1.0, 200, AttemptOutcome.DELIVERED, "")
    first = settler.add(PushOutcome(attempt, ()))
    second = settler.add(PushOutcome(attempt, ()))
    await asyncio.sleep(0.05)
    assert written == [] and not first.done()  # lingering for more
    settler.hurry()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert written == [2]  # both in one write
    settler.hurry()  # closing lingers too
    await asyncio.wait_for(settler.close(), 5)


async def test_one_report_runners_may_leave_more_outcomes_unrecorded_than_batching_ones(
    store: SqliteStore,
) -> None:
    """A round of one-report pushes is over long before its outcomes are committed, so
    such a runner keeps pushing with three rounds unrecorded; a batching runner stops
    at one. Both stop there: that is what a killed process can push twice."""
    clock = Clock()
    single, pushed = await _runner(store, clock)  # innopaas, max_in_flight 1
    assert single.unsettled_max == 3
    await single._fill()  # claims, pushes one
    for unrecorded in range(1, 4):
        single.inflight, single.unsettled = 0, unrecorded
        single._send_ready(partial=True)
    assert len(pushed) == 4
    single.inflight, single.unsettled = 0, 4
    single._send_ready(partial=True)
    assert len(pushed) == 4

    ep = await store.create_endpoint(
        Endpoint(0, "acme", "http://127.0.0.1:9/", "ucloud", batch_max=10, max_in_flight=1)
    )
    batching = _Runner(single.d, ep)
    batching.task.cancel()
    batches: list[int] = []

    def record(items: Sequence[PushItem]) -> Coroutine[Any, Any, None]:
        batches.append(len(items))
        return asyncio.sleep(0)

    batching._send = record  # type: ignore[method-assign]
    batching.ready.extend((T0 + 60_000, single.ready[0][1]) for _ in range(3))
    assert batching.unsettled_max == 1
    batching.inflight, batching.unsettled = 0, 2
    batching._send_ready(partial=True)
    assert batches == []
    batching.unsettled = 1
    batching._send_ready(partial=True)
    assert batches == [3]


async def test_the_poll_reads_the_endpoints_again_only_when_they_changed(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each poll asks the store for its endpoints version; the list is read, and the
    runners matched to it, only when that moved."""
    from dataclasses import replace

    listed: list[int] = []
    list_endpoints = store.list_endpoints

    async def counting(*args: Any, **kw: Any) -> list[Endpoint]:
        got = await list_endpoints(*args, **kw)
        listed.append(len(got))
        return got

    monkeypatch.setattr(store, "list_endpoints", counting)
    await store.create_account(Account("acme", "Acme", T0))
    ep = await store.create_endpoint(Endpoint(0, "acme", "http://127.0.0.1:9/", "innopaas"))
    d = Dispatcher(store=store, settings=Settings(), catalogue=DEFAULT_CATALOGUE, clock=Clock())
    started: list[asyncio.Task[None]] = []
    try:
        await d._sync_endpoints()
        await d._sync_endpoints()
        await d._sync_endpoints()
        assert listed == [1] and set(d.runners) == {ep.id}
        moved = await store.update_endpoint(replace(ep, url="http://127.0.0.1:9/moved"))
        await d._sync_endpoints()
        assert listed == [1, 1] and d.runners[ep.id].ep == moved
        started = [r.task for r in d.runners.values()]
        await store.delete_endpoint(ep.id, T0)
        await d._sync_endpoints()
        assert listed == [1, 1, 0] and d.runners == {}
    finally:
        for runner in d.runners.values():
            runner.stop()
        tasks = [*started, *(r.task for r in d.runners.values())]
        await asyncio.gather(*tasks, return_exceptions=True)
