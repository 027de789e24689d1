"""The one store interface every backend implements, and the values it speaks in.

The store owns durability: an ingest call returns only once what it accepted is
committed, a claim puts deliveries under a lease that is committed before any HTTP push
starts, and a settle writes outcomes, attempt records and report states in one
transaction. Backends (``sqlite``, ``postgres``) differ only in SQL; the contract suite
in ``tests/contract`` holds them to the same behaviour.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

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

# An in-process dispatcher's standing offer to push new work at once, without a claim:
# endpoint id -> (the most new deliveries it takes, the lease's length in ms). The store
# takes from it as it leases (see use_offer), so an ingest right behind another does not
# lease past the limit, or ahead of work the one before left to claim.
Offer = dict[int, tuple[int, int]]


def use_offer(offer: Offer, leased: Mapping[int, int], left: Collection[int]) -> None:
    """Take from ``offer`` what an ingest used: ``leased`` endpoint -> deliveries leased
    to it, ``left`` the endpoints with new work left to claim. An endpoint with work left
    leaves the offer (a claim must go first, to keep the order); one that took work
    stays with what it has room for."""
    for ep in left:
        offer.pop(ep, None)
    for ep, n in leased.items():
        if ep in left:
            continue
        limit, lease = offer.get(ep, (0, 0))
        if limit > n:
            offer[ep] = (limit - n, lease)
        else:
            offer.pop(ep, None)


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    # Endpoints that got new due work left to claim, so an in-process dispatcher can
    # wake them now. A backend that merges concurrent calls may name them in one call's
    # result only.
    endpoints: frozenset[int] = frozenset()
    matched: int = 0  # reports that found their submission record in this call
    # New deliveries leased to the offer's taker, by endpoint, in report order.
    leased: Mapping[int, list[PushItem]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReportFilter:
    account: str | None = None
    msgid: str | None = None
    state: ReportState | None = None
    since_ms: int | None = None  # report received at or after
    until_ms: int | None = None  # report received before


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    account: str | None = None
    endpoint: int | None = None
    # None means "failed" unless msgids are given, then any state.
    state: ReportState | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    msgids: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class DeliveryView:
    endpoint_id: int
    state: DeliveryState
    tries: int
    next_attempt_ms: int | None
    updated_ms: int


@dataclass(frozen=True, slots=True)
class ReportView:
    id: int
    msgid: str
    account: str | None
    status: str
    error_code: str | None
    description: str | None
    report_time_ms: int
    received_ms: int
    state: ReportState
    attempts: int
    deliveries: tuple[DeliveryView, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class AttemptView:
    id: int
    report_id: int
    endpoint_id: int
    started_ms: int
    latency_ms: float
    http_status: int | None
    outcome: AttemptOutcome
    snippet: str


@dataclass(frozen=True, slots=True)
class Page:
    items: tuple[ReportView, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ReplayResult:
    queued: int
    endpoints: frozenset[int] = frozenset()


class Store(Protocol):
    """Async store API. Every method is safe to call concurrently from one event loop."""

    @property
    def exclusive_dispatch(self) -> bool:
        """True when only one dispatcher may use the store (SQLite): a starting
        dispatcher may then release every lease at once instead of waiting them out."""

    @property
    def settle_concurrency(self) -> int:
        """How many ``settle`` calls are worth running at once: 1 where one thread does
        every write (SQLite), more where the server runs transactions side by side."""

    def work_notifications(self) -> AsyncIterator[frozenset[int]] | None:
        """Endpoint ids that got new due work from another process (PostgreSQL
        LISTEN/NOTIFY), or None when the backend cannot tell (the dispatcher polls)."""

    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` when the store does not answer."""

    async def housekeeping(self, now_ms: int) -> None:
        """Periodic upkeep the backend needs (the dispatcher calls it on every poll)."""

    # accounts and endpoints
    async def create_account(self, account: Account) -> Account:
        """Raise ``Conflict`` when the id exists."""

    async def get_account(self, account_id: str) -> Account | None: ...

    async def missing_accounts(self, ids: Collection[str]) -> set[str]: ...

    async def create_api_key(
        self, account_id: str, prefix: str, key_hash: str, now_ms: int
    ) -> ApiKey:
        """Store a key's hash; ``NotFound`` when the account does not exist."""

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        """The live (not revoked) key with this hash."""

    async def list_api_keys(self, account_id: str) -> list[ApiKey]: ...

    async def revoke_api_key(self, key_id: int, now_ms: int) -> bool: ...

    async def create_endpoint(self, endpoint: Endpoint) -> Endpoint:
        """Store a new endpoint; its ``id`` field is ignored and the stored one returned."""

    async def get_endpoint(self, endpoint_id: int) -> Endpoint | None: ...

    async def list_endpoints(
        self, account_id: str | None = None, *, enabled_only: bool = False
    ) -> list[Endpoint]: ...

    async def update_endpoint(self, endpoint: Endpoint) -> Endpoint: ...

    async def endpoints_version(self) -> int:
        """A number that moves whenever an endpoint is created, changed or deleted, by
        any process sharing the store: the list needs reading again only when it moved."""

    async def delete_endpoint(self, endpoint_id: int, now_ms: int) -> bool:
        """Remove the endpoint; its pending deliveries become ``failed`` (kept, listed)."""

    # ingest
    async def add_messages(self, messages: Sequence[Message], now_ms: int) -> IngestResult:
        """Store submission records (a known msgid is kept as first stored) and match
        held or unmatched reports waiting for them."""

    async def add_reports(
        self,
        reports: Sequence[IncomingReport],
        now_ms: int,
        hold_ms: int,
        offer: Offer | None = None,
    ) -> IngestResult:
        """Store reports; matched ones get one pending delivery per enabled endpoint of
        their account, the others are held until ``now_ms + hold_ms``. The deliveries of
        an endpoint in ``offer`` are leased in the same transaction, up to its limit in
        report order, and returned in ``leased`` instead of being left to a claim."""

    # dispatch
    async def claim(
        self, endpoint_id: int, limit: int, now_ms: int, lease_ms: int
    ) -> list[PushItem]:
        """Lease up to ``limit`` due deliveries of one endpoint, oldest due first. A
        backend that leases them in several transactions raises ``ClaimedInPart``
        with what it leased when it fails after the first."""

    async def settle(self, outcomes: Sequence[PushOutcome], now_ms: int) -> None:
        """Record outcomes in order. A backend that records them in several
        transactions raises ``SettledInPart`` when it fails after the first, so a
        retry records only the rest."""

    async def release(self, delivery_ids: Collection[int]) -> None:
        """Give back leases of claimed deliveries that were not pushed."""

    async def release_all_leases(self) -> int:
        """For a single-process store at start: nothing else can hold a lease."""

    async def due_endpoints(self, now_ms: int) -> dict[int, int]:
        """Endpoint id -> earliest ``next_attempt_ms`` among its pending deliveries."""

    async def expire_held(self, now_ms: int) -> int:
        """Held reports past their window become ``unmatched``; returns how many."""

    # reading and operating
    async def list_reports(self, flt: ReportFilter, cursor: str | None, limit: int) -> Page: ...

    async def get_report(self, report_id: int) -> ReportView | None: ...

    async def list_attempts(self, report_id: int) -> list[AttemptView]: ...

    async def replay(self, flt: ReplayFilter, now_ms: int) -> ReplayResult: ...

    async def counts(self) -> dict[str, int]:
        """Reports by state, for health pages and metrics."""
