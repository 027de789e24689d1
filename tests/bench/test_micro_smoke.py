"""Smoke test of ``python -m bench.micro``: it runs and prints every table.

Only the shape is checked; the figures belong to docs/benchmarks.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import PG_SKIP

ROOT = Path(__file__).resolve().parents[2]


def test_micro_benchmark_prints_every_row() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.micro", "--rows", "20", "--repeat", "1", "--reports", "1500"],
        cwd=ROOT,
        capture_output=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| `")]
    assert len(rows) == 6  # two ways, three conditions
    for line in rows:
        ms = float(line.rsplit("|", 2)[1].replace(",", ""))
        assert ms > 0, line
    assert "| frozen dataclass (slots) |" in done.stdout
    assert "| named tuple |" in done.stdout
    calls = [
        line
        for line in done.stdout.splitlines()
        if line.startswith(("| add_", "| claim", "| settle"))
    ]
    stores = 1 if PG_SKIP else 2
    if PG_SKIP:
        assert "PostgreSQL skipped" in done.stdout
    assert len(calls) == 6 * stores, done.stdout  # two of ingest, claim, three of settle
    for line in calls:
        figures = [float(cell) for cell in line.strip("|").split("|")[1:]]
        assert figures[0] > 0, line  # wall time; the server's CPU may round to 0
