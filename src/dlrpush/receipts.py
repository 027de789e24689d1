"""SMPP 3.4 delivery receipt text (``id:... sub:... stat:... text:...``) read into a Receipt.

Carriers bend the format, so this reader finds each key by name (case-insensitive, at
the start or after whitespace) and lets its value run to the next known key: values with
colons (``stat:MK:0001``) survive, and ``text:`` takes the rest of the line. Any input
gives either a Receipt or ``InvalidInput(field="receipt")``; a bad ``tz`` is a
``ConfigError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dlrpush.catalogue import normalise_status
from dlrpush.errors import ConfigError, InvalidInput

_KEY = re.compile(
    r"(?<!\S)(id|sub|dlvrd|submit\s+date|done\s+date|stat|err|text)\s*:", re.IGNORECASE
)
_DATE = re.compile(r"([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})?")


@dataclass(frozen=True, slots=True)
class Receipt:
    id: str
    sub: str
    dlvrd: str
    submit_date_ms: int | None
    done_date_ms: int | None
    stat: str
    err: str
    text: str


def _fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    matches = list(_KEY.finditer(text))
    for i, m in enumerate(matches):
        key = " ".join(m.group(1).lower().split())
        end = len(text) if key == "text" or i + 1 == len(matches) else matches[i + 1].start()
        fields.setdefault(key, text[m.end() : end].strip())
        if key == "text":
            # Free text may contain anything, "stat:" included.
            break
    return fields


def _epoch_ms(value: str, name: str, zone: ZoneInfo) -> int | None:
    if not value:
        return None
    m = _DATE.fullmatch(value)
    if m is None:
        raise InvalidInput(f"receipt {name} {value!r} is not YYMMDDhhmm[ss]", field="receipt")
    yy, mo, dd, hh, mi, ss = (int(g or 0) for g in m.groups())
    try:
        moment = datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=zone)
    except ValueError:
        raise InvalidInput(f"receipt {name} {value!r} is not a real date", "receipt") from None
    return int(moment.timestamp()) * 1000


def parse_receipt(text: str, *, tz: str = "Asia/Shanghai") -> Receipt:
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {tz!r}") from None
    if not text.strip():
        raise InvalidInput("receipt is empty", field="receipt")
    fields = _fields(text)
    for key in ("id", "stat"):
        if not fields.get(key):
            raise InvalidInput(f"receipt has no {key}: {text[:80]!r}", field="receipt")
    return Receipt(
        id=fields["id"],
        sub=fields.get("sub", ""),
        dlvrd=fields.get("dlvrd", ""),
        submit_date_ms=_epoch_ms(fields.get("submit date", ""), "submit date", zone),
        done_date_ms=_epoch_ms(fields.get("done date", ""), "done date", zone),
        stat=normalise_status(fields["stat"]),
        err=fields.get("err", ""),
        text=fields.get("text", ""),
    )
