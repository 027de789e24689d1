"""The benchmark scenarios: each sets up its processes and store, drives traffic, measures.

This module owns what every scenario does (see docs/benchmarks.md for the why): the
ceiling and the naive baseline, which push without the service; bulk ``ucloud`` and
``innopaas`` throughput; latency at a steady rate; many quiet customers, one report a
request each; isolation of a healthy endpoint from a hanging and a failing one; and
draining a backlog queued while the endpoint was disabled.
Each returns a ``Result`` with its figures; targets are judged later, in ``bench.report``,
because some compare figures of different scenarios from the same run.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import aiohttp
import orjson

from bench import load
from bench.procs import Proc, Procs, free_port, fresh_store, postgres_cpu_seconds
from bench.profiles import Profiler

# Latency through the service is measured from the moment the sender started the POST
# that carried the report: what its sender sees. The ingest's answer is a poor origin
# since the dispatcher may push a report before that answer is even written (work for
# an idle endpoint is leased by the ingest itself), which made latencies from it
# negative. The JSON keeps the figures from the answer as well ("from_ingest_ack").
INGEST_SENT = "ingest sent"


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; ``QUICK`` is the smoke-test size."""

    ucloud: int = 200_000
    innopaas: int = 20_000
    naive: int = 20_000
    backlog: int = 1_000_000
    rate: float = 1000.0  # reports/s of the paced scenarios (per endpoint)
    latency_s: float = 20.0
    isolation_s: float = 20.0
    max_in_flight: int = 16  # of every endpoint, and the ceiling's concurrency
    batch_max: int = 100
    hang_timeout_s: float = 2.0
    # Many quiet customers: ``trickle_rate`` reports/s in all, one a request, spread over
    # this many accounts with an endpoint each.
    trickle_rate: float = 500.0
    trickle_endpoints: int = 200
    trickle_s: float = 20.0
    # How long to wait for the receiver to have every report before giving up and
    # reporting what arrived (as FAIL: the figure is then a rate over what arrived).
    max_wait_s: float = 600.0


QUICK = Sizes(
    ucloud=3_000,
    innopaas=400,
    naive=400,
    backlog=3_000,
    latency_s=1.0,
    isolation_s=1.0,
    trickle_endpoints=10,
    trickle_s=1.0,
    max_wait_s=120.0,
)


@dataclass
class Result:
    scenario: str
    store: str  # "sqlite", "postgres", or "-" for pushers without the service
    protocol: str
    reports: int
    per_request: int
    seconds: float
    reports_per_s: float
    latency_from: str  # what latency is measured from
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_s: float | None  # of the process that pushed (the service, or the bare loop)
    peak_rss_mb: float | None  # of the service
    receiver_cpu_s: float | None = None
    db_cpu_s: float | None = None  # PostgreSQL server processes, during the measurement
    ingest_per_s: float | None = None
    share_of_ceiling: float | None = None
    target: str = ""
    verdict: str = "-"  # PASS, FAIL, ERROR or "-" (no target)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    arrived: int = 0  # distinct reports the receiver got
    complete: bool = True  # False: waiting gave up before all arrived
    round: int = 1  # which round of a run with --repeat


def _round(x: float, digits: int = 1) -> float:
    return x if math.isnan(x) else round(x, digits)


class _Millis(TypedDict):
    p50_ms: float
    p99_ms: float
    max_ms: float


def _ms(lat: load.Latency, digits: int = 1) -> _Millis:
    """A latency's p50, p99 and max, rounded, under the names ``Result`` gives them."""
    return {
        "p50_ms": _round(lat.p50_ms, digits),
        "p99_ms": _round(lat.p99_ms, digits),
        "max_ms": _round(lat.max_ms, digits),
    }


def _rate(arr: load.Arrived, start: float) -> dict[str, Any]:
    """Seconds, reports/s and completeness of a run that started at ``start``."""
    seconds = arr.end() - start
    return {
        "seconds": round(seconds, 3),
        "reports_per_s": round(arr.count / seconds),
        "arrived": arr.count,
        "complete": arr.complete,
    }


class Bench:
    """Runs scenarios against one working directory, pg server and set of sizes."""

    def __init__(
        self,
        *,
        workdir: Path,
        env: dict[str, str],
        sizes: Sizes,
        pg_url: str,
        session: aiohttp.ClientSession,
        profiler: Profiler | None = None,
    ) -> None:
        self.workdir = workdir
        self.env = env
        self.sizes = sizes
        self.pg_url = pg_url
        self.session = session
        self.profiler = profiler

    # -- plumbing --------------------------------------------------------------------------

    @contextmanager
    def _procs(self) -> Iterator[Procs]:
        with Procs(self.workdir, self.env) as procs:
            yield procs

    @asynccontextmanager
    async def _service(
        self, procs: Procs, store: str, name: str
    ) -> AsyncIterator[tuple[Proc, load.Api]]:
        """A service on a fresh store of kind ``store``."""
        with fresh_store(store, self.workdir, name, self.pg_url) as url:
            svc = procs.service(url)
            try:
                yield svc, load.Api(self.session, svc.url)
            finally:
                # The store goes away with this block: stop the service before it does.
                procs.stop(*procs.started)

    def _profiled(self, svc: Proc, name: str) -> AbstractContextManager[None]:
        """Profile ``svc`` for the block when ``--profile`` was given (the measured part
        only: set-up such as ingesting submission records is left out)."""
        return self.profiler.attach(svc, name) if self.profiler else nullcontext()

    def _endpoint(self, receiver_url: str, protocol: str, **fields: Any) -> dict[str, Any]:
        return {
            "url": receiver_url + "/dlr",
            "protocol": protocol,
            "batch_max": self.sizes.batch_max,
            "max_in_flight": self.sizes.max_in_flight,
            **fields,
        }

    async def _arrived(self, rcv: Proc, n: int) -> load.Arrived:
        return await load.wait_arrived(self.session, rcv.url, n, max_wait_s=self.sizes.max_wait_s)

    @staticmethod
    def _db_cpu(store: str) -> float:
        return postgres_cpu_seconds() if store == "postgres" else 0.0

    # -- without the service ---------------------------------------------------------------

    async def ceiling(self, protocol: str, n: int, client: str = "aiohttp") -> Result:
        per_request = self.sizes.batch_max if protocol == "ucloud" else 1
        bodies = load.render_bodies(protocol, "m", n, per_request)
        with self._procs() as procs:
            rcv = procs.timing_receiver(protocol)
            rcv.mark_cpu()
            pushed = await load.ceiling_push(
                protocol, rcv.url + "/dlr", bodies, per_request, self.sizes.max_in_flight, client
            )
            arr = await self._arrived(rcv, n)
            stats, arrived = arr.stats, arr.times
            rcv_cpu = rcv.cpu_since_mark()
        figures = _rate(arr, pushed.first)
        lat = load.latency(arrived, pushed.sent, n)
        return Result(
            scenario=f"ceiling-{protocol}" + ("" if client == "aiohttp" else f"-{client}"),
            store="-",
            protocol=protocol,
            reports=n,
            per_request=per_request,
            **figures,
            latency_from="POST start",
            **_ms(lat, 2),
            cpu_s=round(pushed.cpu_s, 2),
            peak_rss_mb=None,
            receiver_cpu_s=round(rcv_cpu, 2),
            extra={"requests": stats["requests"], "failed_requests": pushed.failures},
        )

    async def naive(self, n: int, *, client: str = "http.client") -> Result:
        bodies = load.render_bodies("innopaas", "m", n, 1)
        push = load.naive_requests_push if client == "requests" else load.naive_push
        with self._procs() as procs:
            rcv = procs.timing_receiver("innopaas")
            rcv.mark_cpu()
            pushed = await asyncio.to_thread(push, rcv.port, bodies)
            arr = await self._arrived(rcv, n)
            stats, arrived = arr.stats, arr.times
            rcv_cpu = rcv.cpu_since_mark()
        figures = _rate(arr, pushed.first)
        lat = load.latency(arrived, pushed.sent, n)
        return Result(
            scenario="naive-requests" if client == "requests" else "naive",
            store="-",
            protocol="innopaas",
            reports=n,
            per_request=1,
            **figures,
            latency_from="POST start",
            **_ms(lat, 2),
            cpu_s=round(pushed.cpu_s, 2),
            peak_rss_mb=None,
            receiver_cpu_s=round(rcv_cpu, 2),
            note=(
                "requests.post per report, a new connection each, no store"
                if client == "requests"
                else "one blocking http.client POST per report, keep-alive, no store"
            ),
            extra={"requests": stats["requests"], "failed_requests": pushed.failures},
        )

    # -- through the service ---------------------------------------------------------------

    async def throughput(self, store: str, protocol: str, n: int) -> Result:
        """Bulk ingest (arrays of 1,000) until the receiver has every report."""
        with self._procs() as procs:
            rcv = procs.timing_receiver(protocol)
            async with self._service(procs, store, protocol) as (svc, api):
                await api.account("bench")
                await api.endpoint("bench", **self._endpoint(rcv.url, protocol))
                await load.ingest_messages(api, "m", "bench", n)
                db0 = self._db_cpu(store)
                svc.mark_cpu()
                rcv.mark_cpu()
                with self._profiled(svc, f"{protocol}-{store}"):
                    sent = await load.ingest_reports_bulk(api, "m", n)
                    arr = await self._arrived(rcv, n)
                    stats, arrived = arr.stats, arr.times
                cpu, rcv_cpu = svc.cpu_since_mark(), rcv.cpu_since_mark()
                db_cpu = self._db_cpu(store) - db0
                peak = svc.peak_rss_mb()
        first = sent.first_sent
        figures = _rate(arr, first)
        lat = load.latency(arrived, sent.sent, n)
        return Result(
            scenario=protocol,
            store=store,
            protocol=protocol,
            reports=n,
            per_request=self.sizes.batch_max if protocol == "ucloud" else 1,
            **figures,
            latency_from=INGEST_SENT,
            **_ms(lat),
            cpu_s=round(cpu, 2),
            peak_rss_mb=round(peak, 1),
            receiver_cpu_s=round(rcv_cpu, 2),
            db_cpu_s=round(db_cpu, 2) if store == "postgres" else None,
            ingest_per_s=round(n / (sent.last_acked - first)),
            extra={
                "requests": stats["requests"],
                "duplicates": stats["duplicates"],
                "min_latency_ms": _round(lat.min_ms, 2),
                "from_ingest_ack": _ms(load.latency(arrived, sent.acked, n)),
            },
        )

    async def latency(self, store: str, protocol: str = "ucloud") -> Result:
        """A steady ``rate`` (arrays every 50 ms) for ``latency_s`` seconds."""
        s = self.sizes
        n = load.paced_count(s.rate, s.latency_s)
        with self._procs() as procs:
            rcv = procs.timing_receiver(protocol)
            async with self._service(procs, store, "latency") as (svc, api):
                await api.account("bench")
                await api.endpoint("bench", **self._endpoint(rcv.url, protocol))
                await load.ingest_messages(api, "m", "bench", n)
                db0 = self._db_cpu(store)
                svc.mark_cpu()
                rcv.mark_cpu()
                with self._profiled(svc, f"latency-{store}"):
                    paced = await load.ingest_reports_paced(api, ["m"], s.rate, s.latency_s)
                    arr = await self._arrived(rcv, n)
                    stats, arrived = arr.stats, arr.times
                cpu, rcv_cpu = svc.cpu_since_mark(), rcv.cpu_since_mark()
                db_cpu = self._db_cpu(store) - db0
                peak = svc.peak_rss_mb()
        sent = paced.sent["m"]
        figures = _rate(arr, sent.first_sent)
        lat = load.latency(arrived, sent.sent, n)
        from_ack = load.latency(arrived, sent.acked, n)
        return Result(
            scenario="latency",
            store=store,
            protocol=protocol,
            reports=n,
            per_request=s.batch_max,
            **figures,
            latency_from=INGEST_SENT,
            **_ms(lat),
            cpu_s=round(cpu, 2),
            peak_rss_mb=round(peak, 1),
            receiver_cpu_s=round(rcv_cpu, 2),
            db_cpu_s=round(db_cpu, 2) if store == "postgres" else None,
            note=f"paced: {s.rate:g} reports/s as arrays of {round(s.rate * 0.05)} every 50 ms",
            extra={
                "requests": stats["requests"],
                "worst_pacing_lag_ms": round(paced.worst_lag_ms, 1),
                "min_latency_ms": _round(lat.min_ms, 2),
                "from_ingest_ack": _ms(from_ack),
            },
        )

    async def trickle(self, store: str) -> Result:
        """Many quiet customers: ``trickle_rate`` reports/s in all, each its own request to the
        API, each for the next of ``trickle_endpoints`` accounts in turn (one
        ``innopaas`` endpoint each), so every store call and push carries one report."""
        s = self.sizes
        rate = s.trickle_rate
        n = max(1, round(rate * s.trickle_s))
        accounts = [f"q{k}" for k in range(s.trickle_endpoints)]
        with self._procs() as procs:
            rcv = procs.timing_receiver("innopaas")
            async with self._service(procs, store, "trickle") as (svc, api):
                for k, account in enumerate(accounts):
                    await api.account(account)
                    # Each customer its own callback path, as distinct customers have.
                    endpoint = self._endpoint(rcv.url, "innopaas")
                    await api.endpoint(account, **{**endpoint, "url": f"{rcv.url}/dlr/{k}"})
                for lo in range(0, n, load.CHUNK):
                    body = load.messages_spread_body("t", accounts, lo, min(n, lo + load.CHUNK))
                    await api.call("POST", "/v1/messages", body)
                db0 = self._db_cpu(store)
                svc.mark_cpu()
                rcv.mark_cpu()
                with self._profiled(svc, f"trickle-{store}"):
                    paced = await load.ingest_reports_trickle(api, "t", n, rate)
                    arr = await self._arrived(rcv, n)
                cpu, rcv_cpu = svc.cpu_since_mark(), rcv.cpu_since_mark()
                db_cpu = self._db_cpu(store) - db0
                peak = svc.peak_rss_mb()
        sent = paced.sent["t"]
        figures = _rate(arr, sent.first_sent)
        lat = load.latency(arr.times, sent.sent, n)
        from_ack = load.latency(arr.times, sent.acked, n)
        per_report = {"service": round(cpu / n * 1e6)}
        if store == "postgres":
            per_report["PostgreSQL"] = round(db_cpu / n * 1e6)
        return Result(
            scenario="trickle",
            store=store,
            protocol="innopaas",
            reports=n,
            per_request=1,
            **figures,
            latency_from=INGEST_SENT,
            **_ms(lat),
            cpu_s=round(cpu, 2),
            peak_rss_mb=round(peak, 1),
            receiver_cpu_s=round(rcv_cpu, 2),
            db_cpu_s=round(db_cpu, 2) if store == "postgres" else None,
            note=(
                f"{rate:g} reports/s in all, one a request, over {len(accounts)} accounts"
                f" with an endpoint each ({rate / len(accounts):g}/s each)"
            ),
            extra={
                "cpu_us_per_report": per_report,
                "worst_pacing_lag_ms": round(paced.worst_lag_ms, 1),
                "from_ingest_ack": _ms(from_ack),
            },
        )

    async def isolation(self, store: str) -> Result:
        """A healthy ucloud endpoint alone, then beside a hanging and a failing one."""
        s = self.sizes
        n = load.paced_count(s.rate, s.isolation_s)
        with self._procs() as procs:
            rcv = procs.timing_receiver("ucloud")
            hang = procs.bundled_receiver("ucloud", "--fail-rate", "1", "--fail-with", "hang")
            fail = procs.bundled_receiver("ucloud", "--fail-rate", "1")
            async with self._service(procs, store, "isolation") as (svc, api):
                for account in ("ok", "hang", "fail"):
                    await api.account(account)
                await api.endpoint("ok", **self._endpoint(rcv.url, "ucloud"))
                for prefix, account in (("a", "ok"), ("b", "ok"), ("h", "hang"), ("f", "fail")):
                    await load.ingest_messages(api, prefix, account, n)
                # Alone.
                paced_alone = await load.ingest_reports_paced(api, ["a"], s.rate, s.isolation_s)
                arr = await self._arrived(rcv, n)
                arrived = arr.times
                alone = load.latency(arrived, paced_alone.sent["a"].sent, n)
                alone_ack = load.latency(arrived, paced_alone.sent["a"].acked, n)
                async with self.session.delete(rcv.url + "/_received") as resp:
                    resp.raise_for_status()
                # With the neighbours.
                await api.endpoint(
                    "hang", **self._endpoint(hang.url, "ucloud", timeout_s=s.hang_timeout_s)
                )
                await api.endpoint("fail", **self._endpoint(fail.url, "ucloud"))
                db0 = self._db_cpu(store)
                svc.mark_cpu()
                with self._profiled(svc, f"isolation-{store}"):
                    paced = await load.ingest_reports_paced(
                        api, ["b", "h", "f"], s.rate, s.isolation_s
                    )
                    arr = await self._arrived(rcv, n)
                    arrived = arr.times
                cpu = svc.cpu_since_mark()
                db_cpu = self._db_cpu(store) - db0
                peak = svc.peak_rss_mb()
                neighbours = {}
                for name, proc in (("hang", hang), ("fail", fail)):
                    async with self.session.get(proc.url + "/_stats") as resp:
                        neighbours[name] = orjson.loads(await resp.read())
        sent = paced.sent["b"]
        figures = _rate(arr, sent.first_sent)
        lat = load.latency(arrived, sent.sent, n)
        ratio = lat.p99_ms / alone.p99_ms if alone.p99_ms > 0 else math.inf
        return Result(
            scenario="isolation",
            store=store,
            protocol="ucloud",
            reports=n,
            per_request=s.batch_max,
            **figures,
            latency_from=INGEST_SENT,
            **_ms(lat),
            cpu_s=round(cpu, 2),
            peak_rss_mb=round(peak, 1),
            db_cpu_s=round(db_cpu, 2) if store == "postgres" else None,
            note=(
                f"healthy endpoint at {s.rate:g}/s beside a hanging one (timeout"
                f" {s.hang_timeout_s:g} s) and a failing one, each at {s.rate:g}/s"
            ),
            extra={
                "alone": _ms(alone),
                "p99_ratio": round(ratio, 2),
                "from_ingest_ack": _ms(load.latency(arrived, sent.acked, n)),
                "alone_from_ingest_ack": _ms(alone_ack),
                "worst_pacing_lag_ms": round(max(paced_alone.worst_lag_ms, paced.worst_lag_ms), 1),
                "neighbour_receivers": neighbours,
            },
        )

    async def backlog(self, store: str, n: int) -> Result:
        """``n`` reports queued while nothing pushes, then drained by a fresh service.

        The queue is built by ``serve --no-dispatch`` (API only; the endpoint is enabled,
        so every report gets its delivery, and nothing is pushed or failed); that process
        is stopped, the receiver started, and ``serve`` started on the same store drains
        it. Registering the endpoint ``enabled: false`` and enabling it later queues
        nothing: deliveries are only made for endpoints enabled when a report is matched.
        """
        port = free_port()
        receiver_url = f"http://127.0.0.1:{port}"
        # The store outlives the processes that use it: ``procs`` is left first.
        with (
            fresh_store(store, self.workdir, "backlog", self.pg_url) as url,
            self._procs() as procs,
        ):
            api_proc = procs.service(url, dispatch=False)
            api = load.Api(self.session, api_proc.url)
            await api.account("bench")
            await api.endpoint("bench", **self._endpoint(receiver_url, "ucloud"))
            await load.ingest_messages(api, "m", "bench", n)
            sent = await load.ingest_reports_bulk(api, "m", n)
            ingest_per_s = n / (sent.last_acked - sent.first_sent)
            api_rss = api_proc.peak_rss_mb()
            procs.stop(api_proc)
            rcv = procs.timing_receiver("ucloud", port)
            rcv.mark_cpu()
            db0 = self._db_cpu(store)
            launched = time.monotonic()
            svc = procs.service(url)
            svc.mark_cpu()  # start-up CPU (imports, opening the store) is left out
            with self._profiled(svc, f"backlog-{store}"):
                arr = await self._arrived(rcv, n)
                stats, arrived = arr.stats, arr.times
                cpu, rcv_cpu = svc.cpu_since_mark(), rcv.cpu_since_mark()
                db_cpu = self._db_cpu(store) - db0
                peak = svc.peak_rss_mb()
            procs.stop(*procs.started)
        first = min((t for t in arrived if not math.isnan(t)), default=svc.ready_at)
        # The dispatcher starts claiming just before the ready line is printed: the drain
        # starts at whichever came first, the ready line or the first arrival.
        t_start = min(svc.ready_at, first)
        figures = _rate(arr, t_start)
        lat = load.latency(arrived, t_start, n)
        return Result(
            scenario="backlog",
            store=store,
            protocol="ucloud",
            reports=n,
            per_request=self.sizes.batch_max,
            **figures,
            latency_from="drain start",
            **_ms(lat),
            cpu_s=round(cpu, 2),
            peak_rss_mb=round(peak, 1),
            receiver_cpu_s=round(rcv_cpu, 2),
            db_cpu_s=round(db_cpu, 2) if store == "postgres" else None,
            ingest_per_s=round(ingest_per_s),
            note=(
                "queued by `serve --no-dispatch`, drained by a fresh `serve` on the same"
                " store once the receiver is up"
            ),
            extra={
                "requests": stats["requests"],
                "duplicates": stats["duplicates"],
                "api_only_peak_rss_mb": round(api_rss, 1),
                "start_to_ready_s": round(svc.ready_at - launched, 2),
            },
        )
