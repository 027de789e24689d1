"""What the store backends share: rows mapped onto values, filters mapped onto SQL.

Both backends select the same columns in the same order for endpoints and push items,
and build their WHERE clauses from the same filters; only the placeholder style and
how a list of msgids is passed differ, which a ``Dialect`` states.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dlrpush.models import Credentials, Endpoint, Enrichment, PushItem, ReportState
from dlrpush.store.base import ReplayFilter, ReportFilter


def endpoint_from_row(row: Sequence[Any], retry_schedule_s: Iterable[float]) -> Endpoint:
    """Columns: id, account_id, url, protocol, receiver, pswd, batch_max, <schedule>,
    timeout_s, max_in_flight, enabled, description_lang, success_body_contains,
    created_ms; the schedule comes decoded, as each backend stores it its own way."""
    return Endpoint(
        id=row[0],
        account_id=row[1],
        url=row[2],
        protocol=row[3],
        credentials=Credentials(receiver=row[4], pswd=row[5]),
        batch_max=row[6],
        retry_schedule_s=tuple(float(x) for x in retry_schedule_s),
        timeout_s=row[8],
        max_in_flight=row[9],
        enabled=bool(row[10]),
        description_lang=row[11],
        success_body_contains=row[12],
        created_ms=row[13],
    )


# Reports to one country and operator share one enrichment: reuse the value instead of
# building one per claimed row. Bounded, as operators' names come from the input.
_ENRICHMENTS: dict[tuple[Any, ...], Enrichment] = {}
_ENRICHMENTS_MAX = 4096


def push_item_from_row(row: Sequence[Any]) -> PushItem:
    """Columns: delivery id, report id, msgid, phone, segments, status, description,
    report_time_ms, uid, batch_seq, request_time_ms, unit_price, currency,
    access_number, country_number, region_code, mno_name, mcc, mnc, tries."""
    key = tuple(row[14:19])
    enrichment = _ENRICHMENTS.get(key)
    if enrichment is None:
        if len(_ENRICHMENTS) >= _ENRICHMENTS_MAX:
            _ENRICHMENTS.clear()
        enrichment = _ENRICHMENTS[key] = Enrichment(*key)
    r = row
    return PushItem(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        r[6],
        r[7],
        r[8],
        r[9],
        r[10],
        r[11],
        r[12],
        r[13],
        enrichment,
        r[19],
    )


@dataclass(frozen=True, slots=True)
class Dialect:
    placeholder: str  # "?" or "%s"
    msgid_in: str  # a clause testing r.msgid against a list passed as one parameter
    msgid_list: Callable[[Sequence[str]], object]  # that parameter
    text: Callable[[str], str] = str  # how a text parameter is made storable
    # The clause picking reports in a state, given the state and the placeholder: a
    # backend whose indexes do not hold the state names a path that leads to it.
    state_is: Callable[[ReportState, str], str] = lambda _state, ph: f"r.state = {ph}"


def report_filter(flt: ReportFilter, d: Dialect) -> tuple[list[str], list[object]]:
    """WHERE clauses over ``reports r`` for a listing."""
    ph = d.placeholder
    where: list[str] = []
    params: list[object] = []
    if flt.account is not None:
        where.append(f"r.account_id = {ph}")
        params.append(d.text(flt.account))
    if flt.msgid is not None:
        where.append(f"r.msgid = {ph}")
        params.append(d.text(flt.msgid))
    if flt.state is not None:
        where.append(d.state_is(flt.state, ph))
        params.append(flt.state.value)
    if flt.since_ms is not None:
        where.append(f"r.received_ms >= {ph}")
        params.append(flt.since_ms)
    if flt.until_ms is not None:
        where.append(f"r.received_ms < {ph}")
        params.append(flt.until_ms)
    return where, params


def replay_filter(flt: ReplayFilter, d: Dialect) -> tuple[list[str], list[object]]:
    """WHERE clauses over ``deliveries d JOIN reports r`` for a replay."""
    ph = d.placeholder
    where: list[str] = ["1 = 1"]
    params: list[object] = []
    state = flt.state
    if state is None and flt.msgids is None:
        state = ReportState.FAILED
    if state is not None:
        # A delivery's own state decides, so a report delivered to one endpoint and failed
        # at another replays only the failed one.
        where.append(f"d.state = {ph}")
        params.append(state.value)
    if flt.account is not None:
        where.append(f"r.account_id = {ph}")
        params.append(d.text(flt.account))
    if flt.endpoint is not None:
        where.append(f"d.endpoint_id = {ph}")
        params.append(flt.endpoint)
    if flt.since_ms is not None:
        where.append(f"r.received_ms >= {ph}")
        params.append(flt.since_ms)
    if flt.until_ms is not None:
        where.append(f"r.received_ms < {ph}")
        params.append(flt.until_ms)
    if flt.msgids is not None:
        where.append(d.msgid_in)
        params.append(d.msgid_list(flt.msgids))
    return where, params
