"""``dlrpush demo`` run as a newcomer runs it: one command, real processes, a readable story.

Each test runs ``python -m dlrpush demo`` in its own process group, so whatever the demo
starts can be found, and killed, if the demo fails to stop it itself.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_in_own_group

pytestmark = pytest.mark.slow

DEMO_TIMEOUT_S = 90


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLRPUSH_")}
    # The demo's temporary directory lands here, so the test can see it is removed.
    env["TMPDIR"] = str(tmp_path)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def run_demo(tmp_path: Path, *args: str) -> tuple[int, str]:
    """Exit code and output (stdout then stderr) of one demo run; fails on leftovers."""
    return run_in_own_group(
        [sys.executable, "-m", "dlrpush", "demo", *args],
        env=_env(tmp_path),
        timeout_s=DEMO_TIMEOUT_S,
    )


def section(output: str, name: str) -> str:
    """The block of the summary about one customer, from ``name:`` to the blank line."""
    match = re.search(rf"^{name}: .*?(?=^\s*$)", output, re.MULTILINE | re.DOTALL)
    assert match, f"no section for {name}:\n{output}"
    return match.group(0)


def test_demo_shows_deliveries_retries_a_failing_customer_and_replay(tmp_path: Path) -> None:
    code, out = run_demo(tmp_path)

    assert code == 0, out
    assert "Traceback" not in out
    assert "RESULT: OK" in out

    shop = section(out, "shop")
    assert "12 reports, 12 delivered, 0 failed" in shop
    # Both of the shop's callbacks, one per wire format, got every report once.
    assert "ucloud callback" in shop and "innopaas callback" in shop
    assert (
        len(re.findall(r"received 12 reports in \d+ requests?: accepted 12, refused 0", shop)) == 2
    )

    bank = section(out, "bank")
    assert "12 reports, 12 delivered, 0 failed" in bank
    refused = re.search(r"accepted 12, refused (\d+)", bank)
    assert refused and int(refused.group(1)) > 0, bank  # the retries are visible

    games = section(out, "games")
    assert "12 reports, 0 delivered, 12 failed" in games
    assert "4 attempts for 12 reports" in games
    assert "gave up after 4 attempts" in games
    times = [float(t) for t in re.findall(r"attempt \d at \+([0-9.]+) s: rejected", games)]
    assert len(times) == 4, games
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.8 <= gap <= 1.8 for gap in gaps), f"retries not ~1 s apart: {times}"

    # A report sent before its submission record is held, then matched and delivered.
    assert re.search(r"BEFORE its submission record: 1 held", out)
    assert "1 held report matched" in out
    assert re.search(r"came before its submission record: held, then matched.*now delivered", shop)

    # What the callbacks got, in each wire format.
    assert '"MsgType": 2' in out and '"ReceiptResult": "发送成功"' in out
    assert '"mnoName": "中国移动"' in out and '"unitPrice": "0.05670"' in out

    assert re.search(r"POST /v1/replay .*-> 12 failed reports queued", out)

    assert not list(tmp_path.glob("dlrpush-demo-*")), "the demo's files were not removed"


def test_keep_leaves_a_database_that_dlrpush_stats_can_read(tmp_path: Path) -> None:
    code, out = run_demo(tmp_path, "--keep", "--reports", "3")

    assert code == 0, out
    found = re.search(r"database: (\S+)", out)
    assert found, out
    db = Path(found.group(1))
    assert db.is_file() and db.is_relative_to(tmp_path)
    stats = subprocess.run(
        [sys.executable, "-m", "dlrpush", "stats", "--store", f"sqlite:///{db}"],
        capture_output=True,
        encoding="utf-8",
        env=_env(tmp_path),
        timeout=60,
        check=False,
    )
    assert stats.returncode == 0, stats.stderr
    counts = {line.split()[0]: int(line.split()[1]) for line in stats.stdout.splitlines()}
    assert counts["delivered"] == 6  # shop and bank
    assert counts["held"] == 0 and counts["unmatched"] == 0
    # The games reports were replayed at the end: pending again, or failed once more.
    assert counts["pending"] + counts["failed"] == 3


def test_a_nonsense_report_count_is_refused_naming_it(tmp_path: Path) -> None:
    code, out = run_demo(tmp_path, "--reports", "0")

    assert code != 0
    assert "--reports" in out
    assert "Traceback" not in out
    assert not list(tmp_path.glob("dlrpush-demo-*"))
