"""The ``innopaas`` wire format: one report per POST, a flat JSON object of 20 strings.

Every value is a string, numbers included, because the provider's receivers parse them
as such. ``notifyTime`` is the push time, so a retry carries a later one; ``fee`` is
``smsNum × unitPrice`` computed exactly in decimal. Any 2xx answer is acceptance, unless
the endpoint also asks for a text in the body.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import MAX_PREC, Context, Decimal, InvalidOperation

import orjson

from dlrpush.catalogue import Catalogue
from dlrpush.models import AttemptOutcome, Endpoint, PushItem, PushRequest, Verdict
from dlrpush.protocols import Protocol

# Unbounded precision: the product of a configured price and a count is never rounded.
_EXACT = Context(prec=MAX_PREC)


def fee(unit_price: str | None, segments: int) -> str:
    """``segments × unit_price`` as plain decimal text ("0.0567", "3", "0"); "" without a
    price or when the configured price is not a finite decimal."""
    if unit_price is None:
        return ""
    try:
        price = Decimal(unit_price)
    except InvalidOperation:
        return ""
    if not price.is_finite():
        return ""
    total = _EXACT.multiply(price, segments)
    return "0" if total.is_zero() else format(total.normalize(_EXACT), "f")


def _body(item: PushItem, endpoint: Endpoint, now_ms: int) -> dict[str, str]:
    e = item.enrichment
    return {
        "receiver": endpoint.credentials.receiver,
        "pswd": endpoint.credentials.pswd,
        "msgid": item.msgid,
        "batchSeq": item.batch_seq,
        "uid": item.uid or item.batch_seq,
        "reportTime": str(item.report_time_ms),
        "notifyTime": str(now_ms),
        "requestTime": "" if item.request_time_ms is None else str(item.request_time_ms),
        "mobile": item.phone,
        "status": item.status,
        "currency": item.currency,
        "smsNum": str(item.segments),
        "unitPrice": item.unit_price or "",
        "fee": fee(item.unit_price, item.segments),
        "accessNumber": item.access_number,
        "countryNumber": e.country_number,
        "regionCode": e.region_code,
        "mnoName": e.mno_name,
        "mcc": e.mcc,
        "mnc": e.mnc,
    }


class _Innopaas:
    name = "innopaas"
    batched = False

    def render(
        self, items: Sequence[PushItem], endpoint: Endpoint, catalogue: Catalogue, now_ms: int
    ) -> list[PushRequest]:
        return [PushRequest((item,), orjson.dumps(_body(item, endpoint, now_ms))) for item in items]

    def verdict(self, status: int, body: bytes, endpoint: Endpoint) -> Verdict:
        if not 200 <= status < 300:
            return Verdict(False, AttemptOutcome.HTTP_ERROR, f"HTTP {status}")
        wanted = endpoint.success_body_contains
        if wanted and wanted.encode() not in body:
            return Verdict(False, AttemptOutcome.REJECTED, f"body lacks {wanted!r}")
        return Verdict(True, AttemptOutcome.DELIVERED)


PROTOCOL: Protocol = _Innopaas()
