"""Smoke test of ``python -m bench.reads``: it builds a store, runs both ways and prints
a row for each. Only the shape is checked; the figures belong to docs/benchmarks.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from conftest import run_in_own_group

ROOT = Path(__file__).resolve().parents[2]


def test_reads_benchmark_prints_a_row_per_run() -> None:
    code, output = run_in_own_group(
        [sys.executable, "-m", "bench.reads", "--reports", "2000", "--rounds", "1"],
        env=dict(os.environ),
        timeout_s=180,
        cwd=ROOT,
    )

    assert code == 0, output
    rows = [line.strip("|").split("|") for line in output.splitlines()]
    rows = [r for r in rows if len(r) == 5 and r[0].strip() in ("the writer's thread", "its own")]
    assert [r[0].strip() for r in rows] == ["the writer's thread", "its own"]
    for r in rows:
        p50, p99, worst, counts = (float(c) for c in r[1:])
        assert 0 < p50 <= p99 <= worst and counts >= 1, r
