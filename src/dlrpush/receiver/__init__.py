"""Receiver SDK: read the status reports dlrpush pushes, in either wire format, and answer.

This package owns the customer's side of the two wire formats: one typed ``StatusReport``
for both, strict parsers that turn any malformed body into ``ReceiverParseError`` (never
another exception), and the answer bodies that tell a pusher "accepted" or "push again".
The parsers are deliberately strict about JSON types because dlrpush's own tests use them
to prove that what it sends is byte-compatible with what the providers document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, cast

import orjson

from dlrpush.errors import DlrpushError

__all__ = [
    "ACCEPT_BODY",
    "INNOPAAS_FIELDS",
    "LOOSE_ACCEPT_BODY",
    "PROTOCOLS",
    "UCLOUD_DELIVERED",
    "UCLOUD_FAILED",
    "ReceiverParseError",
    "StatusReport",
    "accept_body",
    "parse",
    "parse_innopaas",
    "parse_ucloud",
    "reject_body",
]

PROTOCOLS: Final = ("ucloud", "innopaas")

UCLOUD_DELIVERED: Final = "发送成功"
UCLOUD_FAILED: Final = "发送失败"
UCLOUD_MSG_TYPE: Final = 2

# Every key an innopaas push carries, in the provider's documented order.
INNOPAAS_FIELDS: Final = (
    "receiver",
    "pswd",
    "msgid",
    "batchSeq",
    "uid",
    "reportTime",
    "notifyTime",
    "requestTime",
    "mobile",
    "status",
    "currency",
    "smsNum",
    "unitPrice",
    "fee",
    "accessNumber",
    "countryNumber",
    "regionCode",
    "mnoName",
    "mcc",
    "mnc",
)

ACCEPT_BODY: Final = orjson.dumps({"code": 0, "message": "ok"})
# The provider's own example answer is not strict JSON (bare keys); pushers must still
# read it as success, so the receiver can send it verbatim to prove that.
LOOSE_ACCEPT_BODY: Final = b'{\n    code: 0,\n    message: "ok"\n}'

_MISSING: Final = object()

# More digits than this cannot be an epoch-ms time or a segment count, and int() refuses
# very long digit strings with its own ValueError.
_MAX_DIGITS: Final = 18

_JSON_TYPE_NAMES: Final[Mapping[type, str]] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


class ReceiverParseError(DlrpushError, ValueError):
    """A pushed body is malformed; ``field`` names where (``"Data[0].CostCount"``)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One status report, whichever wire format it came in.

    ``status`` is upper-cased (ucloud's ``Delivrd`` reads ``DELIVRD``); ``uid`` and
    ``description`` are None when absent or empty; ``raw`` is the report's own JSON object
    exactly as received (for ucloud, one element of ``Data``).
    """

    msgid: str
    phone: str
    status: str
    delivered: bool
    report_time_ms: int
    segments: int
    uid: str | None
    description: str | None
    protocol: str
    # A dict cannot be hashed; equality still compares it.
    raw: Mapping[str, object] = field(hash=False, repr=False)


def accept_body() -> bytes:
    """The answer that means "accepted" in both formats (send it with HTTP 200)."""
    return ACCEPT_BODY


def reject_body(code: int, message: str) -> bytes:
    """A ucloud-style refusal: any non-zero ``code`` makes the pusher push again."""
    return orjson.dumps({"code": code, "message": message})


def parse(protocol: str, body: bytes) -> list[StatusReport]:
    """Reports in one pushed body of ``protocol`` ("ucloud" or "innopaas")."""
    if protocol == "ucloud":
        return parse_ucloud(body)
    if protocol == "innopaas":
        return [parse_innopaas(body)]
    raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")


def parse_ucloud(body: bytes) -> list[StatusReport]:
    """Reports in a ucloud batch push ``{"MsgType": 2, "Data": [...]}``, in order."""
    doc = _load_object(body)
    msg_type = doc.get("MsgType", _MISSING)
    if msg_type is _MISSING:
        raise ReceiverParseError("missing", "MsgType")
    if type(msg_type) is not int or msg_type != UCLOUD_MSG_TYPE:
        raise ReceiverParseError(f"expected the integer 2, got {_describe(msg_type)}", "MsgType")
    data = doc.get("Data", _MISSING)
    if data is _MISSING:
        raise ReceiverParseError("missing", "Data")
    if type(data) is not list:
        raise ReceiverParseError(f"expected an array, got {_describe(data)}", "Data")
    if not data:
        # A pusher has no reason to send an empty batch; treat it as its bug.
        raise ReceiverParseError("expected at least one report, got an empty array", "Data")
    return [_ucloud_report(item, i) for i, item in enumerate(data)]


def parse_innopaas(body: bytes) -> StatusReport:
    """The one report in an innopaas push: a flat JSON object whose values are all strings."""
    doc = _load_object(body)
    for key, value in doc.items():
        if type(value) is not str:
            raise ReceiverParseError(f"expected a string, got {_describe(value)}", key)
    for key in INNOPAAS_FIELDS:
        if key not in doc:
            raise ReceiverParseError("missing", key)
    values = cast("dict[str, str]", doc)  # every value was checked above
    msgid = _non_empty(values["msgid"], "msgid")
    status = _non_empty(values["status"], "status").upper()
    report_time_ms = _digits(values["reportTime"], "reportTime")
    _digits(values["notifyTime"], "notifyTime")
    if values["requestTime"]:
        _digits(values["requestTime"], "requestTime")
    segments = _digits(values["smsNum"], "smsNum")
    if segments < 1:
        raise ReceiverParseError(f"expected at least 1, got {segments}", "smsNum")
    return StatusReport(
        msgid=msgid,
        phone=values["mobile"],
        status=status,
        delivered=status == "DELIVRD",
        report_time_ms=report_time_ms,
        segments=segments,
        uid=values["uid"] or None,
        description=None,
        protocol="innopaas",
        raw=doc,
    )


def _load_object(body: bytes) -> dict[str, object]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ReceiverParseError(f"not valid JSON ({exc})", "body") from None
    if type(doc) is not dict:
        raise ReceiverParseError(f"expected a JSON object, got {_describe(doc)}", "body")
    return doc


def _ucloud_report(item: object, index: int) -> StatusReport:
    where = f"Data[{index}]"
    if type(item) is not dict:
        raise ReceiverParseError(f"expected an object, got {_describe(item)}", where)
    msgid = _non_empty(_str(item, "SessionNo", where), f"{where}.SessionNo")
    phone = _str(item, "Phone", where)
    segments = _int(item, "CostCount", where)
    if segments < 1:
        raise ReceiverParseError(f"expected at least 1, got {segments}", f"{where}.CostCount")
    receipt_time = _int(item, "ReceiptTime", where)
    if receipt_time < 0:
        raise ReceiverParseError(
            f"expected Unix seconds, got {receipt_time}", f"{where}.ReceiptTime"
        )
    result = _str(item, "ReceiptResult", where)
    if result != UCLOUD_DELIVERED and result != UCLOUD_FAILED:
        raise ReceiverParseError(
            f"expected {UCLOUD_DELIVERED!r} or {UCLOUD_FAILED!r}, got {result!r}",
            f"{where}.ReceiptResult",
        )
    code = _str(item, "ReceiptCode", where)
    desc = _str(item, "ReceiptDesc", where)
    uid = item.get("UserId", _MISSING)
    if uid is _MISSING:
        uid = None
    elif type(uid) is not str:
        raise ReceiverParseError(f"expected a string, got {_describe(uid)}", f"{where}.UserId")
    return StatusReport(
        msgid=msgid,
        phone=phone,
        status=code.upper(),
        delivered=result == UCLOUD_DELIVERED,
        report_time_ms=receipt_time * 1000,
        segments=segments,
        uid=uid or None,
        description=desc or None,
        protocol="ucloud",
        raw=item,
    )


def _str(obj: dict[str, object], key: str, where: str) -> str:
    value = obj.get(key, _MISSING)
    if type(value) is str:
        return value
    if value is _MISSING:
        raise ReceiverParseError("missing", f"{where}.{key}")
    raise ReceiverParseError(f"expected a string, got {_describe(value)}", f"{where}.{key}")


def _int(obj: dict[str, object], key: str, where: str) -> int:
    value = obj.get(key, _MISSING)
    # type() rather than isinstance(): JSON true/false must not pass as 1/0.
    if type(value) is int:
        return value
    if value is _MISSING:
        raise ReceiverParseError("missing", f"{where}.{key}")
    raise ReceiverParseError(f"expected an integer, got {_describe(value)}", f"{where}.{key}")


def _non_empty(value: str, where: str) -> str:
    if not value:
        raise ReceiverParseError("must not be empty", where)
    return value


def _digits(value: str, where: str) -> int:
    # isdigit() alone admits non-ASCII digits such as "²", which int() rejects.
    if value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS:
        return int(value)
    raise ReceiverParseError(f"expected a decimal integer string, got {value[:40]!r}", where)


def _describe(value: object) -> str:
    name = _JSON_TYPE_NAMES.get(type(value))
    if name is None:
        return type(value).__name__
    if type(value) is str:
        return f"a string {value[:40]!r}"
    if type(value) in (int, float, bool):
        return f"{name} {orjson.dumps(value).decode()}"
    return name
