"""Judging a run of several rounds (``python -m bench --repeat N``): each round is judged
against the figures of its own round, and the summary gives medians and the verdict of
the majority of rounds, with a round that failed to run counted as not passing."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import orjson
from bench.report import as_json, judge, markdown, summarise
from bench.scenarios import Result, Sizes


def _result(scenario: str, store: str, rate: float, rnd: int, **extra: Any) -> Result:
    return Result(
        scenario=scenario,
        store=store,
        protocol="innopaas" if "innopaas" in scenario else "ucloud",
        reports=20_000,
        per_request=1,
        seconds=20_000 / rate,
        reports_per_s=rate,
        latency_from="ingest sent",
        p50_ms=extra.pop("p50_ms", 5.0),
        p99_ms=extra.pop("p99_ms", 9.0),
        max_ms=extra.pop("max_ms", 12.0),
        cpu_s=1.0 if store != "-" else None,
        peak_rss_mb=90.0 if store != "-" else None,
        round=rnd,
        extra=extra,
    )


def _error(scenario: str, store: str, rnd: int) -> Result:
    r = _result(scenario, store, math.nan, rnd)
    r.verdict = "ERROR"
    return r


def _render(results: list[Result]) -> tuple[str, dict[str, Any]]:
    facts = {
        "cores": 2,
        "cpu": "test",
        "memory_gb": 1.0,
        "os": "Linux",
        "python": "3.11",
        "load_average_at_start": [0.0, 0.0, 0.0],
        "commit": "abc1234",
    }
    common: dict[str, Any] = {
        "command": "python -m bench --repeat 3",
        "date": dt.datetime(2026, 12, 5, tzinfo=dt.UTC),
        "facts": facts,
        "sizes": Sizes(),
        "skipped": [],
    }
    md = markdown(results, **common)
    doc = orjson.loads(as_json(results, argv=["--repeat", "3"], **common))
    return md, doc


def test_each_round_is_judged_against_the_ceiling_of_its_own_round() -> None:
    results = [
        _result("ceiling-innopaas", "-", 10_000, 1),
        _result("innopaas", "sqlite", 6_000, 1),
        _result("ceiling-innopaas", "-", 5_000, 2),
        _result("innopaas", "sqlite", 6_000, 2),
    ]

    judge(results)

    first, second = results[1], results[3]
    assert (first.share_of_ceiling, first.verdict) == (0.6, "FAIL")
    assert (second.share_of_ceiling, second.verdict) == (1.2, "PASS")


def test_the_summary_gives_medians_and_the_verdict_of_most_rounds() -> None:
    results = [
        _result("ucloud", "sqlite", 40_000, 1, p99_ms=30.0),
        _result("ucloud", "sqlite", 60_000, 2, p99_ms=10.0),
        _result("ucloud", "sqlite", 55_000, 3, p99_ms=20.0),
    ]
    judge(results)

    (m,) = summarise(results)

    assert (m.scenario, m.store, m.rounds) == ("ucloud", "sqlite", 3)
    assert m.reports_per_s == 55_000 and m.p99_ms == 20.0
    assert m.judged == "reports/s"
    assert (m.judged_median, m.judged_low, m.judged_high) == (55_000, 40_000, 60_000)
    assert (m.passed, m.verdict) == (2, "PASS")


def test_a_round_that_failed_to_run_counts_as_not_passing() -> None:
    results = [
        _result("ucloud", "sqlite", 55_000, 1),
        _error("ucloud", "sqlite", 2),
        _result("ucloud", "sqlite", 40_000, 3),
    ]
    judge(results)

    (m,) = summarise(results)

    assert m.rounds == 3 and m.passed == 1
    assert m.verdict == "FAIL"
    # The medians are of the rounds that ran.
    assert m.reports_per_s == 47_500


def test_isolation_and_backlog_are_summarised_by_the_ratio_their_target_judges() -> None:
    results = []
    for rnd, (ratio, drain) in enumerate([(1.5, 50_000), (2.5, 45_000), (1.8, 30_000)], 1):
        alone = {"p50_ms": 5.0, "p99_ms": 10.0, "max_ms": 12.0}
        results += [
            _result("ucloud", "postgres", 40_000, rnd),
            _result(
                "isolation",
                "postgres",
                1_000,
                rnd,
                p99_ms=10 * ratio,
                max_ms=40.0,
                alone=alone,
                p99_ratio=ratio,
            ),
            _result("backlog", "postgres", drain, rnd),
        ]
    judge(results)

    by_name = {m.scenario: m for m in summarise(results)}

    iso = by_name["isolation"]
    assert (iso.judged, iso.judged_median, iso.judged_low, iso.judged_high) == (
        "p99 / alone",
        1.8,
        1.5,
        2.5,
    )
    assert (iso.passed, iso.verdict) == (2, "PASS")
    backlog = by_name["backlog"]
    assert backlog.judged == "drain / ucloud"
    assert backlog.judged_median == 45_000 / 40_000
    # 125 %, 112 % and 75 % of ucloud: the last misses the 80 % target.
    assert (backlog.passed, backlog.verdict) == (2, "PASS")


def test_a_run_of_rounds_writes_the_summary_and_every_round() -> None:
    results = [
        _result("ceiling-innopaas", "-", 10_000, 1),
        _result("innopaas", "postgres", 6_000, 1),
        _result("ceiling-innopaas", "-", 10_000, 2),
        _result("innopaas", "postgres", 8_000, 2),
        _result("ceiling-innopaas", "-", 10_000, 3),
        _result("innopaas", "postgres", 7_500, 3),
    ]
    judge(results)

    md, doc = _render(results)

    assert (
        "| innopaas | postgres | 3 | 7,500 | 75% | 5.0 | 9.0 | 1.00 | of ceiling"
        " | 75% (60% – 80%) | ≥ 70% of ceiling | 2 of 3 | PASS |"
    ) in md
    assert "| innopaas | postgres | 1 | 20,000 | 1 | 6,000 | 60% |" in md
    assert "- innopaas (postgres, round 2): " in md
    assert [r["round"] for r in doc["results"]] == [1, 1, 2, 2, 3, 3]
    summary = {(m["scenario"], m["store"]): m for m in doc["summary"]}
    assert summary[("innopaas", "postgres")]["verdict"] == "PASS"
    assert summary[("ceiling-innopaas", "-")]["verdict"] == "-"


def test_a_run_of_one_round_keeps_the_single_table() -> None:
    results = [_result("ucloud", "sqlite", 55_000, 1)]
    judge(results)

    md, doc = _render(results)

    assert "Medians over the rounds" not in md
    assert "| ucloud | sqlite | 20,000 | 1 | 55,000 |" in md
    assert "summary" not in doc
