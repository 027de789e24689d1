"""``python -m bench``: the command line of the benchmark harness and the order of a run.

It owns the flags (which scenarios, which stores, how big, where the markdown and JSON
go), the order scenarios run in (the ceilings and the naive baseline first, then every
store's scenarios), recording a failed scenario as ERROR and going on with the rest,
and making sure an interrupted run (Ctrl-C, SIGTERM) still stops every process it
started and drops every PostgreSQL schema it made.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
import shlex
import shutil
import signal
import sys
import tempfile
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import aiohttp

from bench.procs import DEFAULT_PG_URL, ROOT, base_env, pg_available
from bench.profiles import Profiler
from bench.report import as_json, judge, machine_facts, markdown
from bench.scenarios import QUICK, Bench, Result, Sizes
from dlrpush import eventloop

N = TypeVar("N", int, float)

SCENARIOS = (
    "ceiling",
    "naive",
    "ucloud",
    "innopaas",
    "latency",
    "trickle",
    "isolation",
    "backlog",
)
STORES = ("sqlite", "postgres")
RESULTS_DIR = ROOT / "bench" / "results"


def _positive(kind: Callable[[str], N]) -> Callable[[str], N]:
    """An argparse type for a size: a number of ``kind`` above zero."""

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    parse.__name__ = kind.__name__  # what argparse names in its own messages
    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    defaults = Sizes()
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="End-to-end benchmarks of dlrpush on loopback; see docs/benchmarks.md.",
    )
    p.add_argument("--quick", action="store_true", help="every scenario at a tiny size")
    p.add_argument(
        "--only",
        nargs="+",
        choices=SCENARIOS,
        metavar="SCENARIO",
        default=None,
        help=f"run only these ({', '.join(SCENARIOS)}); the ceiling is added"
        " when a share of it is needed",
    )
    p.add_argument(
        "--stores",
        default=",".join(STORES),
        help="comma-separated: sqlite, postgres (default both)",
    )
    p.add_argument(
        "--json", type=Path, default=RESULTS_DIR / "latest.json", help="where the JSON goes"
    )
    p.add_argument(
        "--md", type=Path, default=RESULTS_DIR / "latest.md", help="where the markdown goes"
    )
    p.add_argument(
        "--pg-url",
        default=DEFAULT_PG_URL,
        help="server for the PostgreSQL runs; each run uses a fresh schema",
    )
    p.add_argument(
        "--ucloud",
        type=_positive(int),
        default=None,
        help=f"reports in the ucloud run (default {defaults.ucloud:,})",
    )
    p.add_argument(
        "--innopaas",
        type=_positive(int),
        default=None,
        help=f"reports in the innopaas run (default {defaults.innopaas:,})",
    )
    p.add_argument(
        "--naive",
        type=_positive(int),
        default=None,
        help=f"reports in the naive baseline (default {defaults.naive:,})",
    )
    p.add_argument(
        "--backlog",
        type=_positive(int),
        default=None,
        help=f"reports queued in the backlog run (default {defaults.backlog:,})",
    )
    p.add_argument(
        "--rate",
        type=_positive(float),
        default=None,
        help=f"reports/s of the paced runs, per endpoint (default {defaults.rate:g})",
    )
    p.add_argument(
        "--latency-seconds",
        type=_positive(float),
        default=None,
        help=f"length of the latency run (default {defaults.latency_s:g})",
    )
    p.add_argument(
        "--isolation-seconds",
        type=_positive(float),
        default=None,
        help=f"length of each isolation phase (default {defaults.isolation_s:g})",
    )
    p.add_argument(
        "--trickle-rate",
        type=_positive(float),
        default=None,
        help=f"reports/s in all of the trickle run (default {defaults.trickle_rate:g})",
    )
    p.add_argument(
        "--trickle-endpoints",
        type=_positive(int),
        default=None,
        help=f"accounts (an endpoint each) the trickle run spreads its reports over"
        f" (default {defaults.trickle_endpoints})",
    )
    p.add_argument(
        "--trickle-seconds",
        type=_positive(float),
        default=None,
        help=f"length of the trickle run (default {defaults.trickle_s:g})",
    )
    p.add_argument(
        "--max-wait",
        type=_positive(float),
        default=None,
        help=f"seconds to wait for a scenario's reports to arrive before reporting what"
        f" did, as FAIL (default {defaults.max_wait_s:g})",
    )
    p.add_argument(
        "--repeat",
        type=_positive(int),
        default=1,
        metavar="N",
        help="run the chosen scenarios N times over, in rounds, and judge each target on"
        " the majority of rounds (default 1; an odd N gives no ties)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="record a py-spy profile of the service in every scenario into DIR",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the working directory (logs, SQLite files)"
    )
    return p.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    base = QUICK if args.quick else Sizes()
    changes = {
        "ucloud": args.ucloud,
        "innopaas": args.innopaas,
        "naive": args.naive,
        "backlog": args.backlog,
        "rate": args.rate,
        "latency_s": args.latency_seconds,
        "isolation_s": args.isolation_seconds,
        "trickle_rate": args.trickle_rate,
        "trickle_endpoints": args.trickle_endpoints,
        "trickle_s": args.trickle_seconds,
        "max_wait_s": args.max_wait,
    }
    return dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})


def _error(scenario: str, store: str, protocol: str, exc: BaseException) -> Result:
    nan = math.nan
    return Result(
        scenario=scenario,
        store=store,
        protocol=protocol,
        reports=0,
        per_request=0,
        seconds=nan,
        reports_per_s=nan,
        latency_from="-",
        p50_ms=nan,
        p99_ms=nan,
        max_ms=nan,
        cpu_s=None,
        peak_rss_mb=None,
        verdict="ERROR",
        note=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300],
    )


class Run:
    """One run's results so far, and where and how they are written."""

    def __init__(self, args: argparse.Namespace, argv: list[str]) -> None:
        self.args = args
        self.argv = argv
        self.command = shlex.join(["python", "-m", "bench", *argv])
        self.date = dt.datetime.now(dt.UTC)
        self.facts = machine_facts(args.pg_url if "postgres" in args.stores else None)
        self.sizes = sizes_from(args)
        self.results: list[Result] = []
        self.skipped: list[str] = []
        self.round = 1  # the round under way (see --repeat)

    def write(self) -> str:
        """Judge what is there and write both files (after every scenario, so an
        interrupted run still leaves its figures); returns the markdown."""
        judge(self.results)
        common: dict[str, Any] = {
            "command": self.command,
            "date": self.date,
            "facts": self.facts,
            "sizes": self.sizes,
            "skipped": self.skipped,
        }
        md = markdown(self.results, **common)
        doc = as_json(self.results, argv=self.argv, **common)
        for path, data in ((self.args.md, md.encode()), (self.args.json, doc)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return md


async def run(state: Run, workdir: Path) -> None:
    args = state.args
    results, skipped = state.results, state.skipped
    sizes = state.sizes
    chosen = set(args.only or SCENARIOS)
    if chosen & {"ucloud", "backlog"}:
        chosen.add("ceiling-ucloud")
    if chosen & {"innopaas", "naive"}:
        chosen |= {"ceiling-innopaas", "ceiling-innopaas-pushclient"}
    if "ceiling" in chosen:
        chosen |= {"ceiling-ucloud", "ceiling-innopaas", "ceiling-innopaas-pushclient"}
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    for s in stores:
        if s not in STORES:
            raise SystemExit(f"--stores: unknown store {s!r}; known: {', '.join(STORES)}")
    if "postgres" in stores:
        why = pg_available(args.pg_url)
        if why is not None:
            stores.remove("postgres")
            skipped.append(f"PostgreSQL runs: {why}")
            print(f"skipping PostgreSQL: {why}", file=sys.stderr)
    profiler = Profiler(args.profile) if args.profile else None

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        bench = Bench(
            workdir=workdir,
            env=base_env(),
            sizes=sizes,
            pg_url=args.pg_url,
            session=session,
            profiler=profiler,
        )

        async def step(scenario: str, store: str, protocol: str, work: Awaitable[Result]) -> None:
            label = f"{scenario} ({store})" if store != "-" else scenario
            if args.repeat > 1:
                label += f", round {state.round} of {args.repeat}"
            print(f"running {label} …", file=sys.stderr, flush=True)
            try:
                result = await work
            except Exception as exc:
                traceback.print_exc()
                result = _error(scenario, store, protocol, exc)
            result.round = state.round
            results.append(result)
            state.write()
            print(
                f"  {label}: {result.reports_per_s:,.0f} reports/s, p99 {result.p99_ms:.1f} ms"
                if result.verdict != "ERROR"
                else f"  {label}: ERROR {result.note}",
                file=sys.stderr,
                flush=True,
            )

        # Rounds, not each scenario N times in a row: the machine's speed drifts over
        # minutes, and a round keeps each figure beside the ceiling it is a share of.
        for number in range(1, args.repeat + 1):
            state.round = number
            if "ceiling-ucloud" in chosen:
                await step("ceiling-ucloud", "-", "ucloud", bench.ceiling("ucloud", sizes.ucloud))
            if "ceiling-innopaas" in chosen:
                await step(
                    "ceiling-innopaas",
                    "-",
                    "innopaas",
                    bench.ceiling("innopaas", sizes.innopaas),
                )
            if "ceiling-innopaas-pushclient" in chosen:
                await step(
                    "ceiling-innopaas-pushclient",
                    "-",
                    "innopaas",
                    bench.ceiling("innopaas", sizes.innopaas, client="pushclient"),
                )
            if "naive" in chosen:
                await step("naive", "-", "innopaas", bench.naive(sizes.naive))
                await step(
                    "naive-requests",
                    "-",
                    "innopaas",
                    bench.naive(sizes.naive, client="requests"),
                )
            for store in stores:
                if "ucloud" in chosen:
                    await step(
                        "ucloud",
                        store,
                        "ucloud",
                        bench.throughput(store, "ucloud", sizes.ucloud),
                    )
                if "innopaas" in chosen:
                    await step("innopaas", store, "innopaas", _beside_ceiling(bench, store, sizes))
                if "latency" in chosen:
                    await step("latency", store, "ucloud", bench.latency(store))
                if "trickle" in chosen:
                    await step("trickle", store, "innopaas", bench.trickle(store))
                if "isolation" in chosen:
                    await step("isolation", store, "ucloud", bench.isolation(store))
                if "backlog" in chosen:
                    await step("backlog", store, "ucloud", bench.backlog(store, sizes.backlog))


async def _beside_ceiling(bench: Bench, store: str, sizes: Sizes) -> Result:
    """``innopaas`` on ``store`` with the ceiling measured again just before it: on a
    machine whose speed drifts within minutes, the share is only fair against a ceiling
    taken under the same conditions."""
    ceiling = await bench.ceiling("innopaas", sizes.innopaas)
    result = await bench.throughput(store, "innopaas", sizes.innopaas)
    result.extra["ceiling_beside_reports_per_s"] = round(ceiling.reports_per_s)
    return result


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so every ``finally`` and ``with`` block runs: that
    # is what stops the started processes and drops the PostgreSQL schemas.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    state = Run(parse_args(argv), argv)
    workdir = Path(tempfile.mkdtemp(prefix="dlrpush-bench-"))
    signal.signal(signal.SIGTERM, _terminate)
    ok = interrupted = False
    try:
        # On uvloop, as the service: the ceiling is then the best a bare loop does here.
        eventloop.run(run(state, workdir))
        ok = all(r.verdict != "ERROR" for r in state.results)
    except KeyboardInterrupt:
        interrupted = True
        state.skipped.append("the run was interrupted; scenarios after the last row did not run")
    finally:
        if state.args.keep or not ok:
            print(f"logs and stores kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        md = state.write()
        if ok:
            print(md, flush=True)
        print(f"written: {state.args.md}, {state.args.json}", file=sys.stderr)
    return 130 if interrupted else 0 if ok else 1
