"""The receiver SDK reads both wire formats exactly as the providers document them.

These tests pin the typed reading of the providers' own examples, the strictness that lets
dlrpush's tests prove byte compatibility, and that no input at all escapes as anything but
``ReceiverParseError``.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlrpush.errors import DlrpushError
from dlrpush.receiver import (
    INNOPAAS_FIELDS,
    ReceiverParseError,
    StatusReport,
    accept_body,
    parse,
    parse_innopaas,
    parse_ucloud,
    reject_body,
)

# The providers' documented examples, verbatim.
UCLOUD_EXAMPLE = (
    '{"MsgType": 2, "Data": [{"SessionNo": "d0****f7-0fc3-****-****-9f73****6c6e", '
    '"Phone": "185****9057", "CostCount": 2, "ReceiptTime": 1563867000, '
    '"ReceiptResult": "发送成功", "ReceiptCode": "Delivrd", "ReceiptDesc": "用户接收成功", '
    '"UserId": "you man c define the content by yrself"}, '
    '{"SessionNo": "d1****f7-0fc3-****-****-9f73****6c6e", "Phone": "185****9057", '
    '"CostCount": 2, "ReceiptTime": 1563867000, "ReceiptResult": "发送失败", '
    '"ReceiptCode": "MSBLACK", "ReceiptDesc": "手机在运营商防骚扰黑名单", '
    '"UserId": "you man c define the content by yrself"}]}'
).encode()
INNOPAAS_EXAMPLE = (
    '{"batchSeq": "I8393346_2506101652_35", "unitPrice": "0.05670", "countryNumber": "0086", '
    '"mnc": "2", "receiver": "account", "pswd": "password", "mnoName": "中国移动", '
    '"notifyTime": "1749545540975", "fee": "0.0567", "mobile": "8618888888888", '
    '"msgid": "627239445736452096", "mcc": "460", "requestTime": "1749545538198", '
    '"uid": "I8393346_2506101652_35", "regionCode": "CN", "accessNumber": "508tongdao", '
    '"currency": "CNY", "status": "DELIVRD", "reportTime": "1749545540967", "smsNum": "1"}'
).encode()

UCLOUD_REPORT_FIELDS = (
    "SessionNo",
    "Phone",
    "CostCount",
    "ReceiptTime",
    "ReceiptResult",
    "ReceiptCode",
    "ReceiptDesc",
)


def ucloud_doc() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(UCLOUD_EXAMPLE)
    return doc


def innopaas_doc() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(INNOPAAS_EXAMPLE)
    return doc


def parse_error(func: Any, body: bytes) -> ReceiverParseError:
    with pytest.raises(ReceiverParseError) as info:
        func(body)
    return info.value


# --- the providers' examples --------------------------------------------------------------


def test_ucloud_example_reads_as_two_typed_reports() -> None:
    reports = parse_ucloud(UCLOUD_EXAMPLE)

    assert reports == [
        StatusReport(
            msgid="d0****f7-0fc3-****-****-9f73****6c6e",
            phone="185****9057",
            status="DELIVRD",
            delivered=True,
            report_time_ms=1_563_867_000_000,
            segments=2,
            uid="you man c define the content by yrself",
            description="用户接收成功",
            protocol="ucloud",
            raw=ucloud_doc()["Data"][0],
        ),
        StatusReport(
            msgid="d1****f7-0fc3-****-****-9f73****6c6e",
            phone="185****9057",
            status="MSBLACK",
            delivered=False,
            report_time_ms=1_563_867_000_000,
            segments=2,
            uid="you man c define the content by yrself",
            description="手机在运营商防骚扰黑名单",
            protocol="ucloud",
            raw=ucloud_doc()["Data"][1],
        ),
    ]


def test_innopaas_example_reads_as_one_typed_report() -> None:
    report = parse_innopaas(INNOPAAS_EXAMPLE)

    assert report == StatusReport(
        msgid="627239445736452096",
        phone="8618888888888",
        status="DELIVRD",
        delivered=True,
        report_time_ms=1_749_545_540_967,
        segments=1,
        uid="I8393346_2506101652_35",
        description=None,
        protocol="innopaas",
        raw=innopaas_doc(),
    )
    assert report.raw["unitPrice"] == "0.05670"  # prices stay the exact decimal text


def test_parse_dispatches_on_protocol_and_always_returns_a_list() -> None:
    assert [r.msgid for r in parse("ucloud", UCLOUD_EXAMPLE)] == [
        "d0****f7-0fc3-****-****-9f73****6c6e",
        "d1****f7-0fc3-****-****-9f73****6c6e",
    ]
    assert [r.msgid for r in parse("innopaas", INNOPAAS_EXAMPLE)] == ["627239445736452096"]
    with pytest.raises(ValueError, match="unknown protocol 'smpp'"):
        parse("smpp", UCLOUD_EXAMPLE)


def test_reports_are_hashable_values() -> None:
    first, second = parse_ucloud(UCLOUD_EXAMPLE)
    again = parse_ucloud(UCLOUD_EXAMPLE)[0]

    assert {first, second, again} == {first, second}


# --- normalisation ------------------------------------------------------------------------


def test_ucloud_without_user_id_has_no_uid_and_empty_texts_read_as_none() -> None:
    doc = ucloud_doc()
    del doc["Data"][0]["UserId"]
    doc["Data"][1]["UserId"] = ""
    doc["Data"][1]["ReceiptDesc"] = ""

    first, second = parse_ucloud(orjson.dumps(doc))

    assert (first.uid, second.uid, second.description) == (None, None, None)


@pytest.mark.parametrize(
    ("status", "normalised", "delivered"),
    [("DELIVRD", "DELIVRD", True), ("Delivrd", "DELIVRD", True), ("undeliv", "UNDELIV", False)],
)
def test_innopaas_status_is_upper_cased_and_only_delivrd_is_delivered(
    status: str, normalised: str, delivered: bool
) -> None:
    doc = innopaas_doc()
    doc["status"] = status

    report = parse_innopaas(orjson.dumps(doc))

    assert (report.status, report.delivered) == (normalised, delivered)


def test_innopaas_empty_request_time_and_uid_are_allowed() -> None:
    doc = innopaas_doc()
    doc["requestTime"] = ""
    doc["uid"] = ""

    report = parse_innopaas(orjson.dumps(doc))

    assert report.uid is None
    assert report.raw["requestTime"] == ""


# --- strictness ---------------------------------------------------------------------------


def _ucloud_with(path: str, value: object) -> bytes:
    """The ucloud example with one field set (value ``...`` deletes it)."""
    doc = ucloud_doc()
    target: Any = doc
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    key: int | str = int(last) if last.isdigit() else last
    if value is ...:
        del target[key]
    else:
        target[key] = value
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    ("path", "value", "field", "says"),
    [
        ("Data.0.CostCount", "2", "Data[0].CostCount", "expected an integer, got a string '2'"),
        ("Data.0.CostCount", 2.0, "Data[0].CostCount", "expected an integer, got a number"),
        ("Data.0.CostCount", True, "Data[0].CostCount", "expected an integer, got a boolean"),
        ("Data.0.CostCount", 0, "Data[0].CostCount", "at least 1"),
        ("Data.1.ReceiptTime", "1563867000", "Data[1].ReceiptTime", "expected an integer"),
        ("Data.1.ReceiptTime", -1, "Data[1].ReceiptTime", "Unix seconds"),
        ("Data.0.SessionNo", 12345, "Data[0].SessionNo", "expected a string"),
        ("Data.0.SessionNo", "", "Data[0].SessionNo", "must not be empty"),
        ("Data.1.Phone", ..., "Data[1].Phone", "missing"),
        ("Data.0.Phone", None, "Data[0].Phone", "expected a string, got null"),
        ("Data.0.ReceiptResult", "ok", "Data[0].ReceiptResult", "'发送成功' or '发送失败'"),
        ("Data.0.ReceiptCode", ..., "Data[0].ReceiptCode", "missing"),
        ("Data.0.ReceiptDesc", ["x"], "Data[0].ReceiptDesc", "got an array"),
        ("Data.0.UserId", None, "Data[0].UserId", "expected a string, got null"),
        ("MsgType", "2", "MsgType", "expected the integer 2"),
        ("MsgType", 1, "MsgType", "expected the integer 2, got an integer 1"),
        ("MsgType", ..., "MsgType", "missing"),
        ("Data", {"SessionNo": "x"}, "Data", "expected an array, got an object"),
        ("Data", [], "Data", "at least one report"),
        ("Data", ..., "Data", "missing"),
        ("Data.1", "report", "Data[1]", "expected an object"),
    ],
)
def test_ucloud_rejects_malformed_fields_naming_them(
    path: str, value: object, field: str, says: str
) -> None:
    error = parse_error(parse_ucloud, _ucloud_with(path, value))

    assert error.field == field
    assert str(error).startswith(f"{field}: ")
    assert says in str(error)


def _innopaas_with(key: str, value: object) -> bytes:
    doc = innopaas_doc()
    if value is ...:
        del doc[key]
    else:
        doc[key] = value
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("smsNum", 1, "expected a string, got an integer 1"),
        ("reportTime", 1749545540967, "expected a string"),
        ("requestTime", None, "expected a string, got null"),
        ("fee", 0.0567, "expected a string, got a number"),
        ("extra", True, "expected a string, got a boolean"),
        ("fee", ..., "missing"),
        ("mnc", ..., "missing"),
        ("reportTime", "2025-06-10 16:52", "decimal integer string"),
        ("reportTime", "²", "decimal integer string"),
        ("notifyTime", "-1", "decimal integer string"),
        ("requestTime", "soon", "decimal integer string"),
        ("smsNum", "0", "at least 1"),
        ("smsNum", "9" * 5000, "decimal integer string"),
        ("msgid", "", "must not be empty"),
        ("status", "", "must not be empty"),
    ],
)
def test_innopaas_rejects_malformed_fields_naming_them(key: str, value: object, says: str) -> None:
    error = parse_error(parse_innopaas, _innopaas_with(key, value))

    assert error.field == key
    assert says in str(error)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "not valid JSON"),
        (b"MsgType=2", "not valid JSON"),
        (b'{"MsgType": 2,', "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[]", "expected a JSON object, got an array"),
        (b'"text"', "expected a JSON object, got a string"),
        (b"null", "expected a JSON object, got null"),
    ],
)
@pytest.mark.parametrize("protocol", ["ucloud", "innopaas"])
def test_bodies_that_are_not_a_json_object_are_refused(
    protocol: str, body: bytes, says: str
) -> None:
    with pytest.raises(ReceiverParseError) as info:
        parse(protocol, body)

    assert info.value.field == "body"
    assert says in str(info.value)


def test_parse_error_is_a_value_error_and_a_dlrpush_error() -> None:
    error = parse_error(parse_innopaas, b"{}")

    assert isinstance(error, ValueError)
    assert isinstance(error, DlrpushError)
    assert error.field == "receiver"  # the first documented key is reported first


def test_unknown_ucloud_keys_are_tolerated_and_kept_in_raw() -> None:
    report = parse_ucloud(_ucloud_with("Data.0.Extra", "x"))[0]

    assert report.raw["Extra"] == "x"


# --- answers ------------------------------------------------------------------------------


def test_accept_body_is_strict_json_code_zero() -> None:
    assert accept_body() == b'{"code":0,"message":"ok"}'
    assert orjson.loads(accept_body()) == {"code": 0, "message": "ok"}


def test_reject_body_carries_the_code_and_message() -> None:
    assert orjson.loads(reject_body(7, "账户已停用")) == {"code": 7, "message": "账户已停用"}


# --- fuzzing ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


def _parse_or_refuse(protocol: str, body: bytes) -> list[StatusReport] | ReceiverParseError:
    try:
        return parse(protocol, body)
    except ReceiverParseError as exc:
        return exc


@settings(max_examples=300)
@given(body=st.binary(max_size=300), protocol=st.sampled_from(["ucloud", "innopaas"]))
def test_any_bytes_parse_or_raise_only_receiver_parse_error(protocol: str, body: bytes) -> None:
    result = _parse_or_refuse(protocol, body)

    assert isinstance(result, list | ReceiverParseError)


@settings(max_examples=300)
@given(doc=json_values, protocol=st.sampled_from(["ucloud", "innopaas"]))
def test_any_json_parses_or_raises_only_receiver_parse_error(protocol: str, doc: object) -> None:
    result = _parse_or_refuse(protocol, orjson.dumps(doc))

    assert isinstance(result, list | ReceiverParseError)


# Near-miss documents: the examples with odd values in a few fields or a field or two gone, so
# the fuzzing reaches every per-field check instead of stopping at "not an object".
_odd_values = (
    json_values | st.integers(-(2**63), 2**63 - 1) | st.text(alphabet="0123456789²٣", max_size=20)
)


def _near_miss(example: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.sampled_from(sorted(example))
    return st.builds(
        lambda changed, gone: {
            k: changed.get(k, v) for k, v in example.items() if k not in gone or k in changed
        },
        st.dictionaries(keys, _odd_values, max_size=3),
        st.sets(keys, max_size=2),
    )


ucloud_like = st.fixed_dictionaries(
    {
        "MsgType": st.just(2) | json_values,
        "Data": st.lists(_near_miss(ucloud_doc()["Data"][0]) | json_values, max_size=3),
    }
)
innopaas_like = _near_miss(innopaas_doc())


@settings(max_examples=500)
@given(doc=ucloud_like | innopaas_like, protocol=st.sampled_from(["ucloud", "innopaas"]))
def test_near_miss_documents_parse_or_raise_only_receiver_parse_error(
    protocol: str, doc: object
) -> None:
    result = _parse_or_refuse(protocol, orjson.dumps(doc))

    assert isinstance(result, list | ReceiverParseError)


@settings(max_examples=300)
@given(
    index=st.integers(min_value=0, max_value=1),
    key=st.sampled_from(UCLOUD_REPORT_FIELDS),
    value=json_values,
)
def test_ucloud_field_of_the_wrong_type_is_named(index: int, key: str, value: object) -> None:
    doc = ucloud_doc()
    original = doc["Data"][index][key]
    doc["Data"][index][key] = value

    result = _parse_or_refuse("ucloud", orjson.dumps(doc))

    if type(value) is not type(original):
        assert isinstance(result, ReceiverParseError)
        assert result.field == f"Data[{index}].{key}"
    elif isinstance(result, list):
        assert result[index].raw[key] == value
    else:
        assert result.field == f"Data[{index}].{key}"


@settings(max_examples=300)
@given(key=st.sampled_from(INNOPAAS_FIELDS), value=json_values)
def test_innopaas_field_of_the_wrong_type_is_named(key: str, value: object) -> None:
    doc = innopaas_doc()
    doc[key] = value

    result = _parse_or_refuse("innopaas", orjson.dumps(doc))

    if type(value) is not str:
        assert isinstance(result, ReceiverParseError)
        assert result.field == key
    elif isinstance(result, list):
        assert result[0].raw[key] == value
    else:
        assert result.field == key


@st.composite
def ucloud_reports(draw: st.DrawFn) -> dict[str, object]:
    report: dict[str, object] = {
        "SessionNo": draw(st.text(min_size=1, max_size=40)),
        "Phone": draw(st.text(max_size=20)),
        "CostCount": draw(st.integers(min_value=1, max_value=10)),
        "ReceiptTime": draw(st.integers(min_value=0, max_value=4_102_444_800)),
        "ReceiptResult": draw(st.sampled_from(["发送成功", "发送失败"])),
        "ReceiptCode": draw(st.text(max_size=12)),
        "ReceiptDesc": draw(st.text(max_size=30)),
    }
    if draw(st.booleans()):
        report["UserId"] = draw(st.text(max_size=30))
    return report


@settings(max_examples=200)
@given(reports=st.lists(ucloud_reports(), min_size=1, max_size=5))
def test_well_formed_ucloud_batches_read_back_field_for_field(
    reports: list[dict[str, object]],
) -> None:
    body = orjson.dumps({"MsgType": 2, "Data": copy.deepcopy(reports)})

    parsed = parse_ucloud(body)

    assert [r.raw for r in parsed] == reports
    for got, sent in zip(parsed, reports, strict=True):
        assert got.msgid == sent["SessionNo"]
        assert got.phone == sent["Phone"]
        assert got.segments == sent["CostCount"]
        assert got.report_time_ms == sent["ReceiptTime"] * 1000  # type: ignore[operator]
        assert got.delivered == (sent["ReceiptResult"] == "发送成功")
        assert got.status == str(sent["ReceiptCode"]).upper()
        assert got.uid == (sent.get("UserId") or None)
        assert got.description == (sent["ReceiptDesc"] or None)
