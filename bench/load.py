"""Traffic and timing: what the harness sends, and how it turns arrivals into figures.

It owns the harness's side of the wire: a small JSON client for the service's API;
ingesting submission records and reports (in arrays, in bulk or paced at a steady rate,
or one report a request at a steady rate), noting when each was sent and acknowledged;
waiting until a timing receiver has every report and reading its arrival times; the
latency and rate figures computed from those times; and the two pushers that involve
no service at all: the ceiling (a bare loop posting pre-rendered bodies, with aiohttp or
with dlrpush's own push client) and the naive baselines (one blocking POST per report
from a loop: on one kept-alive ``http.client`` connection, and with a bare
``requests.post``).
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import math
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import requests

from dlrpush.catalogue import DEFAULT_CATALOGUE
from dlrpush.enrich import enrich
from dlrpush.models import Endpoint, PushItem
from dlrpush.protocols import get_protocol
from dlrpush.pushclient import PushClient

JSON_HEADERS = {"content-type": "application/json"}
CHUNK = 1000
INGEST_CONCURRENCY = 4
# What the dispatcher sends: the same header set, so the ceiling does the same work.
PUSH_HEADERS = {"Content-Type": "application/json; charset=utf-8"}
USER_AGENT = "dlrpush"
T_REPORT_MS = 1_750_000_000_000


class ApiError(RuntimeError):
    pass


class Api:
    """JSON calls to the service's API on one keep-alive session."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
        async with self.session.request(
            method, self.base + path, data=data, headers=JSON_HEADERS
        ) as resp:
            raw = await resp.read()
            if resp.status >= 300:
                raise ApiError(f"{method} {path}: HTTP {resp.status}: {raw[:300]!r}")
            return orjson.loads(raw) if raw else None

    async def account(self, account_id: str) -> None:
        await self.call("POST", "/v1/accounts", {"id": account_id})

    async def endpoint(self, account_id: str, **fields: Any) -> int:
        doc = await self.call("POST", f"/v1/accounts/{account_id}/endpoints", fields)
        return int(doc["id"])


def msgid(prefix: str, i: int) -> str:
    return f"{prefix}{i}"


def phone(i: int) -> str:
    return f"86139{i % 10**8:08d}"


def messages_body(prefix: str, account: str, lo: int, hi: int) -> bytes:
    return messages_spread_body(prefix, [account], lo, hi)


def messages_spread_body(prefix: str, accounts: Sequence[str], lo: int, hi: int) -> bytes:
    """Submission records ``prefix{lo}..prefix{hi-1}``, report ``i`` belonging to
    ``accounts[i % len(accounts)]``: consecutive reports go to different customers."""
    return orjson.dumps(
        [
            {
                "msgid": msgid(prefix, i),
                "account": accounts[i % len(accounts)],
                "phone": phone(i),
                "segments": 1,
                "unit_price": "0.05670",
            }
            for i in range(lo, hi)
        ]
    )


def reports_body(prefix: str, lo: int, hi: int) -> bytes:
    return orjson.dumps([{"msgid": msgid(prefix, i), "status": "DELIVRD"} for i in range(lo, hi)])


async def ingest_messages(api: Api, prefix: str, account: str, n: int, chunk: int = CHUNK) -> None:
    for lo in range(0, n, chunk):
        await api.call(
            "POST", "/v1/messages", messages_body(prefix, account, lo, min(n, lo + chunk))
        )


@dataclass
class Sent:
    """When each report's array was sent and acknowledged (monotonic seconds), by index."""

    sent: array[float]
    acked: array[float]

    @classmethod
    def empty(cls, n: int) -> Sent:
        return cls(array("d", [math.nan]) * n, array("d", [math.nan]) * n)

    def note(self, lo: int, hi: int, sent: float, acked: float) -> None:
        count = hi - lo
        self.sent[lo:hi] = array("d", [sent]) * count
        self.acked[lo:hi] = array("d", [acked]) * count

    @property
    def first_sent(self) -> float:
        return min(t for t in self.sent if not math.isnan(t))

    @property
    def last_acked(self) -> float:
        return max(t for t in self.acked if not math.isnan(t))


async def ingest_reports_bulk(
    api: Api, prefix: str, n: int, chunk: int = CHUNK, concurrency: int = INGEST_CONCURRENCY
) -> Sent:
    """Post reports ``prefix0..`` in arrays of ``chunk``, ``concurrency`` arrays in
    flight: a platform feeds status reports from several gateway connections at once."""
    sent = Sent.empty(n)
    starts = iter(range(0, n, chunk))

    async def poster() -> None:
        for lo in starts:
            hi = min(n, lo + chunk)
            body = reports_body(prefix, lo, hi)
            t0 = time.monotonic()
            await api.call("POST", "/v1/reports", body)
            sent.note(lo, hi, t0, time.monotonic())

    await asyncio.gather(*(poster() for _ in range(concurrency)))
    return sent


@dataclass
class Paced:
    sent: dict[str, Sent]
    # How late the last array left against its schedule, and the worst lateness seen:
    # a paced run is only steady if these stay small.
    worst_lag_ms: float


async def ingest_reports_paced(
    api: Api, prefixes: Sequence[str], rate: float, seconds: float, tick_s: float = 0.05
) -> Paced:
    """``rate`` reports/s for each prefix, as one array every ``tick_s`` holding
    ``rate × tick_s`` reports of every prefix; arrays are posted on schedule even while
    an earlier one is still waiting for its answer."""
    per_tick = max(1, round(rate * tick_s))
    ticks = max(1, round(seconds / tick_s))
    n = per_tick * ticks
    sent = {p: Sent.empty(n) for p in prefixes}

    async def one(k: int) -> None:
        lo, hi = k * per_tick, (k + 1) * per_tick
        body = orjson.dumps(
            [{"msgid": msgid(p, i), "status": "DELIVRD"} for p in prefixes for i in range(lo, hi)]
        )
        t0 = time.monotonic()
        await api.call("POST", "/v1/reports", body)
        t1 = time.monotonic()
        for p in prefixes:
            sent[p].note(lo, hi, t0, t1)

    return Paced(sent, await _on_schedule(one, ticks, tick_s))


async def ingest_reports_trickle(api: Api, prefix: str, n: int, rate: float) -> Paced:
    """Reports ``prefix0..`` one a request, ``rate`` requests/s on a steady schedule (a
    quiet gateway forwards each report as it comes); a request is sent on time even
    while earlier ones wait for their answers."""
    sent = Sent.empty(n)

    async def one(i: int) -> None:
        body = orjson.dumps([{"msgid": msgid(prefix, i), "status": "DELIVRD"}])
        t0 = time.monotonic()
        await api.call("POST", "/v1/reports", body)
        sent.note(i, i + 1, t0, time.monotonic())

    return Paced({prefix: sent}, await _on_schedule(one, n, 1 / rate))


async def _on_schedule(
    send: Callable[[int], Coroutine[Any, Any, None]], count: int, interval_s: float
) -> float:
    """Start ``send(0)``, ``send(1)``… every ``interval_s``, each on time even while
    earlier ones still wait for their answers; when all are done, return the worst
    lateness of a start against its schedule, in ms."""
    start = time.monotonic() + 0.05
    worst = 0.0
    tasks: list[asyncio.Task[None]] = []
    for k in range(count):
        due = start + k * interval_s
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        worst = max(worst, (time.monotonic() - due) * 1000)
        tasks.append(asyncio.create_task(send(k)))
    await asyncio.gather(*tasks)
    return worst


def paced_count(rate: float, seconds: float, tick_s: float = 0.05) -> int:
    return max(1, round(rate * tick_s)) * max(1, round(seconds / tick_s))


@dataclass
class Arrived:
    """What a timing receiver got: its counts, the arrival time of reports 0..n-1 (NaN:
    not arrived), and whether all n arrived before the waiting gave up."""

    stats: dict[str, int]
    times: array[float]
    complete: bool
    gave_up_at: float  # time.monotonic() when waiting stopped

    @property
    def count(self) -> int:
        return sum(1 for t in self.times if not math.isnan(t))

    def end(self) -> float:
        """The last arrival when every report came, else when waiting stopped."""
        if self.complete:
            return max(t for t in self.times if not math.isnan(t))
        return self.gave_up_at


async def wait_arrived(
    session: aiohttp.ClientSession,
    receiver_url: str,
    n: int,
    *,
    max_wait_s: float,
    stall_s: float = 60.0,
) -> Arrived:
    """Poll the timing receiver until ``n`` distinct reports arrived, nothing arrived for
    ``stall_s``, or ``max_wait_s`` passed; then read the arrival times."""
    started = last_change = time.monotonic()
    last = -1
    while True:
        async with session.get(receiver_url + "/_stats") as resp:
            stats: dict[str, int] = orjson.loads(await resp.read())
        now = time.monotonic()
        if stats["unique"] >= n:
            break
        if stats["unique"] != last:
            last, last_change = stats["unique"], now
        if now - last_change > stall_s or now - started > max_wait_s:
            break
        await asyncio.sleep(0.02)
    gave_up_at = time.monotonic()
    async with session.get(receiver_url + "/_times") as resp:
        times = array("d")
        times.frombytes(await resp.read())
    if len(times) < n:
        times.extend(array("d", [math.nan]) * (n - len(times)))
    del times[n:]
    return Arrived(stats, times, stats["unique"] >= n, gave_up_at)


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    max_ms: float
    min_ms: float
    count: int


def _pick(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latency(arrived: array[float], origin: array[float] | float, n: int) -> Latency:
    """Arrival minus origin (per report, or one time for all) of reports 0..n-1 that
    arrived, in ms."""
    if isinstance(origin, float):
        values = [(arrived[i] - origin) * 1000 for i in range(n)]
    else:
        values = [(arrived[i] - origin[i]) * 1000 for i in range(n)]
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return Latency(math.nan, math.nan, math.nan, math.nan, 0)
    return Latency(_pick(ordered, 0.5), _pick(ordered, 0.99), ordered[-1], ordered[0], len(ordered))


# -- pushing without the service -------------------------------------------------------


def render_bodies(protocol: str, prefix: str, n: int, batch_max: int) -> list[bytes]:
    """The bodies the dispatcher would send for reports ``prefix0..`` (same renderer)."""
    proto = get_protocol(protocol)
    endpoint = Endpoint(0, "bench", "http://127.0.0.1/dlr", protocol, batch_max=batch_max)
    enrichment = enrich(phone(0))
    items = [
        PushItem(
            delivery_id=i + 1,
            report_id=i + 1,
            msgid=msgid(prefix, i),
            phone=phone(i),
            segments=1,
            status="DELIVRD",
            description=None,
            report_time_ms=T_REPORT_MS,
            uid=None,
            batch_seq="",
            request_time_ms=None,
            unit_price="0.05670",
            currency="CNY",
            access_number="",
            enrichment=enrichment,
        )
        for i in range(n)
    ]
    return [r.body for r in proto.render(items, endpoint, DEFAULT_CATALOGUE, T_REPORT_MS)]


@dataclass
class Pushed:
    """What a service-less pusher did: per-request send times and its own CPU."""

    per_request: int
    sent: array[float]  # by report index: when its request started
    first: float
    cpu_s: float
    failures: int


async def ceiling_push(
    protocol: str,
    url: str,
    bodies: list[bytes],
    per_request: int,
    concurrency: int,
    client: str = "aiohttp",
) -> Pushed:
    """POST ``bodies`` with ``concurrency`` in flight, checking each answer with the
    protocol's own verdict. ``client`` is ``aiohttp`` (a keep-alive session configured as
    the dispatcher's was) or ``pushclient`` (the dispatcher's own client)."""
    proto = get_protocol(protocol)
    endpoint = Endpoint(0, "bench", url, protocol)
    sent = array("d", [math.nan]) * (len(bodies) * per_request)
    failures = 0
    next_body = 0
    post = _aiohttp_poster(url) if client == "aiohttp" else _pushclient_poster(url)
    cpu0 = time.process_time()
    first = time.monotonic()
    async with post as send:

        async def worker() -> None:
            nonlocal next_body, failures
            while next_body < len(bodies):
                k = next_body
                next_body += 1
                t0 = time.monotonic()
                lo = k * per_request
                sent[lo : lo + per_request] = array("d", [t0]) * per_request
                status, body = await send(bodies[k])
                if not proto.verdict(status, body, endpoint).accepted:
                    failures += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Pushed(per_request, sent, first, time.process_time() - cpu0, failures)


Send = Callable[[bytes], Awaitable[tuple[int, bytes]]]


@asynccontextmanager
async def _aiohttp_poster(url: str) -> AsyncIterator[Send]:
    connector = aiohttp.TCPConnector(limit=512, limit_per_host=0, keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": USER_AGENT},
        skip_auto_headers=("Accept-Encoding",),
    ) as session:

        async def send(body: bytes) -> tuple[int, bytes]:
            async with session.post(
                url, data=body, headers=PUSH_HEADERS, timeout=timeout, allow_redirects=False
            ) as resp:
                return resp.status, await resp.read()

        yield send


@asynccontextmanager
async def _pushclient_poster(url: str) -> AsyncIterator[Send]:
    client = PushClient((ipaddress.ip_network("127.0.0.0/8"),), user_agent=USER_AGENT)
    target = client.target(url)
    content_type = PUSH_HEADERS["Content-Type"]

    async def send(body: bytes) -> tuple[int, bytes]:
        return await client.post(target, body, content_type, 5)

    try:
        yield send
    finally:
        await client.close()


def naive_push(port: int, bodies: list[bytes]) -> Pushed:
    """One blocking POST per body from a loop, on one keep-alive ``http.client``
    connection: what a first version that calls ``requests.post`` per report would do."""
    sent = array("d", [math.nan]) * len(bodies)
    failures = 0
    cpu0 = time.process_time()
    first = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for k, body in enumerate(bodies):
            sent[k] = time.monotonic()
            conn.request(
                "POST",
                "/dlr",
                body=body,
                headers={**PUSH_HEADERS, "User-Agent": USER_AGENT},
            )
            resp = conn.getresponse()
            answer = resp.read()
            if resp.status != 200 or orjson.loads(answer).get("code") != 0:
                failures += 1
    finally:
        conn.close()
    return Pushed(1, sent, first, time.process_time() - cpu0, failures)


def naive_requests_push(port: int, bodies: list[bytes]) -> Pushed:
    """Literally ``requests.post(url, data=body)`` per body from a loop: no session, so
    each report opens and closes a connection of its own, as the simplest pusher does."""
    url = f"http://127.0.0.1:{port}/dlr"
    headers = {**PUSH_HEADERS, "User-Agent": USER_AGENT}
    sent = array("d", [math.nan]) * len(bodies)
    failures = 0
    cpu0 = time.process_time()
    first = time.monotonic()
    for k, body in enumerate(bodies):
        sent[k] = time.monotonic()
        resp = requests.post(url, data=body, headers=headers, timeout=10)
        if resp.status_code != 200 or orjson.loads(resp.content).get("code") != 0:
            failures += 1
    return Pushed(1, sent, first, time.process_time() - cpu0, failures)
