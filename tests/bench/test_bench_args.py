"""The harness's size flags: a size that is not a number above zero is refused up front,
naming the flag, before any process is started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--trickle-rate", "0", "must be above 0, not 0"),
        ("--trickle-endpoints", "-3", "must be above 0, not -3"),
        ("--trickle-seconds", "soon", "'soon' is not a number"),
        ("--ucloud", "0", "must be above 0, not 0"),
        ("--rate", "nan", "must be above 0, not nan"),
        ("--repeat", "0", "must be above 0, not 0"),
    ],
)
def test_a_size_that_is_not_above_zero_is_refused_naming_the_flag(
    flag: str, value: str, says: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "trickle", flag, value],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert f"argument {flag}: {says}" in done.stderr
    assert "Traceback" not in done.stderr
