"""The processes a benchmark starts, what /proc says about them, and throw-away stores.

It owns starting the service, the receivers and anything else a benchmark runs beside
itself (each in its own process, output to a log file in the run's directory, ready when
its log shows the bound port), stopping every one of them on the way out whatever
happened (SIGTERM, then SIGKILL), reading a process's CPU seconds and peak RSS from
/proc, and creating and dropping the fresh SQLite file or PostgreSQL schema a run uses.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"http://127\.0\.0\.1:(\d+)")
_TICKS = os.sysconf("SC_CLK_TCK")
DEFAULT_PG_URL = os.environ.get("DLRPUSH_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a live process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def postgres_cpu_seconds() -> float:
    """CPU seconds of every process named ``postgres`` on this machine (server and backends).

    Backends that exit between two readings take their seconds with them, so a difference
    of two readings is a lower bound; the service keeps its pooled connections open, so
    in practice it is the database's share of the run.
    """
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        if name == "postgres":
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def free_port() -> int:
    """A loopback port nobody listens on right now (for a receiver started later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(eq=False)
class Proc:
    """One started process: its port once ready, and where its output goes."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int = 0
    ready_at: float = 0.0  # time.monotonic() when its ready line was seen
    _cpu_mark: float = field(default=0.0, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        return cpu_seconds(self.pid)

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.pid)

    def mark_cpu(self) -> None:
        """Start a CPU reading; ``cpu_since_mark`` gives the seconds used since."""
        self._cpu_mark = self.cpu_s()

    def cpu_since_mark(self) -> float:
        return self.cpu_s() - self._cpu_mark

    def alive(self) -> bool:
        return self.popen.poll() is None


# Every started process not yet stopped: the last line of defence (atexit) when a run
# dies in a way that skipped the ``with`` blocks.
_LIVE: set[Proc] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        if proc.popen.poll() is None:
            proc.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(5)
    _LIVE.clear()


class Procs:
    """Starts processes and stops all of them when the ``with`` block ends."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.started: list[Proc] = []

    def __enter__(self) -> Procs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(
        self, name: str, argv: list[str], *, ready: bool = True, timeout_s: float = 60.0
    ) -> Proc:
        """Run ``argv``; with ``ready``, wait for a ``http://127.0.0.1:PORT`` line."""
        log = self.workdir / f"{name}.log"
        n = 1
        while log.exists():
            n += 1
            log = self.workdir / f"{name}-{n}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=ROOT,
            )
        proc = Proc(name, popen, log)
        self.started.append(proc)
        _LIVE.add(proc)
        if not ready:
            return proc
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = READY.search(log.read_text(errors="replace"))
            if m:
                proc.port = int(m.group(1))
                proc.ready_at = time.monotonic()
                return proc
            if popen.poll() is not None:
                break
            time.sleep(0.02)
        code = popen.poll()
        self.stop(proc)
        tail = log.read_text(errors="replace")[-2000:]
        how = f"exited with {code}" if code is not None else f"not ready after {timeout_s:g} s"
        raise RuntimeError(f"{name} {how}: {shlex.join(argv)}\n{tail}")

    def service(self, store_url: str, *, dispatch: bool = True) -> Proc:
        """``dlrpush serve`` on ``store_url``; with ``dispatch=False`` the API only."""
        argv = [sys.executable, "-m", "dlrpush", "serve", "--port", "0", "--store", store_url]
        if not dispatch:
            argv.append("--no-dispatch")
        return self.start("service" if dispatch else "api-only", argv)

    def timing_receiver(self, protocol: str, port: int = 0) -> Proc:
        argv = [sys.executable, "-m", "bench.timing_receiver", "--protocol", protocol]
        return self.start(f"timing-{protocol}", [*argv, "--port", str(port)])

    def bundled_receiver(self, protocol: str, *flags: str) -> Proc:
        argv = [sys.executable, "-m", "dlrpush", "receiver", "--protocol", protocol]
        return self.start(
            f"receiver-{protocol}", [*argv, "--port", "0", "--quiet", "--no-keep", *flags]
        )

    def stop(self, *procs: Proc, timeout_s: float = 15.0) -> None:
        """SIGTERM each, then wait; SIGKILL whatever is still running after ``timeout_s``."""
        for p in procs:
            if p.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for p in procs:
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(5)
            if p in self.started:
                self.started.remove(p)
            _LIVE.discard(p)

    def stop_all(self) -> None:
        self.stop(*reversed(self.started))


def base_env() -> dict[str, str]:
    """The environment of every started process: no inherited DLRPUSH_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLRPUSH_")}
    env["DLRPUSH_CALLBACK_ALLOW"] = "127.0.0.0/8"
    env["DLRPUSH_LOG_LEVEL"] = "WARNING"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def pg_available(url: str) -> str | None:
    """Why PostgreSQL cannot be used at ``url``, or None when it can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL at {url} ({str(exc).strip().splitlines()[0]})"
    return None


def pg_version(url: str) -> str:
    """The server's version and whether autovacuum (which also keeps the planner's
    statistics fresh) is on: both change the PostgreSQL figures."""
    import psycopg

    with psycopg.connect(url, connect_timeout=3) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        autovacuum = conn.execute("SHOW autovacuum").fetchone()
    return f"{version[0] if version else '?'}, autovacuum {autovacuum[0] if autovacuum else '?'}"


@contextlib.contextmanager
def pg_schema(url: str) -> Iterator[str]:
    """A fresh, empty schema; yields a store URL that uses it, and drops it afterwards."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{name}"
    finally:
        # A server that is restarting (other work shares it) gets a while to come back.
        for attempt in range(15):
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
                break
            except psycopg.OperationalError:
                if attempt == 14:
                    raise
                time.sleep(2)


@contextlib.contextmanager
def fresh_store(kind: str, workdir: Path, name: str, pg_url: str) -> Iterator[str]:
    """A store URL on an empty SQLite file or PostgreSQL schema, removed afterwards."""
    if kind == "postgres":
        with pg_schema(pg_url) as url:
            yield url
        return
    path = workdir / f"{name}.db"
    try:
        yield f"sqlite:///{path}"
    finally:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{path}{suffix}").unlink()
