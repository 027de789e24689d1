"""The dispatcher: the only place that pushes over HTTP.

One runner task per enabled endpoint claims due deliveries from the store (under a
lease, committed before any request leaves) into a short local queue, renders them with
the endpoint's protocol, and POSTs them through one push client (connections kept alive
per origin). Each endpoint has its own in-flight cap and the process a global one; a
runner claims ahead only while the process has slots to spare, so little sits leased
behind another customer, and a slow or dead endpoint only ever occupies its own slots.
Outcomes go through the pure retry policy and are written back in batches by one
settler task.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dlrpush import retry
from dlrpush.catalogue import Catalogue
from dlrpush.errors import ClaimedInPart, DlrpushError, SettledInPart
from dlrpush.models import (
    AttemptOutcome,
    AttemptRecord,
    DeliveryState,
    Endpoint,
    PushItem,
    PushOutcome,
    PushRequest,
    Settlement,
    Verdict,
)
from dlrpush.netguard import BlockedDestination
from dlrpush.protocols import Protocol, get_protocol
from dlrpush.pushclient import READ_CAP, PushClient
from dlrpush.settings import Settings
from dlrpush.store.base import Store

log = logging.getLogger("dlrpush.dispatcher")

SNIPPET_CHARS = 200
# Claim items due this close to now, so a timer firing a hair early does not miss them.
DUE_SLACK_MS = 10
USER_AGENT = "dlrpush"
SETTLE_LINGER_S = 0.002
# The fewest deliveries a runner keeps claimed ahead of its pushes (see _fill).
CLAIM_AHEAD_MIN = 128
# A push this slow (or timed out) stops a runner claiming ahead until one is faster.
SLOW_PUSH_MS = 1000.0
# How many rounds of max_in_flight requests may be answered with their outcome not yet
# committed (see _Runner.unsettled_max).
UNSETTLED_ROUNDS_BATCHED = 1
UNSETTLED_ROUNDS_SINGLE = 3
FAILURE_LOG_EVERY_MS = 10_000


@dataclass
class DispatchStats:
    requests: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    claimed: int = 0  # deliveries taken by a claim
    from_ingest: int = 0  # deliveries leased by an ingest in this process (see offers)


def classify_error(exc: BaseException) -> tuple[AttemptOutcome, str]:
    """Turn a transport exception into an attempt outcome and a short text."""
    if isinstance(exc, BlockedDestination):
        return AttemptOutcome.BLOCKED, str(exc) or "destination not allowed"
    if isinstance(exc, TimeoutError):
        return AttemptOutcome.TIMEOUT, "no answer within the timeout"
    # Refused, reset, DNS and TLS failures, and answers that are not HTTP at all.
    text = str(exc) or type(exc).__name__
    return AttemptOutcome.CONNECT_ERROR, f"{type(exc).__name__}: {text}"[:SNIPPET_CHARS]


class _Settler:
    """Writes settlements in batches; few writers keep store round trips few.

    Up to ``store.settle_concurrency`` batches are written at once. Batches do not share
    a delivery: one is claimed again only once a settle cleared its lease or the lease
    ran out (two timeouts and a margin, 40 s by default, against milliseconds for a
    settle), so their order of commit does not matter."""

    def __init__(self, store: Store, now_ms: Callable[[], int]) -> None:
        self._store = store
        self._now_ms = now_ms
        self._pending: list[PushOutcome] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writing: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._closing = False
        self._hurry = asyncio.Event()

    def start(self) -> None:
        self._slots = asyncio.Semaphore(max(1, self._store.settle_concurrency))
        self._task = asyncio.create_task(self._run(), name="dlrpush-settler")

    def add(self, outcome: PushOutcome) -> asyncio.Future[None]:
        """Queue a request's outcome; the future is done once it is committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(outcome)
        self._waiters.append(done)
        self._event.set()
        return done

    def hurry(self) -> None:
        """A runner can push no more until outcomes are recorded: write them now,
        unless a write is under way (what comes meanwhile then goes together)."""
        if not self._writing:
            self._hurry.set()

    async def _run(self) -> None:
        assert self._slots is not None
        while True:
            await self._event.wait()
            # Let outcomes of pushes finishing together share one transaction, unless
            # a runner is held back until they are recorded.
            if not self._hurry.is_set():
                timer = asyncio.get_running_loop().call_later(SETTLE_LINGER_S, self._hurry.set)
                await self._hurry.wait()
                timer.cancel()
            self._hurry.clear()
            self._event.clear()
            while self._pending:
                await self._slots.acquire()
                batch, self._pending = self._pending, []
                waiters, self._waiters = self._waiters, []
                task = asyncio.create_task(self._write(batch, waiters))
                self._writing.add(task)
                task.add_done_callback(self._writing.discard)
            if self._closing:
                await asyncio.gather(*self._writing)
                if not self._pending:
                    return

    async def _write(self, batch: list[PushOutcome], waiters: list[asyncio.Future[None]]) -> None:
        assert self._slots is not None
        try:
            while True:
                try:
                    await self._store.settle(batch, self._now_ms())
                    break
                except Exception as exc:
                    # Keep the batch: the pushes happened and must be recorded. The
                    # leases keep these deliveries from being claimed meanwhile. Any
                    # error, not only the store's own: a dead writer would leave these
                    # outcomes unrecorded.
                    if isinstance(exc, SettledInPart):
                        batch = batch[exc.recorded :]
                    log.warning("recording %d push outcomes failed, retrying: %s", len(batch), exc)
                    await asyncio.sleep(0.5)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        finally:
            self._slots.release()

    async def close(self) -> None:
        self._closing = True
        self._event.set()
        if self._task is not None:
            await self._task


class _Runner:
    """Claims and pushes the due deliveries of one endpoint."""

    def __init__(self, dispatcher: Dispatcher, endpoint: Endpoint) -> None:
        self.d = dispatcher
        self.ep = endpoint
        self.protocol: Protocol = get_protocol(endpoint.protocol)
        self.inflight = 0  # requests the customer has not answered yet
        self.unsettled = 0  # answered, outcome not yet committed
        # Every due time this runner knows of (retries it scheduled, work the manager
        # found), so one falling due never hides the next.
        self.due: list[int] = []
        self._due_set: set[int] = set()
        self.kicked = True  # look for work once at start
        # Bumped by every sign that new work may be due (an ingest or notification
        # naming this endpoint, a due time reached, a changed endpoint); a claim that
        # came back short notes the value it started under. Until it changes, freed
        # slots only send what is queued: a claim would find nothing (a quiet
        # customer's every push would otherwise cost two empty claims, one when its
        # answer is in and one when its outcome is committed).
        self.news = 0
        self.drained_at = -1
        # Claimed (leased) and not yet sent, each with the time by which it must have
        # left: a round of requests ahead (at least CLAIM_AHEAD_MIN deliveries), so a
        # push that completes is followed by the next without a store round trip.
        self.ready: deque[tuple[int, PushItem]] = deque()
        self.backlogged = False  # the last claim took all it asked for
        self.slow = False  # the last push took over a second or timed out
        self._failure_logged_ms = 0
        self._failed_since_log = 0
        self.event = asyncio.Event()
        self.stopped = False
        self.task = asyncio.create_task(self._run(), name=f"dlrpush-endpoint-{endpoint.id}")

    def kick(self) -> None:
        """New work may be due: look, claiming if there are free slots."""
        self._news()
        self.kicked = True
        self.event.set()

    def nudge(self) -> None:
        """Slots were freed: send what is queued, claiming only if new work may be due
        (always, when new work is not announced as it comes)."""
        if not self.d.announced:
            self._news()
        self.kicked = True
        self.event.set()

    def _news(self) -> None:
        self.news += 1
        self.d.offers.pop(self.ep.id, None)

    def _review_offer(self) -> None:
        """Offer to take new work straight from ingest (see Dispatcher.offers) while
        nothing is left to claim, the queue has room and the customer answers briskly:
        handed over then, new work keeps the order a claim would give it, and is not
        queued behind a customer that takes seconds per answer."""
        room = self.ep.max_in_flight * self.per_request + CLAIM_AHEAD_MIN - len(self.ready)
        if (
            self.drained_at == self.news
            and not (self.stopped or self.slow)
            and room > 0
            and not (self.due and self.due[0] <= self.d.now_ms() + DUE_SLACK_MS)
        ):
            # Moved to the end: a store that sends only part of a big offer sends the
            # endpoints busy last, the likeliest to get work again soon.
            self.d.offers.pop(self.ep.id, None)
            self.d.offers[self.ep.id] = (room, self.d.lease_ms(self.ep))
        else:
            self.d.offers.pop(self.ep.id, None)

    def take(self, items: Sequence[PushItem], leased_ms: int) -> None:
        """Queue deliveries an ingest leased to this process for this endpoint at
        ``leased_ms``, and push them (they join the queue behind what was claimed)."""
        if self.stopped or self.d.stopping:
            self.d.release_later([item.delivery_id for item in items])
            return
        # Counted from the lease's start, as for a claim: time spent waiting for the
        # store or the ingest's answer comes out of the wait, not the lease's margin.
        send_by = leased_ms + int(self.ep.timeout_s * 1000)
        self.ready.extend((send_by, item) for item in items)
        self.d.stats.from_ingest += len(items)
        self._review_offer()
        self._send_ready(partial=True)
        self.kicked = True  # _fill queues for the process's slots when they are short
        self.event.set()

    def note_due(self, due_ms: int) -> None:
        if due_ms in self._due_set:
            return
        self._due_set.add(due_ms)
        heapq.heappush(self.due, due_ms)
        if self.due[0] == due_ms:
            self.event.set()

    def update(self, endpoint: Endpoint) -> None:
        self.ep = endpoint
        self.protocol = get_protocol(endpoint.protocol)
        self.kick()

    def stop(self) -> None:
        self.stopped = True
        self.d.offers.pop(self.ep.id, None)
        self._give_back()
        self.event.set()

    def _give_back(self) -> None:
        if self.ready:
            self.d.release_later([item.delivery_id for _, item in self.ready])
            self.ready.clear()

    def _drop_stale(self) -> None:
        """Hand back queued work that waited so long (its customer is slow, or others
        hold the process's slots) that its push could outlast the lease."""
        now = self.d.now_ms()
        stale: list[int] = []
        while self.ready and self.ready[0][0] < now:
            stale.append(self.ready.popleft()[1].delivery_id)
        if stale:
            self.d.release_later(stale)
            self._news()  # they are due again once released: no new work ahead of them

    async def _run(self) -> None:
        while not (self.stopped or self.d.stopping):
            self.event.clear()
            now = self.d.now_ms()
            while self.due and self.due[0] <= now + DUE_SLACK_MS:
                self._due_set.discard(heapq.heappop(self.due))
                self._news()
                self.kicked = True
            if self.kicked:
                self.kicked = False
                try:
                    await self._fill()
                except Exception as exc:
                    log.warning("endpoint %s: claiming failed: %s", self.ep.id, exc)
                    self.note_due(self.d.now_ms() + 1000)
                continue
            timeout = (self.due[0] - now) / 1000 if self.due else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), timeout)

    @property
    def per_request(self) -> int:
        return self.ep.batch_max if self.protocol.batched else 1

    @property
    def unsettled_max(self) -> int:
        """How many requests beyond ``max_in_flight`` may be pushed with their outcome
        not yet committed: a runner pushes while its requests in flight and answered
        but unrecorded together stay within ``max_in_flight + unsettled_max``. Bounded,
        so what a killed process can push twice is bounded (docs/guarantees.md) and a
        store that cannot keep up slows pushing down instead of piling outcomes up in
        memory.

        A round of pushes must fit while the previous one is being recorded: a settle
        (the linger, then a store round trip) takes a few milliseconds, about as long
        as a batched request of a hundred reports, but several times as long as a
        one-report request. With one round, one-report runners idled waiting for their
        outcomes to commit (`innopaas` on PostgreSQL, three pairs: 68-72 % of the
        ceiling with one round, 84-94 % with three; docs/benchmarks.md). In reports the
        bound stays far below a batching endpoint's."""
        rounds = UNSETTLED_ROUNDS_SINGLE if self.per_request == 1 else UNSETTLED_ROUNDS_BATCHED
        return rounds * self.ep.max_in_flight

    def _free(self) -> int:
        # At most max_in_flight requests at the customer, and at most unsettled_max
        # in all pushed but not yet recorded.
        cap = self.ep.max_in_flight
        return min(cap - self.inflight, cap + self.unsettled_max - self.inflight - self.unsettled)

    def _send_ready(self, *, partial: bool) -> None:
        """Start as many requests from the queue as the slots allow: full ones, and a
        last short one only when ``partial`` (no claim may bring more)."""
        if self.stopped or self.d.stopping:
            return
        self._drop_stale()
        per_request = self.per_request
        queued = len(self.ready)
        requests = -(-queued // per_request) if partial else queued // per_request
        sent = False
        for _ in range(min(self._free(), self.d.global_free, requests)):
            n = min(per_request, len(self.ready))
            chunk = [self.ready.popleft()[1] for _ in range(n)]
            self.inflight += 1
            self.d.global_free -= 1
            self.d.spawn(self._send(chunk))
            sent = True
        if sent:
            self._review_offer()

    async def _fill(self) -> None:
        ep = self.ep
        per_request = self.per_request
        more = self.drained_at != self.news  # the store may hold due work
        if (
            more
            and self.protocol.batched
            and self.d.settings.linger_ms > 0
            and not self.backlogged
            and len(self.ready) < per_request
        ):
            # A few milliseconds let a burst become one request without holding back
            # a lone report noticeably. Behind a backlog (the last claim was full), or
            # with a full request queued, waiting would only idle the customer.
            await asyncio.sleep(self.d.settings.linger_ms / 1000)
        while not (self.stopped or self.d.stopping):
            self._send_ready(partial=not more)
            free = self._free()
            if free > 0 and self.d.global_free <= 0 and self.inflight < ep.max_in_flight:
                self.d.waiting.add(self)
            # Claim ahead: enough for the free slots and one round more (while the
            # process has slots to spare, so nothing leased waits long behind other
            # customers), and before the queue runs dry, so the pushes that complete
            # meanwhile start the next ones from the queue (see _send) instead of
            # idling the customer for the claim's round trip. The low mark is kept
            # small (a claim then serves many pushes, not one, and big rounds of
            # batches are claimed as the slots need them); a round of one-report
            # requests is only max_in_flight reports, gone before a claim returns.
            ahead = min(ep.max_in_flight, self.d.global_free) * per_request
            if self.d.global_free > 0:
                ahead = max(ahead, CLAIM_AHEAD_MIN)
            if self.slow:
                # Work queued behind a customer that takes seconds per answer would wait
                # out its send-by time and be handed back: claimed and released for
                # nothing, every timeout.
                ahead = 0
            low_mark = min(ahead // 2, CLAIM_AHEAD_MIN // 2)
            want = max(0, min(free, self.d.global_free)) * per_request
            limit = want + ahead - len(self.ready)
            if not more or limit <= 0 or len(self.ready) >= max(want, low_mark):
                return
            now = self.d.now_ms()
            news = self.news
            try:
                items = await self.d.store.claim(
                    ep.id, limit, now + DUE_SLACK_MS, self.d.lease_ms(ep)
                )
                cut = False
            except ClaimedInPart as exc:
                # Pushed like any claim. The claim goes on at once for the rest; if
                # the store still fails, _run tries again a second later, and until
                # a claim comes back short no new work is taken ahead of the rest.
                items, cut = exc.items, True
            # Started later than one timeout after the claim, a push could outlast
            # the lease (see lease_ms).
            send_by = now + int(ep.timeout_s * 1000)
            self.ready.extend((send_by, item) for item in items)
            self.d.stats.claimed += len(items)
            more = cut or len(items) == limit
            self.backlogged = more
            # Short: everything due was taken, as of the news this claim started under.
            self.drained_at = -1 if more else news
            self._review_offer()
            if self.stopped or self.d.stopping:
                self._give_back()

    async def _send(self, items: Sequence[PushItem]) -> None:
        recorded: list[asyncio.Future[None]] = []
        try:
            ep = self.ep
            now = self.d.now_ms()
            for request in self.protocol.render(items, ep, self.d.catalogue, now):
                outcome = await self._push(ep, request)
                recorded.append(self.d.settler.add(outcome))
                for s in outcome.settlements:
                    if s.next_attempt_ms is not None:
                        self.note_due(s.next_attempt_ms)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("endpoint %s: push crashed; the deliveries will be retried", self.ep.id)
        finally:
            if not recorded:
                self.d.release_later([i.delivery_id for i in items])
                self._news()
            # The customer's slot is free as soon as its answer is in; the outcome
            # still counts against the endpoint until it is committed (see _fill).
            self.inflight -= 1
            self.unsettled += 1
            self.d.global_free += 1
            if self.per_request == 1 and self.unsettled >= self.ep.max_in_flight:
                # A whole round of a one-report runner's outcomes waits: write them
                # now instead of lingering. Its pushes are over in about a millisecond,
                # sooner than the linger, and the outcomes it may leave unrecorded
                # (see _free) would run out. A batching runner's outcomes carry a
                # hundred reports each and fill a settle anyway; cutting its linger
                # short measured slower.
                self.d.settler.hurry()
            # The next push starts from the queue at once (claiming, and a short
            # request, are for _fill), unless other customers wait for the process's
            # slots: then the one freed here goes to them first.
            if not self.d.waiting:
                self._send_ready(partial=False)
            self.nudge()
            self.d.kick_waiting()
        try:
            for committed in recorded:  # usually one: no gather to build per request
                await committed
        finally:
            self.unsettled -= 1
            self.nudge()

    async def _push(self, ep: Endpoint, request: PushRequest) -> PushOutcome:
        started_ms = self.d.now_ms()
        t0 = time.perf_counter()
        status, verdict, snippet = await self.d.post(ep, request, self.protocol)
        latency_ms = (time.perf_counter() - t0) * 1000
        slow = latency_ms >= SLOW_PUSH_MS or verdict.outcome is AttemptOutcome.TIMEOUT
        if slow != self.slow:
            self.slow = slow
            self._review_offer()
        end_ms = self.d.now_ms()
        stats = self.d.stats
        stats.requests += 1
        stats.by_outcome[verdict.outcome.value] = stats.by_outcome.get(verdict.outcome.value, 0) + 1
        attempt = AttemptRecord(
            endpoint_id=ep.id,
            started_ms=started_ms,
            latency_ms=round(latency_ms, 3),
            http_status=status,
            outcome=verdict.outcome,
            snippet=snippet,
        )
        if verdict.accepted:
            stats.delivered += len(request.items)
            delivered = DeliveryState.DELIVERED
            return PushOutcome(
                attempt,
                tuple(
                    Settlement(i.delivery_id, i.report_id, delivered, i.tries + 1, None)
                    for i in request.items
                ),
            )
        out = []
        for item in request.items:
            step = retry.after_attempt(
                accepted=False,
                tries_before=item.tries,
                schedule=ep.retry_schedule_s,
                now_ms=end_ms,
            )
            if step.state is DeliveryState.FAILED:
                stats.failed += 1
                self._failed_since_log += 1
                # One line per endpoint every FAILURE_LOG_EVERY_MS at most: a dead
                # customer fails every report, and a line each would flood the log and
                # spend the CPU the healthy customers need. Each one is in the attempt log.
                if end_ms - self._failure_logged_ms >= FAILURE_LOG_EVERY_MS:
                    log.warning(
                        "endpoint %s: %d reports failed since the last such line; latest:"
                        " report %s (msgid %s) after %d attempts: %s",
                        ep.id,
                        self._failed_since_log,
                        item.report_id,
                        item.msgid,
                        step.tries,
                        verdict.reason or snippet,
                    )
                    self._failure_logged_ms = end_ms
                    self._failed_since_log = 0
            else:
                stats.retried += 1
            out.append(
                Settlement(
                    item.delivery_id, item.report_id, step.state, step.tries, step.next_attempt_ms
                )
            )
        return PushOutcome(attempt, tuple(out))


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        catalogue: Catalogue,
        clock: Callable[[], float] = time.time,
        beside_api: bool = False,
    ) -> None:
        self.store = store
        # Whether new work is announced as it comes: by the API in this process
        # (``beside_api``, as ``serve`` runs it) or by the store's notifications. A
        # ``worker`` on SQLite hears of another process's ingest only from the poll;
        # its runners look for work whenever a slot frees, as the announced ones do
        # only on news (see _Runner.news).
        self.announced = beside_api
        self.settings = settings
        self.catalogue = catalogue
        self._clock = clock
        self.stopping = False
        self.global_free = settings.max_in_flight_total
        self.waiting: set[_Runner] = set()
        self.stats = DispatchStats()
        self.healthy = True
        self.runners: dict[int, _Runner] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._manage_event = asyncio.Event()
        self._manager: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._client: PushClient | None = None
        self._to_release: list[int] = []
        self.settler = _Settler(store, self.now_ms)
        # The standing offer an ingest in this process passes to the store (see
        # store.base.Offer): endpoint id -> (most new deliveries, lease length in ms),
        # for each runner with nothing left to claim. Its new work then comes back
        # leased with the ingest's answer, and is pushed without a claim's round trip.
        self.offers: dict[int, tuple[int, int]] = {}
        # The store's endpoints_version when the runners were last matched to the
        # endpoints; None until they first were.
        self._endpoints_version: int | None = None

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def lease_ms(self, ep: Endpoint) -> int:
        # A claimed delivery may wait in its runner's queue for up to one push (the
        # queue holds one round ahead), then is pushed (bounded by the endpoint's
        # timeout), then its outcome is written: two timeouts plus a margin.
        return int((2 * ep.timeout_s + self.settings.lease_margin_s) * 1000)

    async def start(self) -> None:
        if self.store.exclusive_dispatch:
            released = await self.store.release_all_leases()
            if released:
                log.info("released %d leases left by a previous run", released)
        self._client = PushClient(
            self.settings.callback_allow, user_agent=USER_AGENT, read_cap=READ_CAP
        )
        self.settler.start()
        self._manager = asyncio.create_task(self._manage(), name="dlrpush-manager")
        notifications = self.store.work_notifications()
        if notifications is not None:
            self.announced = True
            self._listener = asyncio.create_task(self._listen(notifications), name="dlrpush-listen")

    async def _listen(self, notifications: AsyncIterator[frozenset[int]]) -> None:
        try:
            async for endpoint_ids in notifications:
                self.wake(endpoint_ids)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The poll still finds all work; only the instant wake-up is lost.
            self.announced = False
            log.exception("listening for new work stopped; falling back to polling")

    def hand(self, leased: Mapping[int, Sequence[PushItem]], leased_ms: int) -> None:
        """Take the deliveries an ingest leased to this process at ``leased_ms`` (the
        ``now_ms`` it was given; see ``offers``)."""
        for ep_id, items in leased.items():
            runner = self.runners.get(ep_id)
            if runner is None:
                # Stopped meanwhile (endpoint changed or deleted): the lease is given
                # back, and the delivery claimed as any other.
                self.release_later([item.delivery_id for item in items])
            else:
                runner.take(items, leased_ms)

    def wake(self, endpoint_ids: Iterable[int]) -> None:
        for ep_id in endpoint_ids:
            runner = self.runners.get(ep_id)
            if runner is None:
                self._manage_event.set()
            else:
                runner.kick()

    def refresh(self) -> None:
        """Re-read endpoints now (after one was created, changed or deleted)."""
        self._manage_event.set()

    def spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def kick_waiting(self) -> None:
        if self.waiting and self.global_free > 0:
            waiting, self.waiting = self.waiting, set()
            for runner in waiting:
                runner.nudge()

    def release_later(self, delivery_ids: list[int]) -> None:
        self._to_release.extend(delivery_ids)
        self._manage_event.set()

    async def post(
        self, ep: Endpoint, request: PushRequest, protocol: Protocol
    ) -> tuple[int | None, Verdict, str]:
        """One POST; never raises for anything the network or the receiver does."""
        assert self._client is not None
        target = self._client.target(ep.url)
        if target.blocked:
            return None, Verdict(False, AttemptOutcome.BLOCKED, target.blocked), target.blocked
        try:
            status, body = await self._client.post(
                target, request.body, request.content_type, ep.timeout_s
            )
            verdict = protocol.verdict(status, body, ep)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome, text = classify_error(exc)
            return None, Verdict(False, outcome, text), text
        snippet = body[: SNIPPET_CHARS * 4].decode("utf-8", "replace")[:SNIPPET_CHARS]
        return status, verdict, snippet

    async def _sync_endpoints(self) -> None:
        # Read before the list: a change made while the list is read moves the version
        # past the one kept, so the next poll reads the list again.
        version = await self.store.endpoints_version()
        if version == self._endpoints_version:
            return
        endpoints = {ep.id: ep for ep in await self.store.list_endpoints(enabled_only=True)}
        for ep_id in list(self.runners):
            if ep_id not in endpoints:
                self.runners.pop(ep_id).stop()
        for ep_id, ep in endpoints.items():
            runner = self.runners.get(ep_id)
            if runner is None:
                self.runners[ep_id] = _Runner(self, ep)
            elif runner.ep != ep:
                runner.update(ep)
        self._endpoints_version = version

    async def _manage(self) -> None:
        while not self.stopping:
            self._manage_event.clear()
            try:
                if self._to_release:
                    ids, self._to_release = self._to_release, []
                    await self.store.release(ids)
                await self._sync_endpoints()
                now = self.now_ms()
                for ep_id, due in (await self.store.due_endpoints(now)).items():
                    runner = self.runners.get(ep_id)
                    if runner is not None:
                        runner.note_due(due)
                if self._housekeeping is None or self._housekeeping.done():
                    # In the background: a vacuum must not delay finding due work.
                    self._housekeeping = asyncio.create_task(self._upkeep(now))
                expired = await self.store.expire_held(now)
                if expired:
                    log.info("%d held reports passed the window and are now unmatched", expired)
                self.healthy = True
            except Exception as exc:
                self.healthy = False
                log.warning("dispatcher cannot reach the store: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._manage_event.wait(), self.settings.poll_interval_s)

    async def _upkeep(self, now: int) -> None:
        try:
            await self.store.housekeeping(now)
        except Exception as exc:
            log.warning("store housekeeping failed: %s", exc)

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming, let in-flight pushes finish (up to ``grace_s``), record them."""
        self.stopping = True
        self._manage_event.set()
        for runner in self.runners.values():
            runner.stop()
        await asyncio.gather(*(r.task for r in self.runners.values()), return_exceptions=True)
        if self._manager is not None:
            await asyncio.gather(self._manager, return_exceptions=True)
        for task in (self._listener, self._housekeeping):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._tasks:
            _, still = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        await self.settler.close()
        if self._to_release:
            with contextlib.suppress(DlrpushError):
                await self.store.release(self._to_release)
            self._to_release = []
        if self._client is not None:
            await self._client.close()
