"""What can be told about a phone number from the number itself: country, region, operator.

Uses ``phonenumbers`` for the calling code, ISO region and the operator that holds the
number's range (ported numbers keep the original operator's name). MCC/MNC come from a
small table keyed by region and operator name; anything not derivable stays "". Never
raises: a number it cannot read gives an Enrichment of what the caller passed in.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import carrier

from dlrpush.models import Enrichment

# MNCs are written without leading zeros because the provider's own example pairs
# 中国移动 with mnc "2"; the English aliases catch operator names given by platforms.
_MCC_MNC: dict[tuple[str, str], tuple[str, str]] = {
    ("CN", "中国移动"): ("460", "2"),
    ("CN", "China Mobile"): ("460", "2"),
    ("CN", "中国联通"): ("460", "1"),
    ("CN", "China Unicom"): ("460", "1"),
    ("CN", "中国电信"): ("460", "3"),
    ("CN", "China Telecom"): ("460", "3"),
    ("CN", "中国广电"): ("460", "15"),
    ("CN", "China Broadnet"): ("460", "15"),
    ("GB", "O2"): ("234", "10"),
    ("GB", "Vodafone"): ("234", "15"),
    ("GB", "Three"): ("234", "20"),
    ("GB", "EE"): ("234", "30"),
    ("GB", "Orange"): ("234", "33"),
}


def _try_parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def _read(phone: str, default_region: str) -> phonenumbers.PhoneNumber | None:
    text = phone.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    if text.startswith("+"):
        # An explicit calling code is trusted even when the rest is not a valid number.
        return _try_parse(text, None)
    number = _try_parse(text, default_region)
    if number is not None and phonenumbers.is_valid_number(number):
        return number
    # Platforms often send international numbers without "+" (447911123456).
    number = _try_parse("+" + text, None)
    return number if number is not None and phonenumbers.is_valid_number(number) else None


def enrich(
    phone: str,
    *,
    default_region: str = "CN",
    mcc: str = "",
    mnc: str = "",
    operator: str = "",
) -> Enrichment:
    number = _read(phone, default_region)
    if number is None:
        return Enrichment(mno_name=operator, mcc=mcc, mnc=mnc)
    region = phonenumbers.region_code_for_number(number) or ""
    # Ranges outside China have no Chinese operator names; English beats nothing.
    name = (
        operator or carrier.name_for_number(number, "zh") or carrier.name_for_number(number, "en")
    )
    table_mcc, table_mnc = _MCC_MNC.get((region, name), ("", ""))
    return Enrichment(
        country_number=f"00{number.country_code}",
        region_code=region,
        mno_name=name,
        mcc=mcc or table_mcc,
        mnc=mnc or table_mnc,
    )
