import dataclasses
from decimal import MAX_PREC, Decimal, localcontext

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlrpush.catalogue import DEFAULT_CATALOGUE
from dlrpush.enrich import enrich
from dlrpush.models import AttemptOutcome, Credentials, Endpoint, Enrichment, PushItem, Verdict
from dlrpush.protocols import Protocol
from dlrpush.protocols.innopaas import PROTOCOL, fee

# The provider's example body, copied verbatim from its documentation.
PROVIDER_EXAMPLE = """{"batchSeq": "I8393346_2506101652_35", "unitPrice": "0.05670", "countryNumber": "0086", "mnc": "2", "receiver": "account", "pswd": "password", "mnoName": "中国移动", "notifyTime": "1749545540975", "fee": "0.0567", "mobile": "8618888888888", "msgid": "627239445736452096", "mcc": "460", "requestTime": "1749545538198", "uid": "I8393346_2506101652_35", "regionCode": "CN", "accessNumber": "508tongdao", "currency": "CNY", "status": "DELIVRD", "reportTime": "1749545540967", "smsNum": "1"}"""  # noqa: E501

FIELDS = [
    "receiver", "pswd", "msgid", "batchSeq", "uid", "reportTime", "notifyTime", "requestTime",
    "mobile", "status", "currency", "smsNum", "unitPrice", "fee", "accessNumber",
    "countryNumber", "regionCode", "mnoName", "mcc", "mnc",
]  # fmt: skip

ENDPOINT = Endpoint(
    id=1,
    account_id="acc",
    url="https://example.com/dlr",
    protocol="innopaas",
    credentials=Credentials(receiver="account", pswd="password"),
)

EXAMPLE_ITEM = PushItem(
    delivery_id=1,
    report_id=1,
    msgid="627239445736452096",
    phone="8618888888888",
    segments=1,
    status="DELIVRD",
    description=None,
    report_time_ms=1749545540967,
    uid=None,
    batch_seq="I8393346_2506101652_35",
    request_time_ms=1749545538198,
    unit_price="0.05670",
    currency="CNY",
    access_number="508tongdao",
    enrichment=enrich("8618888888888"),
)


def body(it: PushItem, endpoint: Endpoint = ENDPOINT, now_ms: int = 0) -> dict[str, str]:
    [request] = PROTOCOL.render([it], endpoint, DEFAULT_CATALOGUE, now_ms)
    assert request.items == (it,)
    parsed: dict[str, str] = orjson.loads(request.body)
    return parsed


def test_is_a_single_report_protocol_named_innopaas() -> None:
    protocol: Protocol = PROTOCOL
    assert (protocol.name, protocol.batched) == ("innopaas", False)


def test_golden_provider_example() -> None:
    got = body(EXAMPLE_ITEM, now_ms=1749545540975)
    assert got == orjson.loads(PROVIDER_EXAMPLE)
    assert list(got) == FIELDS
    assert all(type(v) is str for v in got.values())


def test_one_request_per_item_in_order() -> None:
    items = [EXAMPLE_ITEM._replace(msgid=str(n)) for n in range(5)]
    requests = PROTOCOL.render(items, ENDPOINT, DEFAULT_CATALOGUE, 0)
    assert [r.items for r in requests] == [(i,) for i in items]
    assert [orjson.loads(r.body)["msgid"] for r in requests] == ["0", "1", "2", "3", "4"]


def test_retry_carries_a_later_notify_time() -> None:
    first, retry = body(EXAMPLE_ITEM, now_ms=1000), body(EXAMPLE_ITEM, now_ms=2000)
    assert (first["notifyTime"], retry["notifyTime"]) == ("1000", "2000")
    assert first["reportTime"] == retry["reportTime"] == "1749545540967"


def test_missing_optional_values_are_empty_strings() -> None:
    it = EXAMPLE_ITEM._replace(
        uid="", unit_price=None, request_time_ms=None, enrichment=Enrichment()
    )
    got = body(it, dataclasses.replace(ENDPOINT, credentials=Credentials()))
    assert got["uid"] == "I8393346_2506101652_35"
    for key in ["pswd", "receiver", "unitPrice", "fee", "requestTime", "mcc", "mnoName"]:
        assert got[key] == ""
    assert list(got) == FIELDS


def test_uid_mobile_and_price_are_passed_through_exactly() -> None:
    it = EXAMPLE_ITEM._replace(uid="订单-1", phone="008618888888888", segments=3)
    got = body(it)
    assert (got["uid"], got["mobile"], got["unitPrice"]) == ("订单-1", "008618888888888", "0.05670")
    assert (got["smsNum"], got["fee"]) == ("3", "0.1701")


@pytest.mark.parametrize(
    ("unit", "n", "expected"),
    [
        ("0.05670", 1, "0.0567"),
        ("0.05670", 3, "0.1701"),
        ("1.50", 2, "3"),
        ("0.10", 10, "1"),
        ("0", 5, "0"),
        ("0.000", 5, "0"),
        ("-0.0", 1, "0"),
        ("1E+2", 1, "100"),
        ("0.0000001", 1, "0.0000001"),
        ("0.123456789012345678901234567891", 7, "0.864197523086419752308641975237"),
        (None, 1, ""),
        ("abc", 1, ""),
        ("NaN", 1, ""),
        ("Infinity", 1, ""),
    ],
)
def test_fee(unit: str | None, n: int, expected: str) -> None:
    assert fee(unit, n) == expected


@given(
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-1000, max_value=1000),
    st.integers(min_value=0, max_value=10_000),
)
def test_fee_is_exact_plain_and_trimmed(unit: Decimal, n: int) -> None:
    text = fee(str(unit), n)
    with localcontext(prec=MAX_PREC):
        assert Decimal(text) == unit * n
    assert "E" not in text.upper()
    assert not ("." in text and text.endswith("0"))
    assert not text.endswith(".")


@pytest.mark.parametrize(
    ("status", "body_", "contains", "expected"),
    [
        (200, b"", None, Verdict(True, AttemptOutcome.DELIVERED)),
        (299, b"whatever", None, Verdict(True, AttemptOutcome.DELIVERED)),
        (200, b"result=ok", "ok", Verdict(True, AttemptOutcome.DELIVERED)),
        (200, b"result=fail", "ok", Verdict(False, AttemptOutcome.REJECTED, "body lacks 'ok'")),
        (500, b"ok", "ok", Verdict(False, AttemptOutcome.HTTP_ERROR, "HTTP 500")),
        (404, b"", None, Verdict(False, AttemptOutcome.HTTP_ERROR, "HTTP 404")),
        (301, b"", None, Verdict(False, AttemptOutcome.HTTP_ERROR, "HTTP 301")),
    ],
)
def test_verdict(status: int, body_: bytes, contains: str | None, expected: Verdict) -> None:
    endpoint = dataclasses.replace(ENDPOINT, success_body_contains=contains)
    assert PROTOCOL.verdict(status, body_, endpoint) == expected
