"""Smoke test of the benchmark harness: ``python -m bench --quick`` runs and writes its table.

The harness runs as a user runs it, in its own process group, so anything it fails to
stop can be seen (and killed). Only the shape of the output is checked: every scenario
has figures and the command line is recorded. Timing assertions belong to the benchmark
itself, never to a test.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import PG_SKIP, run_in_own_group

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 150
PER_STORE = ("ucloud", "innopaas", "latency", "trickle", "isolation", "backlog")
STORELESS = (
    "ceiling-ucloud",
    "ceiling-innopaas",
    "ceiling-innopaas-pushclient",
    "naive",
    "naive-requests",
)


def _run(tmp_path: Path, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLRPUSH_")}
    env["TMPDIR"] = str(tmp_path)  # the harness's working directory lands here
    return run_in_own_group(
        [sys.executable, "-m", "bench", *args], env=env, timeout_s=TIMEOUT_S, cwd=ROOT
    )


def test_quick_run_writes_markdown_and_json_with_figures_for_every_scenario(
    tmp_path: Path,
) -> None:
    md, js = tmp_path / "out" / "bench.md", tmp_path / "out" / "bench.json"
    args = ("--quick", "--json", str(js), "--md", str(md))
    code, out = _run(tmp_path, *args)

    assert code == 0, out
    assert md.is_file() and js.is_file(), out
    doc: dict[str, Any] = orjson.loads(js.read_bytes())
    command = "python -m bench " + " ".join(args)
    assert doc["command"] == command
    assert doc["argv"] == list(args)
    text = md.read_text()
    assert f"`{command}`" in text
    machine = doc["machine"]
    assert machine["cores"] >= 1 and machine["python"].startswith("3.")
    assert doc["date"]

    stores = ["sqlite"] if PG_SKIP else ["sqlite", "postgres"]
    if PG_SKIP:
        assert doc["skipped"], "PostgreSQL unavailable but not reported as skipped"
    expected = {(s, "-") for s in STORELESS} | {(s, st) for s in PER_STORE for st in stores}
    results = doc["results"]
    assert {(r["scenario"], r["store"]) for r in results} == expected
    for r in results:
        where = f"{r['scenario']} ({r['store']}): {r}"
        assert r["verdict"] != "ERROR", where
        assert r["reports"] > 0, where
        assert r["reports_per_s"] is not None and r["reports_per_s"] > 0, where
        for key in ("p50_ms", "p99_ms", "max_ms"):
            assert isinstance(r[key], int | float), where
        assert r["p50_ms"] <= r["p99_ms"] <= r["max_ms"], where
        assert f"| {r['scenario']} | {r['store']} |" in text
        if r["store"] != "-":
            assert r["cpu_s"] is not None, where
            # /proc counts CPU time in 10 ms ticks: a quick run's drain can be shorter.
            assert r["cpu_s"] > 0 or r["seconds"] < 0.05, where
            assert r["peak_rss_mb"] is not None and r["peak_rss_mb"] > 0, where
        if r["scenario"] in PER_STORE:
            assert r["target"] and r["verdict"] in ("PASS", "FAIL"), where
    # The working directory (logs, SQLite files) is removed after a clean run.
    assert not list(tmp_path.glob("dlrpush-bench-*")), out


def test_repeated_run_records_every_round_and_a_summary(tmp_path: Path) -> None:
    md, js = tmp_path / "out" / "bench.md", tmp_path / "out" / "bench.json"
    args = ("--quick", "--repeat", "2", "--only", "ceiling", "--json", str(js), "--md", str(md))
    code, out = _run(tmp_path, *args)

    assert code == 0, out
    doc: dict[str, Any] = orjson.loads(js.read_bytes())
    rounds = sorted((r["round"], r["scenario"]) for r in doc["results"])
    assert rounds == sorted((n, s) for n in (1, 2) for s in STORELESS if s.startswith("ceiling"))
    assert {m["scenario"]: m["rounds"] for m in doc["summary"]} == {
        s: 2 for s in STORELESS if s.startswith("ceiling")
    }
    text = md.read_text()
    assert "Medians over the rounds" in text and "Every round (2):" in text
