import contextlib
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlrpush.errors import ConfigError, InvalidInput
from dlrpush.receipts import Receipt, parse_receipt

SHANGHAI = ZoneInfo("Asia/Shanghai")


def ms(y: int, mo: int, d: int, h: int, mi: int, s: int = 0, tz: ZoneInfo = SHANGHAI) -> int:
    return int(datetime(y, mo, d, h, mi, s, tzinfo=tz).timestamp() * 1000)


def test_standard_receipt() -> None:
    got = parse_receipt(
        "id:1234567890 sub:001 dlvrd:001 submit date:2506101652 done date:2506101653 "
        "stat:DELIVRD err:000 text:hello"
    )
    assert got == Receipt(
        id="1234567890",
        sub="001",
        dlvrd="001",
        submit_date_ms=ms(2025, 6, 10, 16, 52),
        done_date_ms=ms(2025, 6, 10, 16, 53),
        stat="DELIVRD",
        err="000",
        text="hello",
    )
    assert got.done_date_ms == 1749545580000


@pytest.mark.parametrize(("stat", "err"), [("MK:0001", "0001"), ("MI:0024", "MI:0024")])
def test_values_with_colons_and_four_digit_err(stat: str, err: str) -> None:
    got = parse_receipt(f"id:9 sub:001 dlvrd:000 done date:2506101653 stat:{stat} err:{err} text:")
    assert (got.stat, got.err, got.text) == (stat, err, "")


def test_keys_are_case_insensitive_and_whitespace_tolerated() -> None:
    got = parse_receipt("  ID: abc   Done  Date :2506101653  STAT: delivrd  ERR:000  ")
    assert (got.id, got.stat, got.err, got.done_date_ms) == (
        "abc",
        "DELIVRD",
        "000",
        ms(2025, 6, 10, 16, 53),
    )
    assert (got.sub, got.dlvrd, got.submit_date_ms, got.text) == ("", "", None, "")


def test_text_runs_to_the_end_even_over_key_names() -> None:
    got = parse_receipt("id:1 stat:UNDELIV err:001 text:Your code is 42 stat:fake id:2")
    assert (got.id, got.stat, got.text) == ("1", "UNDELIV", "Your code is 42 stat:fake id:2")


def test_keys_count_only_at_the_start_of_a_word() -> None:
    got = parse_receipt("id:x-stat:1 stat:DELIVRD err:id:7")
    assert (got.id, got.stat, got.err) == ("x-stat:1", "DELIVRD", "id:7")


def test_seconds_and_time_zone() -> None:
    got = parse_receipt("id:1 done date:250610165307 stat:DELIVRD", tz="UTC")
    assert got.done_date_ms == ms(2025, 6, 10, 16, 53, 7, tz=ZoneInfo("UTC"))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("sub:001 stat:DELIVRD", "no id"),
        ("id: stat:DELIVRD", "no id"),
        ("id:1 err:000", "no stat"),
        ("id:1 err:000 text:see stat:DELIVRD", "no stat"),
        ("id:1 done date:2513101653 stat:DELIVRD", "not a real date"),
        ("id:1 done date:2502301653 stat:DELIVRD", "not a real date"),
        ("id:1 done date:25061016 stat:DELIVRD", "YYMMDDhhmm"),
        ("id:1 submit date:yesterday stat:DELIVRD", "submit date"),
    ],
)
def test_bad_receipts_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_receipt(text)
    assert err.value.field == "receipt"
    assert words in err.value.message


def test_unknown_time_zone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Mars/Base"):
        parse_receipt("id:1 stat:DELIVRD", tz="Mars/Base")


@given(st.text())
def test_any_text_gives_a_receipt_or_invalid_input(text: str) -> None:
    got: Receipt | InvalidInput
    try:
        got = parse_receipt(text)
    except InvalidInput as err:
        got = err
    if isinstance(got, InvalidInput):
        assert got.field == "receipt"
    else:
        assert got.id
        assert got.stat


KEYS = ["id:", "sub:", "dlvrd:", "submit date:", "done date:", "stat:", "err:", "text:", " "]


@given(st.lists(st.sampled_from([*KEYS, "MK:0001", "2506101653", "9", "x"]), max_size=20))
def test_key_soup_gives_a_receipt_or_invalid_input(parts: list[str]) -> None:
    with contextlib.suppress(InvalidInput):
        parse_receipt("".join(parts))


TOKEN = st.text(alphabet="abcdefXYZ0123456789-_.:", min_size=1, max_size=20)
MINUTE = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59))


@given(
    id_=TOKEN,
    sub=st.from_regex(r"[0-9]{3}", fullmatch=True),
    dlvrd=st.from_regex(r"[0-9]{3}", fullmatch=True),
    submit=MINUTE,
    done=MINUTE,
    with_seconds=st.booleans(),
    stat=st.sampled_from(["DELIVRD", "UNDELIV", "MK:0001", "MI:0024", "EXPIRED"]),
    err=st.from_regex(r"[0-9]{3,4}", fullmatch=True),
    text=st.text(max_size=40).map(str.strip),
)
def test_round_trip(
    id_: str,
    sub: str,
    dlvrd: str,
    submit: datetime,
    done: datetime,
    with_seconds: bool,
    stat: str,
    err: str,
    text: str,
) -> None:
    fmt = "%y%m%d%H%M%S" if with_seconds else "%y%m%d%H%M"
    raw = (
        f"id:{id_} sub:{sub} dlvrd:{dlvrd} submit date:{submit.strftime(fmt)} "
        f"done date:{done.strftime(fmt)} stat:{stat} err:{err} text:{text}"
    )

    def shown_ms(moment: datetime) -> int:
        moment = moment.replace(microsecond=0, second=moment.second if with_seconds else 0)
        return int(moment.replace(tzinfo=SHANGHAI).timestamp()) * 1000

    expected = Receipt(id_, sub, dlvrd, shown_ms(submit), shown_ms(done), stat, err, text)
    assert parse_receipt(raw) == expected
