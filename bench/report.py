"""Judging and writing results: targets, shares of the ceiling, machine facts, the table.

It owns the targets each scenario is held to (some compare two figures from the same
run: a share of the ceiling, the drain rate against plain ``ucloud``, the healthy p99
against its p99 alone), the facts about the machine and the run that go with every table
(command, date, cores, Python, PostgreSQL, load, commit), and the markdown and JSON
renderings of one run.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.procs import ROOT, pg_version
from bench.scenarios import Result, Sizes

UCLOUD_TARGET = {"sqlite": 50_000, "postgres": 20_000}
INNOPAAS_SHARE = 0.70
LATENCY_P99_MS = 50.0
ISOLATION_RATIO = 2.0
BACKLOG_RSS_MB = 150.0
BACKLOG_SHARE = 0.80

CEILING_OF = {"ucloud": "ceiling-ucloud", "backlog": "ceiling-ucloud"}
CEILING_OF.update(
    {
        "innopaas": "ceiling-innopaas",
        "naive": "ceiling-innopaas",
        "naive-requests": "ceiling-innopaas",
    }
)


def _find(results: list[Result], scenario: str, store: str = "-", rnd: int = 1) -> Result | None:
    """The figure another is compared with: from the same round of the run."""
    for r in results:
        if r.scenario == scenario and r.store == store and r.round == rnd and r.verdict != "ERROR":
            return r
    return None


def goal(scenario: str, store: str) -> str:
    """The target a scenario is held to, in words ("" for none)."""
    if scenario == "ucloud":
        return f"≥ {UCLOUD_TARGET.get(store, 0):,} reports/s"
    if scenario == "innopaas":
        return f"≥ {INNOPAAS_SHARE:.0%} of ceiling"
    if scenario in ("latency", "trickle"):
        return f"p99 ≤ {LATENCY_P99_MS:g} ms"
    if scenario == "isolation":
        return f"p99 ≤ {ISOLATION_RATIO:g}× alone"
    if scenario == "backlog":
        return f"RSS ≤ {BACKLOG_RSS_MB:g} MB; drain ≥ {BACKLOG_SHARE:.0%} of ucloud"
    return ""


def _pass(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def judge(results: list[Result]) -> None:
    """Fill in shares of the ceiling, targets and verdicts, in place."""
    for r in results:
        if r.verdict == "ERROR":
            continue
        ceiling = _find(results, CEILING_OF.get(r.scenario, ""), rnd=r.round)
        beside = float(r.extra.get("ceiling_beside_reports_per_s", 0))
        if beside > 0:
            # Measured just before this scenario, under the same conditions.
            r.share_of_ceiling = round(r.reports_per_s / beside, 3)
        elif ceiling is not None and ceiling.reports_per_s > 0:
            r.share_of_ceiling = round(r.reports_per_s / ceiling.reports_per_s, 3)
        if r.scenario == "ucloud":
            r.target = goal(r.scenario, r.store)
            r.verdict = _pass(r.reports_per_s >= UCLOUD_TARGET.get(r.store, 0))
        elif r.scenario == "innopaas":
            own = _find(results, "ceiling-innopaas-pushclient", rnd=r.round)
            if own is not None and own.reports_per_s > 0:
                # Against a bare loop of the service's own client: what storing costs.
                r.extra["share_of_pushclient_ceiling"] = round(
                    r.reports_per_s / own.reports_per_s, 3
                )
            r.target = goal(r.scenario, r.store)
            if r.share_of_ceiling is None:
                r.target += " (no ceiling measured)"
            else:
                r.verdict = _pass(r.share_of_ceiling >= INNOPAAS_SHARE)
        elif r.scenario in ("latency", "trickle"):
            r.target = goal(r.scenario, r.store)
            r.verdict = _pass(r.p99_ms <= LATENCY_P99_MS)
        elif r.scenario == "isolation":
            alone = float(r.extra["alone"]["p99_ms"])
            r.target = f"{goal(r.scenario, r.store)} ({alone:.1f} ms)"
            r.verdict = _pass(r.p99_ms <= ISOLATION_RATIO * alone)
        elif r.scenario == "backlog":
            plain = _find(results, "ucloud", r.store, rnd=r.round)
            # Both processes count: the one that queued the backlog and the one draining it.
            rss = max(r.peak_rss_mb or math.inf, float(r.extra.get("api_only_peak_rss_mb", 0)))
            rss_ok = rss <= BACKLOG_RSS_MB
            r.target = f"RSS ≤ {BACKLOG_RSS_MB:g} MB"
            if plain is None:
                r.target += "; drain vs ucloud: no ucloud figure in this run"
                r.verdict = _pass(rss_ok)
            else:
                share = r.reports_per_s / plain.reports_per_s
                r.extra["drain_share_of_ucloud"] = round(share, 3)
                r.target += f"; drain ≥ {BACKLOG_SHARE:.0%} of ucloud ({share:.0%})"
                r.verdict = _pass(rss_ok and share >= BACKLOG_SHARE)
        if not r.complete:
            # Not every report arrived in time: whatever the figures, the run failed.
            if r.verdict == "PASS":
                r.verdict = "FAIL"
            r.extra["incomplete"] = (
                f"gave up after {r.seconds:,.0f} s with {r.arrived:,} of {r.reports:,}"
                " reports arrived; reports/s and latencies cover those only"
            )


@dataclass
class Summary:
    """One scenario on one store over every round of a run with ``--repeat``."""

    scenario: str
    store: str
    rounds: int
    reports_per_s: float  # the median, as are the figures below
    share_of_ceiling: float | None
    p50_ms: float
    p99_ms: float
    cpu_s: float | None
    judged: str  # what the target judges, e.g. "reports/s"; "" when there is no target
    judged_median: float
    judged_low: float
    judged_high: float
    target: str
    passed: int  # rounds that met the target
    verdict: str  # PASS when more than half of the rounds passed; FAIL, or "-"


# What each target judges: its name, how the figure is read from a round's result, and
# how it is written.
_JUDGED: dict[str, tuple[str, Callable[[Result], float], str]] = {
    "ucloud": ("reports/s", lambda r: r.reports_per_s, "{:,.0f}"),
    "innopaas": ("of ceiling", lambda r: _nan_if_none(r.share_of_ceiling), "{:.0%}"),
    "latency": ("p99 ms", lambda r: r.p99_ms, "{:,.1f}"),
    "trickle": ("p99 ms", lambda r: r.p99_ms, "{:,.1f}"),
    "isolation": (
        "p99 / alone",
        lambda r: float(r.extra.get("p99_ratio", math.nan)),
        "{:.2f}×",
    ),
    "backlog": (
        "drain / ucloud",
        lambda r: float(r.extra.get("drain_share_of_ucloud", math.nan)),
        "{:.0%}",
    ),
}


def _nan_if_none(x: float | None) -> float:
    return math.nan if x is None else x


def _median(values: list[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return statistics.median(known) if known else math.nan


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(known) if known else None


def summarise(results: list[Result]) -> list[Summary]:
    """Per scenario and store, in the order they first ran: medians over the rounds,
    and the verdict of the majority. A round that failed to run (ERROR) counts as a
    round that did not pass, so a target is never met by the rounds that happened to
    work. Judge the results first (``judge``)."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.scenario, r.store), []).append(r)
    out = []
    for (scenario, store), rounds in groups.items():
        ran = [r for r in rounds if r.verdict != "ERROR"]
        judged, figure, _ = _JUDGED.get(scenario, ("", lambda r: math.nan, ""))
        values = [v for v in (figure(r) for r in ran) if not math.isnan(v)]
        passed = sum(r.verdict == "PASS" for r in rounds)
        has_target = any(r.verdict in ("PASS", "FAIL") for r in rounds)
        verdict = "-" if ran else "ERROR"
        if has_target:
            verdict = _pass(2 * passed > len(rounds))
        out.append(
            Summary(
                scenario=scenario,
                store=store,
                rounds=len(rounds),
                reports_per_s=_median([r.reports_per_s for r in ran]),
                share_of_ceiling=_median_or_none([r.share_of_ceiling for r in ran]),
                p50_ms=_median([r.p50_ms for r in ran]),
                p99_ms=_median([r.p99_ms for r in ran]),
                cpu_s=_median_or_none([r.cpu_s for r in ran]),
                judged=judged if has_target else "",
                judged_median=_median(values),
                judged_low=min(values, default=math.nan),
                judged_high=max(values, default=math.nan),
                target=goal(scenario, store) if has_target else "",
                passed=passed,
                verdict=verdict,
            )
        )
    return out


def _summary_lines(summaries: list[Summary]) -> list[str]:
    lines = [
        "Medians over the rounds; each target is judged on the figure in *judged* (its"
        " median, and lowest and highest in brackets), and met when more than half of the"
        " rounds met it.",
        "",
        "| scenario | store | rounds | reports/s | of ceiling | p50 ms | p99 ms | CPU s"
        " | judged | median (range) | target | rounds passed | result |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | --- |",
    ]
    for m in summaries:
        share = "–" if m.share_of_ceiling is None else f"{m.share_of_ceiling:.0%}"
        if m.judged:
            low, mid, high = (
                "–" if math.isnan(x) else _JUDGED[m.scenario][2].format(x)
                for x in (m.judged_low, m.judged_median, m.judged_high)
            )
            spread = f"{mid} ({low} – {high})"
            passed = f"{m.passed} of {m.rounds}"
        else:
            spread = passed = "–"
        lines.append(
            f"| {m.scenario} | {m.store} | {m.rounds} | {_num(m.reports_per_s)} | {share}"
            f" | {_num(m.p50_ms, ',.1f')} | {_num(m.p99_ms, ',.1f')} | {_num(m.cpu_s, '.2f')}"
            f" | {m.judged or '–'} | {spread} | {m.target or '–'} | {passed} | {m.verdict} |"
        )
    return lines


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' (with uncommitted changes)' if dirty else ''}" if head else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return math.nan


def machine_facts(pg_url: str | None) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gb": _mem_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "commit": _git(),
    }
    if pg_url is not None:
        try:
            facts["postgresql"] = pg_version(pg_url)
        except Exception as exc:
            facts["postgresql"] = f"unavailable ({exc})"
    return facts


def _num(x: float | None, fmt: str = ",.0f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return format(x, fmt)


def markdown(
    results: list[Result],
    *,
    command: str,
    date: dt.datetime,
    facts: dict[str, Any],
    sizes: Sizes,
    skipped: list[str],
) -> str:
    load = " / ".join(str(x) for x in facts["load_average_at_start"])
    lines = [
        "# dlrpush benchmark",
        "",
        f"- command: `{command}`",
        f"- date: {date.isoformat(timespec='seconds')}",
        f"- machine: {facts['cores']} cores ({facts['cpu']}), {facts['memory_gb']} GB RAM,"
        f" {facts['os']}; Python {facts['python']}"
        + (f"; PostgreSQL {facts['postgresql']}" if "postgresql" in facts else ""),
        f"- load average when the run started: {load}",
        f"- commit: {facts['commit']}",
        f"- every endpoint: max_in_flight {sizes.max_in_flight}, batch_max {sizes.batch_max};"
        f" the ceiling runs {sizes.max_in_flight} POSTs in flight",
        "",
    ]
    rounds = max((r.round for r in results), default=1)
    if rounds > 1:
        lines += _summary_lines(summarise(results))
        lines += ["", f"Every round ({rounds}):", ""]
    lines += [
        "| scenario | store |"
        + (" round |" if rounds > 1 else "")
        + " reports | per POST | reports/s | of ceiling | latency from"
        " | p50 ms | p99 ms | max ms | CPU s | peak RSS MB | target | result |",
        "| --- | --- |"
        + (" ---: |" if rounds > 1 else "")
        + " ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        share = "–" if r.share_of_ceiling is None else f"{r.share_of_ceiling:.0%}"
        reports = f"{r.reports:,}" if r.complete else f"{r.arrived:,} of {r.reports:,}"
        lines.append(
            f"| {r.scenario} | {r.store} |"
            + (f" {r.round} |" if rounds > 1 else "")
            + f" {reports} | {r.per_request} |"
            f" {_num(r.reports_per_s)} | {share} | {r.latency_from} | {_num(r.p50_ms, ',.1f')}"
            f" | {_num(r.p99_ms, ',.1f')} | {_num(r.max_ms, ',.1f')} | {_num(r.cpu_s, '.2f')}"
            f" | {_num(r.peak_rss_mb, '.1f')} | {r.target or '–'} | {r.verdict} |"
        )
    lines += ["", "Details:", ""]
    for r in results:
        bits = []
        if r.note:
            bits.append(r.note)
        if r.ingest_per_s is not None:
            bits.append(f"ingest {r.ingest_per_s:,.0f} reports/s")
        if r.receiver_cpu_s is not None:
            bits.append(f"receiver CPU {r.receiver_cpu_s:.2f} s")
        if r.db_cpu_s is not None:
            bits.append(f"PostgreSQL CPU {r.db_cpu_s:.2f} s")
        for key, value in r.extra.items():
            if key == "neighbour_receivers":
                continue
            if isinstance(value, dict):
                value = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in value.items())
            bits.append(f"{key.replace('_', ' ')}: {value}")
        if "neighbour_receivers" in r.extra:
            for name, st in r.extra["neighbour_receivers"].items():
                bits.append(f"{name} receiver got {st['requests']:,} requests")
        which = f", round {r.round}" if rounds > 1 else ""
        lines.append(f"- {r.scenario} ({r.store}{which}): " + "; ".join(bits))
    for s in skipped:
        lines.append(f"- skipped: {s}")
    return "\n".join(lines) + "\n"


def as_json(
    results: list[Result],
    *,
    argv: list[str],
    command: str,
    date: dt.datetime,
    facts: dict[str, Any],
    sizes: Sizes,
    skipped: list[str],
) -> bytes:
    doc = {
        "command": command,
        "argv": argv,
        "date": date.isoformat(timespec="seconds"),
        "machine": facts,
        "sizes": asdict(sizes),
        "skipped": skipped,
        "results": [asdict(r) for r in results],
    }
    if any(r.round > 1 for r in results):
        doc["summary"] = [asdict(m) for m in summarise(results)]
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)
