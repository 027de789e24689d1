"""The store contract: what every backend must do, checked through the public interface."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from dlrpush.errors import Conflict, NotFound
from dlrpush.models import (
    Account,
    AttemptOutcome,
    AttemptRecord,
    Credentials,
    DeliveryState,
    Endpoint,
    Enrichment,
    IncomingReport,
    Message,
    PushItem,
    PushOutcome,
    ReportState,
    Settlement,
)
from dlrpush.store.base import ReplayFilter, ReportFilter, Store

T0 = 1_750_000_000_000
HOLD = 3_600_000
LEASE = 30_000


async def _setup(store: Store, *, endpoints: int = 1, account: str = "acme") -> list[Endpoint]:
    await store.create_account(Account(account, account.title(), T0))
    out = []
    for i in range(endpoints):
        out.append(
            await store.create_endpoint(
                Endpoint(
                    id=0,
                    account_id=account,
                    url=f"http://127.0.0.1:900{i}/cb",
                    protocol="ucloud" if i % 2 == 0 else "innopaas",
                    credentials=Credentials("r", "p"),
                )
            )
        )
    return out


def _msg(msgid: str, account: str = "acme", **kw: object) -> Message:
    return Message(
        msgid=msgid,
        account_id=account,
        phone="8618888888888",
        segments=2,
        uid="u-" + msgid,
        batch_seq="B1",
        request_time_ms=T0 - 5000,
        unit_price="0.05670",
        enrichment=Enrichment("0086", "CN", "中国移动", "460", "2"),
        **kw,  # type: ignore[arg-type]
    )


def _rep(msgid: str, status: str = "DELIVRD", t: int = T0) -> IncomingReport:
    return IncomingReport(msgid=msgid, status=status, report_time_ms=t)


def _settle(
    items: Sequence[PushItem], ep: Endpoint, state: DeliveryState, next_ms: int | None = None
) -> list[PushOutcome]:
    """The outcome of one request that carried ``items``."""
    ok = state is DeliveryState.DELIVERED
    attempt = AttemptRecord(
        endpoint_id=ep.id,
        started_ms=T0,
        latency_ms=1.5,
        http_status=200 if ok else 500,
        outcome=AttemptOutcome.DELIVERED if ok else AttemptOutcome.HTTP_ERROR,
        snippet="ok",
    )
    return [
        PushOutcome(
            attempt,
            tuple(
                Settlement(i.delivery_id, i.report_id, state, i.tries + 1, next_ms) for i in items
            ),
        )
    ]


async def test_accounts_are_unique_and_readable(store: Store) -> None:
    await store.create_account(Account("acme", "Acme", T0))
    with pytest.raises(Conflict):
        await store.create_account(Account("acme", "Other", T0))
    assert await store.get_account("acme") == Account("acme", "Acme", T0)
    assert await store.get_account("nope") is None
    assert await store.missing_accounts({"acme", "x", "y"}) == {"x", "y"}


async def test_endpoint_round_trip_update_and_delete(store: Store) -> None:
    (ep,) = await _setup(store)
    assert ep.id > 0
    got = await store.get_endpoint(ep.id)
    assert got == ep
    from dataclasses import replace

    changed = replace(ep, batch_max=7, retry_schedule_s=(2.0, 4.0), enabled=False)
    await store.update_endpoint(changed)
    assert await store.get_endpoint(ep.id) == changed
    assert await store.list_endpoints("acme", enabled_only=True) == []
    assert await store.delete_endpoint(ep.id, T0)
    assert await store.get_endpoint(ep.id) is None
    assert not await store.delete_endpoint(ep.id, T0)
    with pytest.raises(NotFound):
        await store.update_endpoint(changed)


async def test_the_endpoints_version_moves_with_every_endpoint_change_only(store: Store) -> None:
    """The dispatcher re-reads the endpoint list only when this number moved."""
    from dataclasses import replace

    seen = [await store.endpoints_version()]

    async def moved() -> bool:
        seen.append(await store.endpoints_version())
        return seen[-1] != seen[-2]

    (ep,) = await _setup(store)
    assert await moved()
    await store.add_messages([_msg("m1")], T0)
    await store.add_reports([_rep("m1")], T0, HOLD)
    (item,) = await store.claim(ep.id, 10, T0, LEASE)
    await store.settle(_settle([item], ep, DeliveryState.DELIVERED), T0)
    assert not await moved()
    await store.update_endpoint(replace(ep, enabled=False))
    assert await moved()
    await store.delete_endpoint(ep.id, T0)
    assert await moved()
    assert not await moved()


@pytest.mark.parametrize("per_request", [1, 3])
async def test_one_settle_records_each_requests_own_outcome(store: Store, per_request: int) -> None:
    """A settle of several requests, one report each or several (the SQLite store groups
    the rows differently for each shape), records every delivery's own outcome and the
    request that carried it."""
    (ep,) = await _setup(store)
    # Earlier traffic, so that delivery ids and request ids differ.
    await store.add_messages([_msg(f"x{i}") for i in range(3)], T0)
    await store.add_reports([_rep(f"x{i}") for i in range(3)], T0, HOLD)
    await store.settle(
        _settle(await store.claim(ep.id, 3, T0, LEASE), ep, DeliveryState.DELIVERED), T0
    )
    msgids = [f"m{i}" for i in range(4 * per_request)]
    await store.add_messages([_msg(m) for m in msgids], T0)
    await store.add_reports([_rep(m) for m in msgids], T0, HOLD)
    items = await store.claim(ep.id, 100, T0, LEASE)
    by_msgid = {i.msgid: i for i in items}
    requests = [
        [by_msgid[m] for m in msgids[k * per_request : (k + 1) * per_request]] for k in range(4)
    ]
    outcomes = [
        *_settle(requests[0], ep, DeliveryState.DELIVERED),
        *_settle(requests[1], ep, DeliveryState.PENDING, next_ms=T0 + 1000),
        *_settle(requests[2], ep, DeliveryState.FAILED),
        *_settle(requests[3], ep, DeliveryState.PENDING, next_ms=T0 + 2000),
    ]
    await store.settle(outcomes, T0 + 5)

    expected = {
        0: (ReportState.DELIVERED, DeliveryState.DELIVERED, None),
        1: (ReportState.PENDING, DeliveryState.PENDING, T0 + 1000),
        2: (ReportState.FAILED, DeliveryState.FAILED, None),
        3: (ReportState.PENDING, DeliveryState.PENDING, T0 + 2000),
    }
    carried: dict[int, set[int]] = {}
    for k, request in enumerate(requests):
        for item in request:
            view = await store.get_report(item.report_id)
            assert view is not None
            (delivery,) = view.deliveries
            report_state, state, next_ms = expected[k]
            assert (view.state, delivery.state, delivery.tries) == (report_state, state, 1)
            if next_ms is not None:
                assert delivery.next_attempt_ms == next_ms
            (attempt,) = await store.list_attempts(item.report_id)
            carried.setdefault(attempt.id, set()).add(item.report_id)
    # One logged attempt per request, each naming exactly the reports it carried.
    assert sorted(map(sorted, carried.values())) == sorted(
        sorted(i.report_id for i in request) for request in requests
    )


async def test_endpoint_for_unknown_account_is_refused(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.create_endpoint(Endpoint(0, "ghost", "http://x/", "ucloud"))


async def test_matched_report_gets_one_delivery_per_enabled_endpoint(store: Store) -> None:
    eps = await _setup(store, endpoints=3)
    from dataclasses import replace

    await store.update_endpoint(replace(eps[2], enabled=False))
    await store.add_messages([_msg("m1")], T0)
    result = await store.add_reports([_rep("m1")], T0, HOLD)
    assert result.accepted == 1 and result.matched == 1
    assert result.endpoints == {eps[0].id, eps[1].id}
    page = await store.list_reports(ReportFilter(), None, 10)
    (view,) = page.items
    assert view.state is ReportState.PENDING and view.account == "acme"
    assert sorted(d.endpoint_id for d in view.deliveries) == [eps[0].id, eps[1].id]


async def test_concurrent_ingest_requests_each_get_their_own_counts(store: Store) -> None:
    """Many small requests at once (a platform posting each report as it comes): each
    is told how many of its own reports found their record, and every report is kept."""
    (ep,) = await _setup(store)
    known = [f"k{i}" for i in range(30)]
    await store.add_messages([_msg(m) for m in known], T0)
    requests = []
    for i in range(30):
        # 1 to 3 reports, some of them for msgids with no record yet.
        mine = [_rep(known[i])] + [_rep(f"u{i}-{j}") for j in range(i % 3)]
        requests.append(mine)
    results = await asyncio.gather(*(store.add_reports(r, T0, HOLD) for r in requests))
    assert [(res.accepted, res.matched) for res in results] == [(len(r), 1) for r in requests]
    # Merged requests name their endpoints once (each named endpoint is woken).
    assert frozenset().union(*(res.endpoints for res in results)) == {ep.id}
    page = await store.list_reports(ReportFilter(), None, 200)
    states = {v.msgid: v.state for v in page.items}
    assert len(states) == sum(len(r) for r in requests)
    assert all(states[m] is ReportState.PENDING for m in known)
    held = [m for m in states if m.startswith("u")]
    assert held and all(states[m] is ReportState.HELD for m in held)
    assert len(await store.claim(ep.id, 100, T0, LEASE)) == len(known)


async def test_ingest_leases_new_work_to_an_offer_in_report_order(store: Store) -> None:
    """A dispatcher beside the API offers to take new work for its idle endpoints: the
    ingest leases that work up to each endpoint's limit and hands it back as push items
    (the same a claim would give); the rest is left to claim, and only endpoints with
    work left are named for a wake-up."""
    ep0, ep1 = await _setup(store, endpoints=2)
    (other,) = await _setup(store, account="zeta")
    await store.add_messages([_msg(f"m{i}") for i in range(6)], T0)
    reports = [_rep(f"m{i}") for i in range(5)] + [_rep("nobody")]
    offer = {ep0.id: (3, LEASE), other.id: (10, LEASE)}
    result = await store.add_reports(reports, T0, HOLD, offer)
    assert (result.accepted, result.matched) == (6, 5)
    assert set(result.leased) == {ep0.id}  # zeta got no work from this ingest
    handed = result.leased[ep0.id]
    assert [i.msgid for i in handed] == ["m0", "m1", "m2"]
    assert result.endpoints == {ep0.id, ep1.id}
    # The store takes from the offer what it used: ep0 has work left to claim, which
    # must go before anything newer, so it leaves the offer until it claimed.
    assert offer == {other.id: (10, LEASE)}
    # Leased: no claim gets them while the lease lasts; the others are claimable.
    assert [i.msgid for i in await store.claim(ep0.id, 10, T0, LEASE)] == ["m3", "m4"]
    assert len(await store.claim(ep1.id, 10, T0, LEASE)) == 5
    # The lease runs out like a claim's (the process that took them died).
    again = await store.claim(ep0.id, 10, T0 + LEASE + 1, LEASE)
    by_id = {i.delivery_id: i for i in again}
    assert len(by_id) == 5
    assert all(by_id[i.delivery_id] == i for i in handed)  # everything a protocol needs
    # Settled like claimed work.
    await store.settle(_settle(handed, ep0, DeliveryState.DELIVERED), T0 + 1)
    view = (await store.list_reports(ReportFilter(msgid="m0"), None, 10)).items[0]
    states = {d.endpoint_id: d.state for d in view.deliveries}
    assert states == {ep0.id: DeliveryState.DELIVERED, ep1.id: DeliveryState.PENDING}
    # Room for all: nothing is left to claim, and no endpoint needs waking.
    offer = {ep0.id: (10, LEASE), ep1.id: (1, LEASE)}
    result = await store.add_reports([_rep("m5")], T0 + 2, HOLD, offer)
    assert result.endpoints == frozenset()
    assert offer == {ep0.id: (9, LEASE)}  # ep1 has no room left
    assert {ep: [i.msgid for i in items] for ep, items in result.leased.items()} == {
        ep0.id: ["m5"],
        ep1.id: ["m5"],
    }
    assert await store.claim(ep0.id, 10, T0 + 3, LEASE) == []


async def test_concurrent_ingests_each_get_the_leased_work_of_their_own_reports(
    store: Store,
) -> None:
    """Requests merged into one store call (PostgreSQL) each get the leased work of their
    own reports, so a caller that goes away strands only its own; and the offer they
    share is used up across them, never leasing past its limit."""
    (ep,) = await _setup(store)
    known = [f"k{i}" for i in range(30)]
    await store.add_messages([_msg(m) for m in known], T0)
    offer = {ep.id: (20, LEASE)}  # one dispatcher's offer, shared by its requests
    results = await asyncio.gather(*(store.add_reports([_rep(m)], T0, HOLD, offer) for m in known))
    leased_msgids = []
    for m, res in zip(known, results, strict=True):
        mine = [i.msgid for items in res.leased.values() for i in items]
        assert mine in ([], [m])
        leased_msgids += mine
    assert len(leased_msgids) == 20  # the limit held across the requests
    assert ep.id not in offer  # work was left to claim: a claim goes first now
    # What was not leased is claimable, and nothing is claimable twice.
    claimed = [i.msgid for i in await store.claim(ep.id, 100, T0, LEASE)]
    assert sorted(claimed + leased_msgids) == sorted(known)


async def test_claim_returns_everything_a_protocol_needs(store: Store) -> None:
    (ep,) = await _setup(store)
    await store.add_messages([_msg("m1")], T0)
    await store.add_reports([_rep("m1", "MSBLACK", T0 + 7)], T0, HOLD)
    (item,) = await store.claim(ep.id, 10, T0, LEASE)
    assert item.msgid == "m1" and item.phone == "8618888888888" and item.segments == 2
    assert item.status == "MSBLACK" and item.report_time_ms == T0 + 7
    assert item.uid == "u-m1" and item.batch_seq == "B1" and item.unit_price == "0.05670"
    assert item.request_time_ms == T0 - 5000 and item.currency == "CNY"
    assert item.enrichment == Enrichment("0086", "CN", "中国移动", "460", "2")
    assert item.tries == 0


async def test_claim_leases_respects_limit_order_and_due_time(store: Store) -> None:
    (ep,) = await _setup(store)
    await store.add_messages([_msg(f"m{i}") for i in range(5)], T0)
    await store.add_reports([_rep(f"m{i}") for i in range(5)], T0, HOLD)
    first = await store.claim(ep.id, 3, T0, LEASE)
    assert [i.msgid for i in first] == ["m0", "m1", "m2"]
    second = await store.claim(ep.id, 10, T0, LEASE)
    assert [i.msgid for i in second] == ["m3", "m4"]
    assert await store.claim(ep.id, 10, T0 + 1, LEASE) == []
    # An expired lease (a worker died) makes the work claimable again.
    again = await store.claim(ep.id, 10, T0 + LEASE + 1, LEASE)
    assert sorted(i.msgid for i in again) == [f"m{i}" for i in range(5)]
    # Work not yet due is not claimed.
    await store.settle(_settle(again, ep, DeliveryState.PENDING, T0 + 99_999), T0 + LEASE + 2)
    assert await store.claim(ep.id, 10, T0 + 99_998, LEASE) == []
    assert len(await store.claim(ep.id, 10, T0 + 99_999, LEASE)) == 5


async def test_release_gives_back_leases(store: Store) -> None:
    (ep,) = await _setup(store)
    await store.add_messages([_msg("a"), _msg("b")], T0)
    await store.add_reports([_rep("a"), _rep("b")], T0, HOLD)
    items = await store.claim(ep.id, 10, T0, LEASE)
    await store.release([items[0].delivery_id])
    assert [i.msgid for i in await store.claim(ep.id, 10, T0, LEASE)] == ["a"]
    assert await store.release_all_leases() == 2
    assert len(await store.claim(ep.id, 10, T0, LEASE)) == 2


async def test_settle_records_attempts_and_report_state(store: Store) -> None:
    (ep,) = await _setup(store)
    await store.add_messages([_msg("ok"), _msg("retry"), _msg("bad")], T0)
    await store.add_reports([_rep("ok"), _rep("retry"), _rep("bad")], T0, HOLD)
    items = {i.msgid: i for i in await store.claim(ep.id, 10, T0, LEASE)}
    await store.settle(
        _settle([items["ok"]], ep, DeliveryState.DELIVERED)
        + _settle([items["retry"]], ep, DeliveryState.PENDING, T0 + 1000)
        + _settle([items["bad"]], ep, DeliveryState.FAILED),
        T0 + 10,
    )
    by_msgid = {r.msgid: r for r in (await store.list_reports(ReportFilter(), None, 10)).items}
    assert by_msgid["ok"].state is ReportState.DELIVERED
    assert by_msgid["retry"].state is ReportState.PENDING
    assert by_msgid["bad"].state is ReportState.FAILED
    assert all(r.attempts == 1 for r in by_msgid.values())
    (attempt,) = await store.list_attempts(by_msgid["bad"].id)
    assert attempt.http_status == 500 and attempt.outcome is AttemptOutcome.HTTP_ERROR
    assert attempt.endpoint_id == ep.id and attempt.latency_ms == 1.5
    (retry_item,) = await store.claim(ep.id, 10, T0 + 1000, LEASE)
    assert retry_item.msgid == "retry" and retry_item.tries == 1
    assert await store.due_endpoints(T0) == {ep.id: T0 + 1000}


async def test_report_state_is_least_advanced_delivery(store: Store) -> None:
    eps = await _setup(store, endpoints=2)
    await store.add_messages([_msg("m")], T0)
    await store.add_reports([_rep("m")], T0, HOLD)
    a = await store.claim(eps[0].id, 10, T0, LEASE)
    b = await store.claim(eps[1].id, 10, T0, LEASE)
    await store.settle(_settle(a, eps[0], DeliveryState.DELIVERED), T0)
    (view,) = (await store.list_reports(ReportFilter(), None, 10)).items
    assert view.state is ReportState.PENDING
    await store.settle(_settle(b, eps[1], DeliveryState.FAILED), T0)
    (view,) = (await store.list_reports(ReportFilter(), None, 10)).items
    assert view.state is ReportState.FAILED
    assert {d.endpoint_id: d.state for d in view.deliveries} == {
        eps[0].id: DeliveryState.DELIVERED,
        eps[1].id: DeliveryState.FAILED,
    }


async def test_orphan_is_held_then_matched_when_its_record_lands(store: Store) -> None:
    (ep,) = await _setup(store)
    result = await store.add_reports([_rep("early")], T0, HOLD)
    assert result.matched == 0 and not result.endpoints
    (view,) = (await store.list_reports(ReportFilter(), None, 10)).items
    assert view.state is ReportState.HELD and view.account is None
    assert await store.claim(ep.id, 10, T0, LEASE) == []
    matched = await store.add_messages([_msg("early")], T0 + 5)
    assert matched.matched == 1 and matched.endpoints == {ep.id}
    (item,) = await store.claim(ep.id, 10, T0 + 5, LEASE)
    assert item.msgid == "early"


async def test_held_report_expires_to_unmatched_and_still_matches_later(store: Store) -> None:
    (ep,) = await _setup(store)
    await store.add_reports([_rep("late")], T0, HOLD)
    assert await store.expire_held(T0 + HOLD - 1) == 0
    assert await store.expire_held(T0 + HOLD) == 1
    (view,) = (await store.list_reports(ReportFilter(state=ReportState.UNMATCHED), None, 10)).items
    assert view.msgid == "late"
    await store.add_messages([_msg("late")], T0 + HOLD + 10)
    (item,) = await store.claim(ep.id, 10, T0 + HOLD + 10, LEASE)
    assert item.msgid == "late"
    assert (await store.counts())["pending"] == 1


async def test_duplicate_submission_record_keeps_the_first(store: Store) -> None:
    (ep,) = await _setup(store)
    await store.add_messages([_msg("m")], T0)
    await store.add_messages([Message(msgid="m", account_id="acme", phone="1")], T0)
    await store.add_reports([_rep("m")], T0, HOLD)
    (item,) = await store.claim(ep.id, 10, T0, LEASE)
    assert item.phone == "8618888888888"


async def test_replay_failed_resets_the_retry_cycle(store: Store) -> None:
    (ep,) = await _setup(store)
    await store.add_messages([_msg("a"), _msg("b")], T0)
    await store.add_reports([_rep("a"), _rep("b")], T0, HOLD)
    items = {i.msgid: i for i in await store.claim(ep.id, 10, T0, LEASE)}
    await store.settle(
        _settle([items["a"]], ep, DeliveryState.FAILED)
        + _settle([items["b"]], ep, DeliveryState.DELIVERED),
        T0,
    )
    result = await store.replay(ReplayFilter(), T0 + 100)  # default: failed ones
    assert result.queued == 1 and result.endpoints == {ep.id}
    (again,) = await store.claim(ep.id, 10, T0 + 100, LEASE)
    assert again.msgid == "a" and again.tries == 0
    # By msgid, any state: the delivered one is pushed again too.
    assert (await store.replay(ReplayFilter(msgids=("b",)), T0 + 200)).queued == 1
    assert (await store.list_reports(ReportFilter(msgid="b"), None, 10)).items[
        0
    ].state is ReportState.PENDING
    # Filters that match nothing queue nothing.
    assert (await store.replay(ReplayFilter(account="nobody"), T0)).queued == 0


async def test_delete_endpoint_fails_its_pending_deliveries(store: Store) -> None:
    (ep,) = await _setup(store)
    await store.add_messages([_msg("m")], T0)
    await store.add_reports([_rep("m")], T0, HOLD)
    assert await store.delete_endpoint(ep.id, T0 + 1)
    (view,) = (await store.list_reports(ReportFilter(), None, 10)).items
    assert view.state is ReportState.FAILED
    assert await store.due_endpoints(T0 + 2) == {}


async def test_listing_by_each_state_finds_exactly_its_reports_page_by_page(
    store: Store,
) -> None:
    """Every state can be listed, whichever index a backend finds it through; a report
    delivered to one endpoint and failed at another is failed."""
    ep_a, ep_b = await _setup(store, endpoints=2)
    names = {
        ReportState.DELIVERED: ["d0", "d1", "d2", "d3"],
        ReportState.FAILED: ["f0", "f1", "f2"],
        ReportState.PENDING: ["p0", "p1"],
        ReportState.UNMATCHED: ["u0", "u1"],
        ReportState.HELD: ["h0", "h1", "h2"],
    }
    matched = [
        m
        for s in (ReportState.DELIVERED, ReportState.FAILED, ReportState.PENDING)
        for m in names[s]
    ]
    await store.add_messages([_msg(m) for m in matched], T0)
    # Interleaved, so no state is a contiguous run of ids.
    order = sorted((m for ms in names.values() for m in ms), key=lambda m: (m[1], m[0]))
    await store.add_reports([_rep(m) for m in order if m[0] in "dfpu"], T0, HOLD)
    await store.expire_held(T0 + HOLD)  # u*: held past the window
    await store.add_reports([_rep(m) for m in names[ReportState.HELD]], T0 + HOLD, HOLD)
    for ep in (ep_a, ep_b):
        items = await store.claim(ep.id, 100, T0 + HOLD, LEASE)
        by_msgid = {i.msgid: i for i in items}
        done = [by_msgid[m] for m in names[ReportState.DELIVERED]]
        # f*: delivered at one endpoint, failed at the other.
        done += [by_msgid[m] for m in names[ReportState.FAILED]] if ep is ep_a else []
        await store.settle(_settle(done, ep, DeliveryState.DELIVERED), T0 + HOLD + 1)
        if ep is ep_b:
            failed = [by_msgid[m] for m in names[ReportState.FAILED]]
            await store.settle(_settle(failed, ep, DeliveryState.FAILED), T0 + HOLD + 1)
        await store.release([i.delivery_id for i in items if i.msgid.startswith("p")])

    for state, expected in names.items():
        seen: list[str] = []
        cursor = None
        while True:
            page = await store.list_reports(ReportFilter(state=state), cursor, 2)
            assert all(r.state is state for r in page.items)
            seen += [r.msgid for r in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert sorted(seen) == expected, state
    counts = await store.counts()
    assert {s: counts[s.value] for s in names} == {s: len(ms) for s, ms in names.items()}


async def test_listing_pages_with_cursor_and_filters(store: Store) -> None:
    await _setup(store)
    await _setup(store, account="other")
    await store.add_messages([_msg(f"a{i}") for i in range(7)], T0)
    await store.add_messages([_msg("o1", account="other")], T0)
    await store.add_reports([_rep(f"a{i}") for i in range(7)], T0, HOLD)
    await store.add_reports([_rep("o1"), _rep("zz")], T0 + 50, HOLD)
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_reports(ReportFilter(account="acme"), cursor, 3)
        seen += [r.msgid for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"a{i}" for i in range(7)]
    ids = [r.id for r in (await store.list_reports(ReportFilter(), None, 100)).items]
    assert ids == sorted(ids) and len(ids) == 9
    held = await store.list_reports(ReportFilter(state=ReportState.HELD), None, 10)
    assert [r.msgid for r in held.items] == ["zz"]
    recent = await store.list_reports(ReportFilter(since_ms=T0 + 50), None, 10)
    assert [r.msgid for r in recent.items] == ["o1", "zz"]
    older = await store.list_reports(ReportFilter(until_ms=T0 + 50), None, 10)
    assert len(older.items) == 7
    by_msgid = await store.list_reports(ReportFilter(msgid="a3"), None, 10)
    assert [r.msgid for r in by_msgid.items] == ["a3"]
    counts = await store.counts()
    assert counts["pending"] == 8 and counts["held"] == 1 and counts["delivered"] == 0


async def test_settling_after_the_endpoint_was_deleted_keeps_it_failed(store: Store) -> None:
    (ep,) = await _setup(store)
    await store.add_messages([_msg("m")], T0)
    await store.add_reports([_rep("m")], T0, HOLD)
    items = await store.claim(ep.id, 10, T0, LEASE)
    await store.delete_endpoint(ep.id, T0 + 1)
    # The push that was in flight ends in a retry: it must not come back to life.
    await store.settle(_settle(items, ep, DeliveryState.PENDING, T0 + 1000), T0 + 2)
    (view,) = (await store.list_reports(ReportFilter(), None, 10)).items
    assert view.state is ReportState.FAILED
    assert view.attempts == 1
    assert await store.due_endpoints(T0 + 5000) == {}


async def test_replay_leaves_deliveries_in_flight_alone(store: Store) -> None:
    (ep,) = await _setup(store)
    await store.add_messages([_msg("a"), _msg("b")], T0)
    await store.add_reports([_rep("a"), _rep("b")], T0, HOLD)
    (a,) = await store.claim(ep.id, 1, T0, LEASE)
    result = await store.replay(ReplayFilter(msgids=("a", "b")), T0 + 5)
    assert result.queued == 1  # only b; a is being pushed now
    # a is still leased: a second claim does not hand it out again.
    assert [i.msgid for i in await store.claim(ep.id, 10, T0 + 5, LEASE)] == ["b"]
    assert a.msgid == "a"


async def test_api_keys_are_found_by_hash_and_revoked(store: Store) -> None:
    await _setup(store)
    key = await store.create_api_key("acme", "dlrk_ab12", "h" * 64, T0)
    assert key.account_id == "acme" and key.prefix == "dlrk_ab12" and key.revoked_ms is None
    assert await store.find_api_key("h" * 64) == key
    assert await store.find_api_key("x" * 64) is None
    with pytest.raises(NotFound):
        await store.create_api_key("ghost", "p", "g" * 64, T0)
    assert await store.revoke_api_key(key.id, T0 + 1)
    assert not await store.revoke_api_key(key.id, T0 + 2)
    assert await store.find_api_key("h" * 64) is None
    (listed,) = await store.list_api_keys("acme")
    assert listed.id == key.id and listed.revoked_ms == T0 + 1
