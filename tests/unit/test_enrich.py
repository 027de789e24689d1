import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlrpush.enrich import enrich
from dlrpush.models import Enrichment


@pytest.mark.parametrize(
    ("phone", "operator", "mnc"),
    [
        ("8618888888888", "中国移动", "2"),
        ("18888888888", "中国移动", "2"),
        ("+86 188 8888 8888", "中国移动", "2"),
        ("008618888888888", "中国移动", "2"),
        ("13012345678", "中国联通", "1"),
        ("18912345678", "中国电信", "3"),
    ],
)
def test_chinese_numbers(phone: str, operator: str, mnc: str) -> None:
    assert enrich(phone) == Enrichment("0086", "CN", operator, "460", mnc)


def test_given_values_override_derived_ones() -> None:
    got = enrich("18888888888", mcc="461", mnc="07", operator="某运营商")
    assert got == Enrichment("0086", "CN", "某运营商", "461", "07")


def test_given_operator_drives_the_mcc_mnc_table() -> None:
    assert enrich("18888888888", operator="中国联通").mnc == "1"


def test_international_without_plus_is_read_after_national_fails() -> None:
    got = enrich("447400123456")
    assert (got.country_number, got.region_code, got.mcc, got.mnc) == ("0044", "GB", "234", "20")
    # phonenumbers puts 7911 in Guernsey, which shares +44.
    assert enrich("447911123456").country_number == "0044"


def test_double_zero_prefix_is_international_whatever_the_default_region() -> None:
    got = enrich("0085261234567", default_region="US")
    assert (got.country_number, got.region_code, got.mno_name) == ("00852", "HK", "香港移动通讯")


def test_default_region_reads_national_numbers() -> None:
    got = enrich("07400 123456", default_region="GB")
    assert (got.country_number, got.region_code, got.mno_name) == ("0044", "GB", "Three")


def test_plus_with_invalid_rest_still_gives_the_calling_code() -> None:
    assert enrich("+4477009001234") == Enrichment(country_number="0044")


@pytest.mark.parametrize("phone", ["", "abc", "+", "12345", "not a phone"])
def test_garbage_gives_only_what_was_passed_in(phone: str) -> None:
    assert enrich(phone) == Enrichment()
    assert enrich(phone, operator="X", mcc="1", mnc="2") == Enrichment("", "", "X", "1", "2")


PHONE_LIKE = st.from_regex(r"(\+|00)?[0-9 ()\-]{0,25}", fullmatch=True)


@given(st.one_of(st.text(max_size=40), PHONE_LIKE), st.sampled_from(["CN", "US", "GB", "ZZ", ""]))
def test_never_raises(phone: str, region: str) -> None:
    got = enrich(phone, default_region=region)
    assert got.country_number == "" or got.country_number.startswith("00")
