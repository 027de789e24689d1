import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlrpush.rules import uid_problem

ALLOWED = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),  # CJK ideographs
        st.sampled_from("abcXYZ0123456789-_ "),
    ),
    max_size=32,
)


@pytest.mark.parametrize("uid", ["", "order-2025_06 abc", "订单号 12345", "x" * 32, "é"])
def test_ordinary_uids_pass(uid: str) -> None:
    assert uid_problem(uid) is None


@given(ALLOWED)
def test_letters_digits_chinese_dash_underscore_space_pass(uid: str) -> None:
    assert uid_problem(uid) is None


@pytest.mark.parametrize("length", [33, 40])
def test_too_long(length: int) -> None:
    assert uid_problem("a" * length) == f"uid is {length} characters; at most 32 allowed"


def test_single_quote() -> None:
    assert uid_problem("it's") == "uid contains a single quote"


@pytest.mark.parametrize(
    ("uid", "codepoint"),
    [
        ("hi😀", "U+1F600"),  # outside the BMP
        ("ok☺", "U+263A"),  # BMP emoji, category So
        ("✅done", "U+2705"),
        ("a\u200db", "U+200D"),  # zero-width joiner
        ("a\ufe0f", "U+FE0F"),  # emoji variation selector
        ("a\ud800", "U+D800"),  # lone surrogate
    ],
)
def test_emoji_and_symbols_are_named(uid: str, codepoint: str) -> None:
    assert uid_problem(uid) == f"uid contains an emoji or symbol ({codepoint})"


def test_control_character() -> None:
    assert uid_problem("a\x07") == "uid contains a control character (U+0007)"


@given(ALLOWED.filter(lambda s: len(s) < 32), st.characters(min_codepoint=0x10000))
def test_any_character_beyond_the_bmp_is_refused(prefix: str, ch: str) -> None:
    problem = uid_problem(prefix + ch)
    assert problem is not None
    assert f"U+{ord(ch):04X}" in problem
