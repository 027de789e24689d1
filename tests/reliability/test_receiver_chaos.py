"""Each bad receiver is classified, retried exactly, kept apart from the rest; memory stays flat."""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiohttp import web

from conftest import Api, Proc, received

DEFAULT_GAP_MS = 1000
SHORT_SCHEDULE = [0.05, 0.05, 0.05]
RSS_GROWTH_LIMIT_MB = 60.0


@dataclass
class _Counter:
    requests: int = 0
    reports: int = 0


@contextmanager
def _in_test_apps(*apps: web.Application) -> Iterator[list[int]]:
    """Serve aiohttp apps on 127.0.0.1 from one background event loop; yields their ports."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port: int = runner.addresses[0][1]
        return port

    try:
        ports = [asyncio.run_coroutine_threadsafe(start(a), loop).result(10) for a in apps]
        yield ports
    finally:
        for runner in runners:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _plain_ok_app(counter: _Counter) -> web.Application:
    """A ucloud customer that answers 200 with a body that is not JSON at all."""

    async def handle(request: web.Request) -> web.Response:
        counter.requests += 1
        counter.reports += len(orjson.loads(await request.read())["Data"])
        return web.Response(status=200, text="OK", content_type="text/plain")

    app = web.Application()
    app.router.add_post("/{path:.*}", handle)
    return app


def _redirect_app(counter: _Counter, target: str) -> web.Application:
    """A customer whose callback answers 302 to another (healthy) receiver."""

    async def handle(request: web.Request) -> web.Response:
        counter.requests += 1
        counter.reports += 1
        await request.read()
        return web.Response(status=302, headers={"Location": target})

    app = web.Application()
    app.router.add_post("/{path:.*}", handle)
    return app


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _rss_mb(proc: Proc) -> float:
    with open(f"/proc/{proc.popen.pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


def _stats(url: str) -> dict[str, int]:
    resp = httpx.get(url + "/_stats", timeout=10)
    resp.raise_for_status()
    data: dict[str, int] = resp.json()
    return data


@dataclass
class _Customer:
    """One account with one endpoint, and what its attempts must look like."""

    name: str
    protocol: str
    url: str
    outcome: str
    http_status: int | None
    fails: bool
    settings: dict[str, Any] = field(default_factory=dict)
    stats_url: str | None = None  # a bundled receiver's, to count requests on the wire
    endpoint: int = 0
    posted: int = 0


def _messages(c: _Customer, start: int, n: int) -> list[dict[str, Any]]:
    return [
        {"msgid": f"{c.name}-{i}", "account": c.name, "phone": f"86139{i:08d}"}
        for i in range(start, start + n)
    ]


def _reports(c: _Customer, start: int, n: int) -> list[dict[str, Any]]:
    return [{"msgid": f"{c.name}-{i}", "status": "DELIVRD"} for i in range(start, start + n)]


def _send(api: Api, customers: list[_Customer], n: int) -> None:
    """Post n more submission records and reports to each customer."""
    for c in customers:
        api.post("/v1/messages", _messages(c, c.posted, n), 202)
    for c in customers:
        api.post("/v1/reports", _reports(c, c.posted, n), 202)
        c.posted += n


def _wait_final(api: Api, expected: int, timeout: float) -> list[dict[str, Any]]:
    """Wait until ``expected`` reports exist and every one is delivered or failed."""
    deadline = time.monotonic() + timeout
    while True:
        counts: dict[str, int] = api.get("/v1/stats")["reports"]
        total = sum(counts.values())
        if total >= expected and counts["delivered"] + counts["failed"] == total:
            return api.reports()
        assert time.monotonic() < deadline, f"not final after {timeout}s: {counts}"
        time.sleep(0.2)


def _wait_delivered(api: Api, account: str, n: int, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        items = api.get("/v1/reports", account=account, state="delivered", limit=1000)["items"]
        if len(items) >= n:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{account}: {n} reports not delivered within {timeout}s")


def test_bad_receivers_are_classified_retried_isolated_and_memory_stays_bounded(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    t_start = time.monotonic()
    svc = spawn("serve", "--port", "0", "--store", f"sqlite:///{tmp_path}/chaos.db")
    api = api_factory(svc.url)

    def receiver(protocol: str, *flags: str) -> Proc:
        return spawn("receiver", "--protocol", protocol, "--port", "0", "--quiet", *flags)

    healthy = receiver("innopaas")
    r500 = receiver("innopaas", "--fail-rate", "1", "--fail-with", "status")
    rcode = receiver("ucloud", "--code", "1")
    rhang = receiver("innopaas", "--fail-rate", "1", "--fail-with", "hang")
    rreset = receiver("innopaas", "--fail-rate", "1", "--fail-with", "reset")
    rslow = receiver("innopaas", "--delay-ms", "300")
    plain, redirect = _Counter(), _Counter()
    apps = (_plain_ok_app(plain), _redirect_app(redirect, healthy.url + "/dlr"))
    with _in_test_apps(*apps) as (plain_port, redirect_port):
        customers = [
            _Customer("c500", "innopaas", r500.url, "http_error", 500, True, stats_url=r500.url),
            _Customer("cplain", "ucloud", f"http://127.0.0.1:{plain_port}", "rejected", 200, True),
            _Customer("ccode", "ucloud", rcode.url, "rejected", 200, True, stats_url=rcode.url),
            _Customer(
                "chang",
                "innopaas",
                rhang.url,
                "timeout",
                None,
                True,
                {"timeout_s": 1, "max_in_flight": 16},
                stats_url=rhang.url,
            ),
            _Customer(
                "creset", "innopaas", rreset.url, "connect_error", None, True, stats_url=rreset.url
            ),
            _Customer("cslow", "innopaas", rslow.url, "delivered", 200, False, stats_url=rslow.url),
            _Customer(
                "credirect",
                "innopaas",
                f"http://127.0.0.1:{redirect_port}",
                "http_error",
                302,
                True,
            ),
            _Customer(
                "crefused",
                "innopaas",
                f"http://127.0.0.1:{_closed_port()}",
                "connect_error",
                None,
                True,
            ),
        ]
        good = _Customer(
            "chealthy", "innopaas", healthy.url, "delivered", 200, False, stats_url=healthy.url
        )
        for c in [*customers, good]:
            api.post("/v1/accounts", {"id": c.name}, 201)
            ep = api.post(
                f"/v1/accounts/{c.name}/endpoints",
                {"url": c.url + "/dlr", "protocol": c.protocol, **c.settings},
                201,
            )
            c.endpoint = int(ep["id"])

        # Phase 1: the provider's schedule (retry every 1 s, 4 attempts), 6 reports each,
        # then a burst for the healthy customer that must not wait behind the others.
        per = 6
        _send(api, customers, per)
        _send(api, [good], 200)
        healthy_s = _wait_delivered(api, "chealthy", 200, timeout=20)
        print(f"\nphase 1: 200 healthy reports delivered {healthy_s:.2f}s after posting")
        assert healthy_s < 5

        reports = _wait_final(api, per * len(customers) + 200, timeout=40)
        by_account: dict[str, list[dict[str, Any]]] = {}
        for r in reports:
            by_account.setdefault(r["account"], []).append(r)
        table = [
            f"{'customer':<10} {'outcome':<14} {'status':>6} {'tries':>5} {'gap ms':>11}  snippet"
        ]
        for c in [*customers, good]:
            mine = by_account[c.name]
            n = 200 if c is good else per
            assert len(mine) == n
            gaps: list[float] = []
            snippet = ""
            for r in mine if c is not good else mine[:10]:
                attempts = api.get(f"/v1/reports/{r['id']}/attempts")
                assert {a["endpoint"] for a in attempts} == {c.endpoint}
                assert [(a["outcome"], a["http_status"]) for a in attempts] == [
                    (c.outcome, c.http_status)
                ] * len(attempts), (c.name, attempts)
                if c.fails:
                    assert r["state"] == "failed" and len(attempts) == 4, (c.name, r, attempts)
                    # The wait runs from the end of one attempt to the start of the next.
                    gaps += [
                        b["time_ms"] - (a["time_ms"] + a["latency_ms"])
                        for a, b in itertools.pairwise(attempts)
                    ]
                else:
                    assert r["state"] == "delivered" and len(attempts) == 1, (c.name, attempts)
                if c.name == "chang":
                    assert all(900 <= a["latency_ms"] <= 1600 for a in attempts), attempts
                if c.name == "cslow":
                    assert attempts[0]["latency_ms"] >= 300, attempts
                snippet = attempts[-1]["snippet"]
                if c.name == "ccode":
                    assert '"code":1' in attempts[0]["snippet"].replace(" ", "")
            gap_text = f"{min(gaps):.0f}-{max(gaps):.0f}" if gaps else "-"
            tries = 4 if c.fails else 1
            table.append(
                f"{c.name:<10} {c.outcome:<14} {c.http_status!s:>6} {tries:>5} {gap_text:>11}"
                f"  {snippet[:48]!r}"
            )
            if gaps:
                assert all(DEFAULT_GAP_MS - 60 <= g <= DEFAULT_GAP_MS + 800 for g in gaps), gaps
        print("\n".join(table))

        # The same rule seen from the receivers' side: each failing report arrived exactly
        # 4 times, each healthy one once, and the redirect was never followed.
        for c in customers:
            if c.stats_url is not None:
                got = _stats(c.stats_url)["reports"]
                assert got == per * (4 if c.fails else 1), (c.name, got)
        assert plain.reports == redirect.reports == per * 4
        healthy_msgids = {i["report"]["msgid"] for i in received(healthy)["items"]}
        assert not any(m.startswith("credirect") for m in healthy_msgids)
        assert _stats(healthy.url)["requests"] == 200

        # Phase 2: a longer chaos run with a short schedule, to see memory level off.
        failing = [c for c in customers if c.fails]
        for c in failing:
            patch: dict[str, Any] = {"retry_schedule_s": SHORT_SCHEDULE}
            if c.name == "chang":
                patch |= {"timeout_s": 0.2, "max_in_flight": 64}
            resp = api.client.patch(f"/v1/endpoints/{c.endpoint}", json=patch)
            assert resp.status_code == 200, resp.text
        time.sleep(0.3)  # the dispatcher re-reads endpoints on its next pass
        _send(api, failing, 50)
        expected = sum(c.posted for c in [*customers, good])
        _wait_final(api, expected, timeout=60)
        rss_warm = _rss_mb(svc)

        t2 = time.monotonic()
        _send(api, failing, 300)
        _send(api, [good], 200)
        healthy_s = _wait_delivered(api, "chealthy", 400, timeout=30)
        rss_peak = _rss_mb(svc)
        expected = sum(c.posted for c in [*customers, good])
        reports = _wait_final(api, expected, timeout=90)
        chaos_s = time.monotonic() - t2
        rss_after = _rss_mb(svc)
        print(
            f"phase 2: {300 * len(failing)} reports to {len(failing)} failing endpoints in"
            f" {chaos_s:.1f}s; 200 healthy reports delivered {healthy_s:.2f}s after posting"
        )
        print(
            f"RSS: warm-up {rss_warm:.1f} MB, mid-run {rss_peak:.1f} MB, after {rss_after:.1f} MB"
            f" (growth {rss_after - rss_warm:+.1f} MB, limit {RSS_GROWTH_LIMIT_MB:.0f} MB)"
        )
        states = {(r["account"], r["state"], r["attempts"]) for r in reports}
        for c in failing:
            # 6 reports on the 1 s schedule, then 350 on the short one: 4 attempts each.
            assert {s for s in states if s[0] == c.name} == {(c.name, "failed", 4)}
        assert {s for s in states if s[0] == "chealthy"} == {("chealthy", "delivered", 1)}
        assert healthy_s < 8
        assert rss_after - rss_warm < RSS_GROWTH_LIMIT_MB
        print(f"total {time.monotonic() - t_start:.1f}s")
