"""Fixtures shared by the integration and acceptance tests: real processes on loopback."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from dlrpush.store import open_store
from dlrpush.store.base import Store

READY = re.compile(r"https?://[0-9.]+:(\d+)")


@dataclass
class Proc:
    """A dlrpush subprocess whose output is collected in the background."""

    args: list[str]
    popen: subprocess.Popen[str]
    port: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return "".join(self.lines)

    def kill9(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


def run_in_own_group(
    cmd: list[str], *, env: dict[str, str], timeout_s: float, cwd: Path | None = None
) -> tuple[int, str]:
    """Run ``cmd`` to its end in a process group of its own: exit code and output (stdout
    then stderr). Fails when it outlives ``timeout_s`` or leaves any process running."""
    popen = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        env=env,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = popen.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(popen.pid, signal.SIGKILL)
        out, err = popen.communicate()
    leftovers = True
    try:
        os.killpg(popen.pid, 0)
    except ProcessLookupError:
        leftovers = False
    if leftovers:
        os.killpg(popen.pid, signal.SIGKILL)
    name = " ".join(cmd[1:4])
    assert not timed_out, f"{name} still running after {timeout_s} s:\n{out}\n{err}"
    assert not leftovers, f"{name} left processes running:\n{out}\n{err}"
    return popen.returncode, out + err


def start_process(args: list[str], env: dict[str, str], ready_timeout: float = 20.0) -> Proc:
    popen = subprocess.Popen(
        [sys.executable, "-m", "dlrpush", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        bufsize=1,
    )
    proc = Proc(args, popen)
    ready = threading.Event()

    def pump() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            proc.lines.append(line)
            if not ready.is_set():
                m = READY.search(line)
                if m and ("ready" in line or "listening" in line):
                    proc.port = int(m.group(1))
                    ready.set()
                elif "worker running" in line:  # a worker listens on no port
                    proc.port = -1
                    ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(ready_timeout) or not proc.port:
        popen.kill()
        raise RuntimeError(f"{args[0]} did not become ready:\n{proc.output()}")
    return proc


@pytest.fixture
def test_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLRPUSH_")}
    env["DLRPUSH_CALLBACK_ALLOW"] = "127.0.0.0/8"
    env["DLRPUSH_LOG_LEVEL"] = "WARNING"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def spawn(test_env: dict[str, str]) -> Iterator[Callable[..., Proc]]:
    """Start ``dlrpush <args>`` and wait for its ready line; all are stopped at the end."""
    procs: list[Proc] = []

    def _spawn(*args: str, env: dict[str, str] | None = None) -> Proc:
        proc = start_process(list(args), {**test_env, **(env or {})})
        procs.append(proc)
        return proc

    yield _spawn
    for p in procs:
        p.stop(5)


class Api:
    """A small JSON client for the service under test."""

    def __init__(self, base: str, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=base, timeout=30.0, headers=headers)

    def post(self, path: str, body: Any, expect: int | None = None) -> Any:
        resp = self.client.post(path, json=body)
        if expect is not None:
            assert resp.status_code == expect, resp.text
        return resp.json() if resp.content else None

    def get(self, path: str, **params: Any) -> Any:
        resp = self.client.get(path, params={k: v for k, v in params.items() if v is not None})
        assert resp.status_code == 200, resp.text
        return resp.json()

    def reports(self, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.get("/v1/reports", cursor=cursor, limit=1000, **params)
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items

    def wait_settled(self, expected: int, timeout: float = 60.0, **params: Any) -> list[Any]:
        """Wait until ``expected`` reports exist and none is pending."""
        deadline = time.monotonic() + timeout
        items: list[Any] = []
        while time.monotonic() < deadline:
            items = self.reports(**params)
            if len(items) >= expected and all(r["state"] != "pending" for r in items):
                return items
            time.sleep(0.2)
        states = {r["state"] for r in items}
        raise AssertionError(f"not settled after {timeout}s: {len(items)} reports, {states}")


@pytest.fixture
def api_factory() -> Iterator[Callable[[str], Api]]:
    made: list[Api] = []

    def _make(base: str) -> Api:
        api = Api(base)
        made.append(api)
        return api

    yield _make
    for api in made:
        api.client.close()


def received(receiver: Proc) -> dict[str, Any]:
    resp = httpx.get(receiver.url + "/_received", timeout=10)
    resp.raise_for_status()
    data: dict[str, Any] = resp.json()
    return data


PG_URL = os.environ.get("DLRPUSH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_unavailable() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL at {PG_URL} ({str(exc).strip().splitlines()[0]})"
    return None


PG_SKIP = _pg_unavailable()
if PG_SKIP and os.environ.get("CI"):
    # CI has the server; a skip there would hide a broken backend.
    raise RuntimeError(f"PostgreSQL tests cannot be skipped in CI: {PG_SKIP}")
needs_postgres = pytest.mark.skipif(PG_SKIP is not None, reason=f"PostgreSQL: {PG_SKIP}")


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh, empty schema on the test server; yields a store URL that uses it."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A store URL on a fresh, empty schema of the test server, dropped afterwards."""
    with pg_schema() as url:
        yield url


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, needs_postgres])]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Every store backend behind one fixture, so the same contract runs against each."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path}/contract.db"
        else:
            url = stack.enter_context(pg_schema())
        st = open_store(url)
        await st.open()
        try:
            yield st
        finally:
            await st.close()
