import dataclasses

import orjson
import pytest

from dlrpush.catalogue import DEFAULT_CATALOGUE, Catalogue
from dlrpush.models import AttemptOutcome, Endpoint, Enrichment, PushItem, Verdict
from dlrpush.protocols import Protocol
from dlrpush.protocols.ucloud import PROTOCOL

# The provider's example request, copied verbatim from its documentation.
PROVIDER_EXAMPLE = """{"MsgType": 2, "Data": [
 {"SessionNo": "d0****f7-0fc3-****-****-9f73****6c6e", "Phone": "185****9057", "CostCount": 2, "ReceiptTime": 1563867000, "ReceiptResult": "发送成功", "ReceiptCode": "Delivrd", "ReceiptDesc": "用户接收成功", "UserId": "you man c define the content by yrself"},
 {"SessionNo": "d1****f7-0fc3-****-****-9f73****6c6e", "Phone": "185****9057", "CostCount": 2, "ReceiptTime": 1563867000, "ReceiptResult": "发送失败", "ReceiptCode": "MSBLACK", "ReceiptDesc": "手机在运营商防骚扰黑名单", "UserId": "you man c define the content by yrself"}]}"""  # noqa: E501

# The provider's example reply: not strict JSON, and receivers copy it.
PROVIDER_REPLY = b'{\n    code: 0,\n    message: "ok"\n}'

ENDPOINT = Endpoint(id=1, account_id="acc", url="https://example.com/dlr", protocol="ucloud")


def item(n: int = 0, **changes: object) -> PushItem:
    base = PushItem(
        delivery_id=n,
        report_id=n,
        msgid=f"m{n}",
        phone="8618888888888",
        segments=1,
        status="DELIVRD",
        description=None,
        report_time_ms=1563867000123,
        uid="u",
        batch_seq="",
        request_time_ms=None,
        unit_price=None,
        currency="CNY",
        access_number="",
        enrichment=Enrichment(),
    )
    return base._replace(**changes)  # type: ignore[arg-type]


def render_one(
    it: PushItem, endpoint: Endpoint = ENDPOINT, cat: Catalogue = DEFAULT_CATALOGUE
) -> dict[str, object]:
    [request] = PROTOCOL.render([it], endpoint, cat, 0)
    report: dict[str, object] = orjson.loads(request.body)["Data"][0]
    return report


def test_is_a_batched_protocol_named_ucloud() -> None:
    protocol: Protocol = PROTOCOL
    assert (protocol.name, protocol.batched) == ("ucloud", True)


def test_golden_provider_example() -> None:
    uid = "you man c define the content by yrself"
    items = [
        item(
            msgid="d0****f7-0fc3-****-****-9f73****6c6e",
            phone="185****9057",
            segments=2,
            status="DELIVRD",
            report_time_ms=1563867000000,
            uid=uid,
        ),
        item(
            msgid="d1****f7-0fc3-****-****-9f73****6c6e",
            phone="185****9057",
            segments=2,
            status="MSBLACK",
            report_time_ms=1563867000000,
            uid=uid,
        ),
    ]
    [request] = PROTOCOL.render(items, ENDPOINT, DEFAULT_CATALOGUE, 1563867001000)
    got = orjson.loads(request.body)
    expected = orjson.loads(PROVIDER_EXAMPLE)
    assert got == expected
    assert [list(r) for r in got["Data"]] == [list(r) for r in expected["Data"]]
    for report in got["Data"]:
        assert type(report["CostCount"]) is int
        assert type(report["ReceiptTime"]) is int
    assert request.items == tuple(items)
    assert request.content_type == "application/json; charset=utf-8"


def test_chinese_is_not_escaped() -> None:
    [request] = PROTOCOL.render([item()], ENDPOINT, DEFAULT_CATALOGUE, 0)
    assert "用户接收成功".encode() in request.body
    assert b"\\u" not in request.body


def test_batches_of_at_most_batch_max_in_order() -> None:
    items = [item(n) for n in range(250)]
    requests = PROTOCOL.render(items, ENDPOINT, DEFAULT_CATALOGUE, 0)
    assert [len(r.items) for r in requests] == [100, 100, 50]
    assert [i for r in requests for i in r.items] == items
    for r in requests:
        ids = [d["SessionNo"] for d in orjson.loads(r.body)["Data"]]
        assert ids == [i.msgid for i in r.items]


def test_nothing_to_push_renders_no_request() -> None:
    assert PROTOCOL.render([], ENDPOINT, DEFAULT_CATALOGUE, 0) == []


@pytest.mark.parametrize("uid", [None, ""])
def test_user_id_omitted_without_uid(uid: str | None) -> None:
    assert "UserId" not in render_one(item(uid=uid))


def test_receipt_time_is_unix_seconds_and_phone_untouched() -> None:
    report = render_one(item(report_time_ms=1563867000999, phone="00447911123456"))
    assert (report["ReceiptTime"], report["Phone"]) == (1563867000, "00447911123456")


@pytest.mark.parametrize(
    ("status", "description", "lang", "desc"),
    [
        ("MK:0001", "carrier says", "zh", DEFAULT_CATALOGUE.describe("MK:0001", "zh")),
        ("MK:0001", None, "en", DEFAULT_CATALOGUE.describe("MK:0001", "en")),
        ("XX:0042", "carrier says", "zh", "carrier says"),
        ("XX:0042", None, "zh", "状态码 XX:0042"),
        ("XX:0042", None, "en", "status XX:0042"),
        ("DELIVRD", None, "en", DEFAULT_CATALOGUE.describe("DELIVRD", "en")),
    ],
)
def test_description_catalogue_then_carrier_then_generic(
    status: str, description: str | None, lang: str, desc: str
) -> None:
    endpoint = dataclasses.replace(ENDPOINT, description_lang=lang)
    report = render_one(item(status=status, description=description), endpoint)
    assert report["ReceiptDesc"] == desc


def test_failure_codes_keep_their_stored_spelling() -> None:
    report = render_one(item(status="MK:0001"))
    assert (report["ReceiptResult"], report["ReceiptCode"]) == ("发送失败", "MK:0001")


def test_custom_catalogue_is_used() -> None:
    cat = Catalogue({"MSBLACK": {"zh": "黑名单"}})
    assert render_one(item(status="MSBLACK"), cat=cat)["ReceiptDesc"] == "黑名单"


OK = Verdict(True, AttemptOutcome.DELIVERED)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b'{"code": 0, "message": "ok"}', OK),
        (200, b'{"code": "0"}', OK),
        (204, b'{"code":0}', OK),
        (200, PROVIDER_REPLY, OK),
        (200, b"{code:0}", OK),
        (200, b"{'code': 0, 'message': 'ok'}", OK),
        (200, b"{'code': '0', data: {code: 1}}", OK),
        (200, b'{message: "ok", code: 0}', OK),
        (503, b'{"code": 0}', Verdict(False, AttemptOutcome.HTTP_ERROR, "HTTP 503")),
        (302, b"", Verdict(False, AttemptOutcome.HTTP_ERROR, "HTTP 302")),
        (200, b'{"code": 1}', Verdict(False, AttemptOutcome.REJECTED, "code 1")),
        (200, b'{"code": 10}', Verdict(False, AttemptOutcome.REJECTED, "code 10")),
        (200, b'{"code": 0.5}', Verdict(False, AttemptOutcome.REJECTED, "code 0.5")),
        (200, b'{"code": 0.0}', Verdict(False, AttemptOutcome.REJECTED, "code 0.0")),
        (200, b'{"code": false}', Verdict(False, AttemptOutcome.REJECTED, "code False")),
        (200, b"{code: 1, message: 'no'}", Verdict(False, AttemptOutcome.REJECTED, "code 1")),
        (200, b"{code: 10}", Verdict(False, AttemptOutcome.REJECTED, "code 10")),
        (200, b"{errcode: 0}", Verdict(False, AttemptOutcome.REJECTED, "no code in body")),
        (200, b'{"errcode": 0}', Verdict(False, AttemptOutcome.REJECTED, "no code in body")),
        (200, b"{data: {code: 0}}", Verdict(False, AttemptOutcome.REJECTED, "no code in body")),
        (200, b'{"data": {"code": 0}}', Verdict(False, AttemptOutcome.REJECTED, "no code in body")),
        (200, b"ok", Verdict(False, AttemptOutcome.REJECTED, "no code in body")),
        (200, b"", Verdict(False, AttemptOutcome.REJECTED, "no code in body")),
        (200, b"[0]", Verdict(False, AttemptOutcome.REJECTED, "no code in body")),
    ],
)
def test_verdict(status: int, body: bytes, expected: Verdict) -> None:
    assert PROTOCOL.verdict(status, body, ENDPOINT) == expected


def test_success_body_text_is_also_required() -> None:
    endpoint = dataclasses.replace(ENDPOINT, success_body_contains="ok")
    assert PROTOCOL.verdict(200, PROVIDER_REPLY, endpoint) == OK
    got = PROTOCOL.verdict(200, b'{"code": 0, "message": "fine"}', endpoint)
    assert (got.accepted, got.outcome) == (False, AttemptOutcome.REJECTED)
    assert PROTOCOL.verdict(200, b'{"code": 1, "message": "ok"}', endpoint).reason == "code 1"
