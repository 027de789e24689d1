"""kill -9 at random moments of a 20,000-report innopaas run loses no acknowledged report."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Api, Proc, needs_postgres, pg_schema, received

# Another run of the same test: RELIABILITY_SEED=<n> pytest tests/reliability/test_crash.py
SEED = int(os.environ.get("RELIABILITY_SEED", "20251121"))
N = 20_000
ARRAY = 1_000
MESSAGE_ARRAY = 5_000
IN_FLIGHT = 16
# Each POST of a report array carries its own report time, so a stored copy of an array
# that was posted again (after a POST the kill left unanswered) can be told apart from a
# second push of one stored report: a report is (msgid, reportTime).
BASE_TIME_MS = 1_763_700_000_000


def _msgid(i: int) -> str:
    return f"k{i:05d}"


def _stats(rcv: Proc) -> dict[str, int]:
    resp = httpx.get(rcv.url + "/_stats", timeout=10)
    resp.raise_for_status()
    data: dict[str, int] = resp.json()
    return data


class _Run:
    """The service under test: the current process and client, restarted on one file."""

    def __init__(
        self, spawn: Callable[..., Proc], api_factory: Callable[[str], Api], store: str
    ) -> None:
        self._spawn = spawn
        self._api_factory = api_factory
        self._store = store
        self.kills: list[str] = []
        self.svc = self._start()
        self.api = api_factory(self.svc.url)

    def _start(self) -> Proc:
        return self._spawn("serve", "--port", "0", "--store", self._store)

    def kill_and_restart(self, what: str) -> None:
        self.svc.kill9()
        self.kills.append(what)
        self.svc = self._start()
        self.api = self._api_factory(self.svc.url)


def _post_messages(run: _Run, account: str) -> None:
    for start in range(0, N, MESSAGE_ARRAY):
        body = [
            {"msgid": _msgid(i), "account": account, "phone": f"86139{i:08d}"}
            for i in range(start, start + MESSAGE_ARRAY)
        ]
        run.api.post("/v1/messages", body, 202)


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, needs_postgres])]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'c.db'}"
    else:
        with pg_schema() as url:
            yield url


def test_kill_9_at_random_moments_loses_no_acknowledged_report(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], store_url: str
) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    rcv = spawn("receiver", "--protocol", "innopaas", "--port", "0", "--quiet")
    run = _Run(spawn, api_factory, store_url)
    run.api.post("/v1/accounts", {"id": "acme", "name": "Acme"}, 201)
    run.api.post(
        "/v1/accounts/acme/endpoints",
        {"url": rcv.url + "/dlr", "protocol": "innopaas", "max_in_flight": IN_FLIGHT},
        201,
    )
    _post_messages(run, "acme")

    arrays = N // ARRAY
    # 2 kills land while a report array is being posted, 1 to 3 more while pushing.
    ingest_kills = set(rng.sample(range(1, arrays), 2))
    push_kill_shares = sorted(rng.uniform(0.45, 0.9) for _ in range(rng.randint(1, 3)))

    acknowledged: set[tuple[str, int]] = set()
    unacknowledged: set[tuple[str, int]] = set()
    durations: list[float] = []  # of acknowledged POSTs, to aim the kills inside one
    interrupted = 0
    tag = 0
    for a in range(arrays):
        kill_this_one = a in ingest_kills
        while True:
            tag += 1
            report_time = BASE_TIME_MS + tag
            keys = [(_msgid(i), report_time) for i in range(a * ARRAY, (a + 1) * ARRAY)]
            body = [{"msgid": m, "status": "DELIVRD", "report_time_ms": t} for m, t in keys]
            outcome: dict[str, Any] = {}

            def post(
                api: Api = run.api, body: list[dict[str, Any]] = body, out: dict[str, Any] = outcome
            ) -> None:
                try:
                    out["status"] = api.client.post("/v1/reports", json=body).status_code
                except httpx.HTTPError as exc:
                    out["error"] = exc

            poster = threading.Thread(target=post, daemon=True)
            t0 = time.monotonic()
            poster.start()
            if kill_this_one:
                kill_this_one = False
                typical = sorted(durations)[len(durations) // 2]
                time.sleep(rng.uniform(0.1, 1.0) * typical)
                run.kill_and_restart(f"ingest array {a} at {time.monotonic() - t0:.3f}s")
            poster.join(60)
            assert not poster.is_alive(), "an ingest POST hung"
            if outcome.get("status") == 202:
                durations.append(time.monotonic() - t0)
                acknowledged.update(keys)
                break
            interrupted += 1
            # Not acknowledged: it may or may not be stored. Post it again, as a client would.
            assert "error" in outcome, f"ingest answered {outcome}, not 202 or a dead socket"
            unacknowledged.update(keys)
    ingest_done = time.monotonic()
    print(
        f"\ningest: {arrays} arrays acknowledged in {ingest_done - started:.1f}s, {tag} POSTs,"
        f" {interrupted} cut by a kill, median POST {sorted(durations)[len(durations) // 2]:.3f}s"
    )

    kills_mid_push = 0
    for share in push_kill_shares:
        deadline = time.monotonic() + 60
        while (pushed := _stats(rcv)["reports"]) < share * N and time.monotonic() < deadline:
            time.sleep(0.02)
        if pushed < N:
            kills_mid_push += 1
        run.kill_and_restart(f"pushing, {pushed} pushed")

    print(f"seed {SEED}; kills:", "; ".join(run.kills))
    assert len(run.kills) >= 3
    assert kills_mid_push >= 1, "every push kill came after the run finished; make it longer"

    # Wait until nothing is pending, from the cheap counts; then read every report once.
    deadline = time.monotonic() + 90
    while True:
        counts: dict[str, int] = run.api.get("/v1/stats")["reports"]
        if counts["pending"] == 0 and sum(counts.values()) >= len(acknowledged):
            break
        assert time.monotonic() < deadline, f"not settled after 90 s: {counts}"
        time.sleep(0.2)
    settled = time.monotonic()

    reports = run.api.reports()
    stored = Counter((r["msgid"], r["report_time_ms"]) for r in reports)
    assert max(stored.values()) == 1  # one stored report per (msgid, report time)
    states = Counter(r["state"] for r in reports)
    assert states == {"delivered": len(reports)}, states

    got = Counter(
        (item["report"]["msgid"], int(item["report"]["reportTime"]))
        for item in received(rcv)["items"]
    )
    lost = len(acknowledged - set(got))
    lost_stored = len(set(stored) - set(got))
    phantom = len(set(got) - set(stored))
    duplicates = sum(n - 1 for n in got.values())
    unacked_stored = len(unacknowledged & set(stored))
    print(
        f"lost={lost} duplicates={duplicates} stored={len(stored)} acknowledged={len(acknowledged)}"
        f" unacknowledged={len(unacknowledged)} (stored anyway: {unacked_stored})"
        f" pushes={sum(got.values())} phantom={phantom}"
    )
    print(
        f"duplicates per kill: {duplicates / len(run.kills):.1f}"
        f" (in-flight cap {IN_FLIGHT}, {len(run.kills)} kills)"
    )
    print(
        f"timing: ingest {ingest_done - started:.1f}s, settled {settled - ingest_done:.1f}s later,"
        f" total {time.monotonic() - started:.1f}s"
    )
    assert acknowledged <= set(stored), "an acknowledged report is not in the store"
    assert lost == 0
    assert lost_stored == 0, "a report is marked delivered but never reached the receiver"
    assert phantom == 0, "the receiver got a report the store does not hold"
