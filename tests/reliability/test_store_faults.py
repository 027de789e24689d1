"""The store goes away mid-run: the service says so, keeps what it acknowledged, and
resumes by itself once the store is back."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import Api, Proc, needs_postgres, received


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _customer(api: Api, rcv: Proc) -> None:
    api.post("/v1/accounts", {"id": "acme"}, 201)
    api.post(
        "/v1/accounts/acme/endpoints",
        {"url": rcv.url + "/dlr", "protocol": "innopaas", "max_in_flight": 4},
        201,
    )


def _ingest(api: Api, ids: range) -> None:
    api.post(
        "/v1/messages",
        [{"msgid": f"m{i}", "account": "acme", "phone": "13912345678"} for i in ids],
        202,
    )
    api.post("/v1/reports", [{"msgid": f"m{i}", "status": "DELIVRD"} for i in ids], 202)


def _health(svc: Proc) -> int:
    try:
        return httpx.get(svc.url + "/healthz", timeout=8).status_code
    except httpx.HTTPError:
        return 0


def _pg(action: str) -> None:
    cluster = sorted(Path("/etc/postgresql").iterdir())[0].name
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", action, "-m", "fast"]
        if action == "stop"
        else ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", action],
        check=True,
        timeout=60,
        capture_output=True,
    )


def _pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], check=False).returncode == 0


@pytest.mark.postgres
@needs_postgres
def test_postgresql_restart_mid_run(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], pg_url: str
) -> None:
    rcv = spawn("receiver", "--protocol", "innopaas", "--port", "0", "--quiet", "--delay-ms", "3")
    svc = spawn("serve", "--port", "0", "--store", pg_url)
    api = api_factory(svc.url)
    _customer(api, rcv)
    _ingest(api, range(0, 3000))
    _wait(lambda: received(rcv)["reports"] >= 300, 30, "pushes to start")
    try:
        _pg("stop")
        _wait(lambda: _health(svc) == 503, 20, "/healthz to report the store down")
        refused = api.client.post("/v1/reports", json=[{"msgid": "m1", "status": "DELIVRD"}])
        assert refused.status_code == 503, refused.text
        assert "nothing was stored" in refused.json()["error"]
    finally:
        _pg("start")
        _wait(_pg_ready, 60, "PostgreSQL to come back")
    _wait(lambda: _health(svc) == 200, 30, "/healthz to recover")
    _ingest(api, range(3000, 3100))  # new work is taken again, without a restart
    reports = api.wait_settled(3100, timeout=120)
    assert {r["state"] for r in reports} == {"delivered"}
    got = {item["report"]["msgid"] for item in received(rcv)["items"]}
    lost = {f"m{i}" for i in range(3100)} - got
    print(f"lost={len(lost)} pushes={received(rcv)['reports']}")
    assert not lost
    assert svc.popen.poll() is None


def test_sqlite_locked_longer_than_the_busy_timeout(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    db = tmp_path / "locked.db"
    rcv = spawn("receiver", "--protocol", "innopaas", "--port", "0", "--quiet")
    svc = spawn("serve", "--port", "0", "--store", f"sqlite:///{db}")
    api = api_factory(svc.url)
    _customer(api, rcv)
    _ingest(api, range(0, 200))
    api.wait_settled(200)

    locked = threading.Event()
    release = threading.Event()

    def hold_the_write_lock() -> None:
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(30)
        conn.execute("ROLLBACK")
        conn.close()

    holder = threading.Thread(target=hold_the_write_lock, daemon=True)
    holder.start()
    assert locked.wait(10)
    try:
        t0 = time.monotonic()
        resp = api.client.post("/v1/reports", json=[{"msgid": "m1", "status": "UNDELIV"}])
        waited = time.monotonic() - t0
        print(f"ingest under a held lock answered {resp.status_code} after {waited:.1f}s")
        assert resp.status_code == 503, resp.text
        assert "retry later" in resp.json()["error"]
    finally:
        release.set()
        holder.join(10)
    assert len(api.reports()) == 200  # nothing of the refused array was stored
    _ingest(api, range(200, 300))  # and the service carries on by itself
    reports = api.wait_settled(300)
    assert {r["state"] for r in reports} == {"delivered"}
    assert received(rcv)["reports"] == 300
