"""Smoke test of ``python -m bench.idle``: it creates the endpoints, waits for the
dispatcher to see them and prints a row per store and count.

Only the shape is checked; the figures belong to docs/benchmarks.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from conftest import PG_SKIP, run_in_own_group

ROOT = Path(__file__).resolve().parents[2]


def test_idle_benchmark_prints_a_row_per_store_and_count() -> None:
    stores = "sqlite" if PG_SKIP else "sqlite,postgres"
    argv = ["-m", "bench.idle", "--endpoints", "0", "3", "--stores", stores, "--seconds", "0.5"]
    code, output = run_in_own_group(
        [sys.executable, *argv], env=dict(os.environ), timeout_s=180, cwd=ROOT
    )

    assert code == 0, output
    rows = [line.strip("|").split("|") for line in output.splitlines()]
    rows = [r for r in rows if len(r) == 3 and r[0].strip() in ("sqlite", "postgres")]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [
        (store, n) for store in stores.split(",") for n in ("0", "3")
    ]
    for r in rows:
        assert r[2].strip().endswith("%") and float(r[2].strip(" %")) >= 0, r
