"""Plain value types shared by the core, the stores, the dispatcher and the API.

Everything here is immutable with no behaviour beyond small derived properties, so the
pure core can be tested with plain values and the stores can map rows onto these types
without an ORM. The records made once per report or per attempt are named tuples: on
the hot path a frozen dataclass costs several times as much to build (its ``__init__``
goes through ``object.__setattr__`` for every field).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class ReportState(StrEnum):
    """What a user sees of a report; the order is "least advanced first"."""

    HELD = "held"  # waiting for its submission record
    UNMATCHED = "unmatched"  # held past the window; still kept
    PENDING = "pending"  # waiting to be pushed or retried
    FAILED = "failed"  # gave up; kept and replayable
    DELIVERED = "delivered"


class DeliveryState(StrEnum):
    """State of one (report, endpoint) delivery."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class AttemptOutcome(StrEnum):
    """How one push attempt ended, as recorded in the attempt log."""

    DELIVERED = "delivered"  # receiver accepted
    REJECTED = "rejected"  # HTTP 2xx but the body said no (ucloud code != 0, body mismatch)
    HTTP_ERROR = "http_error"  # non-2xx status (redirects included: they are not followed)
    TIMEOUT = "timeout"  # no full answer within the endpoint's timeout
    CONNECT_ERROR = "connect_error"  # refused, reset, DNS failure, TLS failure
    BLOCKED = "blocked"  # destination address not allowed (SSRF guard)


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    created_ms: int = 0


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A customer's key for reading its own reports; the key itself is never stored."""

    id: int
    account_id: str
    prefix: str  # the first characters, to tell keys apart in listings
    created_ms: int
    revoked_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Credentials:
    receiver: str = ""
    pswd: str = ""


DEFAULT_RETRY_SCHEDULE_S: tuple[float, ...] = (1.0, 1.0, 1.0)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A customer's callback and how to push to it.

    Defaults are the seed contracts' own rules: 3 retries 1 s apart, at most 100 reports
    a ``ucloud`` request, Chinese descriptions.
    """

    id: int
    account_id: str
    url: str
    protocol: str  # "ucloud" | "innopaas"
    credentials: Credentials = field(default_factory=Credentials)
    batch_max: int = 100
    retry_schedule_s: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE_S
    timeout_s: float = 5.0
    max_in_flight: int = 8
    enabled: bool = True
    description_lang: str = "zh"  # "zh" | "en": language of ReceiptDesc texts
    # Extra success rule: when set, a 2xx answer only counts when its body contains this text.
    success_body_contains: str | None = None
    created_ms: int = 0


class Enrichment(NamedTuple):
    """What can be told about a phone number from the number itself."""

    country_number: str = ""  # "00" + calling code, e.g. "0086"
    region_code: str = ""  # ISO 3166, e.g. "CN"
    mno_name: str = ""  # operator name, e.g. "中国移动"
    mcc: str = ""
    mnc: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """A submission record: what the platform sent, keyed by the msgid it returned."""

    msgid: str
    account_id: str
    phone: str
    segments: int = 1
    uid: str | None = None
    batch_seq: str = ""
    request_time_ms: int | None = None
    unit_price: str | None = None  # decimal string exactly as configured, e.g. "0.05670"
    currency: str = "CNY"
    access_number: str = ""
    mcc: str = ""
    mnc: str = ""
    operator: str = ""  # operator name given by the platform; overrides the derived one
    enrichment: Enrichment = field(default_factory=Enrichment)


class IncomingReport(NamedTuple):
    """A carrier status report as ingested (structured, or parsed from SMPP receipt text)."""

    msgid: str
    status: str  # normalised upper-case code, e.g. "DELIVRD", "MK:0001"
    report_time_ms: int
    error_code: str | None = None
    description: str | None = None
    receipt: str | None = None  # the original SMPP receipt text, when it came as text


class PushItem(NamedTuple):
    """Everything a protocol needs to render one report for one endpoint."""

    delivery_id: int
    report_id: int
    msgid: str
    phone: str
    segments: int
    status: str
    description: str | None  # the carrier's own text, when it sent one
    report_time_ms: int
    uid: str | None
    batch_seq: str
    request_time_ms: int | None
    unit_price: str | None
    currency: str
    access_number: str
    enrichment: Enrichment
    tries: int = 0  # attempts already made in this delivery cycle


@dataclass(frozen=True, slots=True)
class PushRequest:
    """One HTTP POST a protocol rendered: its body and the items it carries."""

    items: tuple[PushItem, ...]
    body: bytes
    content_type: str = "application/json; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A protocol's reading of a receiver's answer."""

    accepted: bool
    outcome: AttemptOutcome
    reason: str = ""


class AttemptRecord(NamedTuple):
    """One HTTP request to an endpoint, as written to the attempt log."""

    endpoint_id: int
    started_ms: int
    latency_ms: float
    http_status: int | None
    outcome: AttemptOutcome
    snippet: str = ""


class Settlement(NamedTuple):
    """What to write back for one delivery after an attempt."""

    delivery_id: int
    report_id: int
    state: DeliveryState
    tries: int  # attempts made in this cycle, this one included
    next_attempt_ms: int | None  # when to retry; None when the state is final


class PushOutcome(NamedTuple):
    """One request's attempt and what it means for each delivery it carried."""

    attempt: AttemptRecord
    settlements: tuple[Settlement, ...]
