from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlrpush.catalogue import (
    DEFAULT_CATALOGUE,
    SUCCESS_CODE,
    Catalogue,
    is_success,
    normalise_status,
)
from dlrpush.errors import ConfigError

REQUIRED = [
    "DELIVRD",
    "MSBLACK",
    "UNDELIV",
    "EXPIRED",
    "REJECTD",
    "DELETED",
    "UNKNOWN",
    "ACCEPTD",
    "ENROUTE",
    "BLACK",
    "MK:0001",
    "MI:0024",
]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Delivrd", "DELIVRD"), ("mk:0001", "MK:0001"), ("  undeliv\n", "UNDELIV")],
)
def test_normalise_status(raw: str, expected: str) -> None:
    assert normalise_status(raw) == expected


@pytest.mark.parametrize("code", ["DELIVRD", "Delivrd", " delivrd "])
def test_delivered_is_success(code: str) -> None:
    assert is_success(code)


@pytest.mark.parametrize(
    "code",
    ["UNDELIV", "EXPIRED", "REJECTD", "DELETED", "UNKNOWN", "MSBLACK", "MK:0001", "MI:0024", ""],
)
def test_everything_else_is_failure(code: str) -> None:
    assert not is_success(code)


@given(st.text())
def test_success_is_exactly_the_delivered_code(code: str) -> None:
    assert is_success(code) == (code.strip().upper() == SUCCESS_CODE)


def test_provider_texts_are_exact() -> None:
    assert DEFAULT_CATALOGUE.describe("DELIVRD") == "用户接收成功"
    assert DEFAULT_CATALOGUE.describe("msblack", "zh") == "手机在运营商防骚扰黑名单"


@pytest.mark.parametrize("code", REQUIRED)
def test_required_codes_have_own_texts_in_both_languages(code: str) -> None:
    zh, en = DEFAULT_CATALOGUE.describe(code, "zh"), DEFAULT_CATALOGUE.describe(code, "en")
    assert DEFAULT_CATALOGUE.knows(code)
    assert zh != en
    assert code not in zh
    assert en.isascii()
    assert not zh.isascii()


def test_unknown_code_gets_generic_text_naming_it() -> None:
    assert not DEFAULT_CATALOGUE.knows("MK:9999")
    assert DEFAULT_CATALOGUE.describe("mk:9999") == "状态码 MK:9999"
    assert DEFAULT_CATALOGUE.describe("MK:9999", "en") == "status MK:9999"


def test_unknown_language_falls_back_to_chinese() -> None:
    assert DEFAULT_CATALOGUE.describe("DELIVRD", "fr") == "用户接收成功"
    assert DEFAULT_CATALOGUE.describe("MK:9999", "fr") == "状态码 MK:9999"


def test_extra_extends_and_overrides_per_language() -> None:
    cat = Catalogue({"delivrd": {"en": "got it"}, "XY:0001": {"zh": "自定义", "en": "custom"}})
    assert cat.describe("DELIVRD", "en") == "got it"
    assert cat.describe("DELIVRD", "zh") == "用户接收成功"
    assert cat.knows("xy:0001")
    assert cat.describe("XY:0001", "en") == "custom"
    assert not DEFAULT_CATALOGUE.knows("XY:0001")


def test_from_file_reads_the_same_shape(tmp_path: Path) -> None:
    path = tmp_path / "codes.json"
    path.write_text('{"ZZ:0001": {"zh": "测试", "en": "test"}}', encoding="utf-8")
    cat = Catalogue.from_file(str(path))
    assert cat.describe("ZZ:0001") == "测试"
    assert cat.describe("MSBLACK") == "手机在运营商防骚扰黑名单"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('["DELIVRD"]', "JSON object"),
        ('{"X": "text"}', "'X'"),
        ('{"X": {"zh": 1}}', "must be a string"),
        ('{" ": {"zh": "a"}}', "non-empty code"),
    ],
)
def test_from_file_names_the_file_and_problem(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        Catalogue.from_file(str(path))
    assert str(path) in str(err.value)
    assert problem in str(err.value)


def test_from_file_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(ConfigError, match="cannot read") as err:
        Catalogue.from_file(str(path))
    assert str(path) in str(err.value)
