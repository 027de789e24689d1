"""The ``ucloud`` wire format: many reports per POST, and the receiver's ``code`` reply.

Renders ``{"MsgType": 2, "Data": [...]}`` batches of at most ``endpoint.batch_max``
reports, with the provider's spellings (``Delivrd``, ``发送成功``/``发送失败``). A push
is accepted only on a 2xx answer whose body's top-level ``code`` is 0; the provider's
own reply example is not strict JSON (``{code: 0, message: "ok"}``) and receivers copy
it, so bodies orjson refuses are read leniently.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import orjson

from dlrpush.catalogue import Catalogue, is_success
from dlrpush.models import AttemptOutcome, Endpoint, PushItem, PushRequest, Verdict
from dlrpush.protocols import Protocol

# A "code" key, bare, single- or double-quoted, right after "{" or ",".
_LOOSE_CODE = re.compile(
    r"""(?P<lead>[{,])\s*(?P<q>["']?)code(?P=q)\s*:\s*(?P<value>"[^"]*"|'[^']*'|[^,}\s]+)"""
)
_NO_CODE = object()


def _report(item: PushItem, endpoint: Endpoint, catalogue: Catalogue) -> dict[str, object]:
    success = is_success(item.status)
    lang = endpoint.description_lang
    if catalogue.knows(item.status) or not item.description:
        description = catalogue.describe(item.status, lang)
    else:
        description = item.description
    report: dict[str, object] = {
        "SessionNo": item.msgid,
        "Phone": item.phone,
        "CostCount": item.segments,
        "ReceiptTime": item.report_time_ms // 1000,
        "ReceiptResult": "发送成功" if success else "发送失败",
        "ReceiptCode": "Delivrd" if success else item.status,
        "ReceiptDesc": description,
    }
    if item.uid:
        report["UserId"] = item.uid
    return report


def _code(body: bytes) -> object:
    """The top-level ``code`` value, or ``_NO_CODE``."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace")
        for m in _LOOSE_CODE.finditer(text):
            # Brace depth 1 is the top level; braces inside strings can fool this count,
            # an accepted cost of a reading meant only for not-quite-JSON replies.
            before = text[: m.end("lead")]
            if before.count("{") - before.count("}") == 1:
                value = m.group("value")
                return value[1:-1] if value[0] in "\"'" else (0 if value == "0" else value)
        return _NO_CODE
    return data.get("code", _NO_CODE) if isinstance(data, dict) else _NO_CODE


class _Ucloud:
    name = "ucloud"
    batched = True

    def render(
        self, items: Sequence[PushItem], endpoint: Endpoint, catalogue: Catalogue, now_ms: int
    ) -> list[PushRequest]:
        size = max(1, endpoint.batch_max)
        requests: list[PushRequest] = []
        for start in range(0, len(items), size):
            batch = tuple(items[start : start + size])
            data = [_report(item, endpoint, catalogue) for item in batch]
            requests.append(PushRequest(batch, orjson.dumps({"MsgType": 2, "Data": data})))
        return requests

    def verdict(self, status: int, body: bytes, endpoint: Endpoint) -> Verdict:
        if not 200 <= status < 300:
            return Verdict(False, AttemptOutcome.HTTP_ERROR, f"HTTP {status}")
        code = _code(body)
        if code is _NO_CODE:
            return Verdict(False, AttemptOutcome.REJECTED, "no code in body")
        # Exactly 0 or "0": 0.0 == 0 and False == 0 in Python, but neither is the contract's 0.
        if not (code == "0" or (type(code) is int and code == 0)):
            return Verdict(False, AttemptOutcome.REJECTED, f"code {str(code)[:60]}")
        wanted = endpoint.success_body_contains
        if wanted and wanted.encode() not in body:
            return Verdict(False, AttemptOutcome.REJECTED, f"body lacks {wanted!r}")
        return Verdict(True, AttemptOutcome.DELIVERED)


PROTOCOL: Protocol = _Ucloud()
