"""End-to-end push throughput: ingest through the real API, measure until the receiver has all.

Starts ``dlrpush serve`` on a fresh SQLite file and ``dlrpush receiver --quiet --no-keep``
as separate processes on loopback, registers one endpoint, posts submission records and
then reports in batches of 1,000, and measures from the first report posted until the
receiver has acknowledged every one. Also reports the CPU seconds and peak RSS of the
service process.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

READY = re.compile(r"http://[0-9.]+:(\d+)")


@dataclass
class Result:
    protocol: str
    reports: int
    batch_max: int
    seconds: float
    reports_per_s: float
    ingest_per_s: float
    service_cpu_s: float
    service_peak_rss_mb: float
    receiver_requests: int


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlrpush", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = READY.search(line)
        if m:
            return proc, int(m.group(1))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"{args[0]} did not start")


def _proc_stats(pid: int) -> tuple[float, float]:
    """CPU seconds (user+system) and peak RSS in MB of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cpu, peak


def run(protocol: str, n: int, batch_max: int = 100, chunk: int = 1000) -> Result:
    tmp = tempfile.mkdtemp(prefix="dlrpush-bench-")
    env = {**os.environ, "DLRPUSH_CALLBACK_ALLOW": "127.0.0.0/8", "DLRPUSH_LOG_LEVEL": "WARNING"}
    svc, svc_port = _start(["serve", "--port", "0", "--store", f"sqlite:///{tmp}/b.db"], env)
    rcv, rcv_port = _start(
        ["receiver", "--protocol", protocol, "--port", "0", "--quiet", "--no-keep"], env
    )
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{svc_port}", timeout=60)
        api.post("/v1/accounts", json={"id": "bench"}).raise_for_status()
        api.post(
            "/v1/accounts/bench/endpoints",
            json={
                "url": f"http://127.0.0.1:{rcv_port}/dlr",
                "protocol": protocol,
                "batch_max": batch_max,
                "max_in_flight": 16,
            },
        ).raise_for_status()
        for start in range(0, n, chunk):
            msgs = [
                {
                    "msgid": f"m{i}",
                    "account": "bench",
                    "phone": f"86139{i % 10**8:08d}",
                    "segments": 1,
                    "unit_price": "0.05670",
                }
                for i in range(start, min(n, start + chunk))
            ]
            api.post(
                "/v1/messages",
                content=orjson.dumps(msgs),
                headers={"content-type": "application/json"},
            ).raise_for_status()
        bodies = [
            orjson.dumps(
                [{"msgid": f"m{i}", "status": "DELIVRD"} for i in range(s, min(n, s + chunk))]
            )
            for s in range(0, n, chunk)
        ]
        t0 = time.perf_counter()
        for body in bodies:
            api.post(
                "/v1/reports", content=body, headers={"content-type": "application/json"}
            ).raise_for_status()
        t_ingest = time.perf_counter() - t0
        stats: dict[str, Any] = {}
        while True:
            stats = httpx.get(f"http://127.0.0.1:{rcv_port}/_stats").json()
            if stats["accepted"] >= n:
                break
            if time.perf_counter() - t0 > 600:
                raise RuntimeError(f"timed out: {stats}")
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        cpu, peak = _proc_stats(svc.pid)
        return Result(
            protocol=protocol,
            reports=n,
            batch_max=batch_max if protocol == "ucloud" else 1,
            seconds=round(elapsed, 3),
            reports_per_s=round(n / elapsed),
            ingest_per_s=round(n / t_ingest),
            service_cpu_s=round(cpu, 2),
            service_peak_rss_mb=round(peak, 1),
            receiver_requests=int(stats["requests"]),
        )
    finally:
        for p in (svc, rcv):
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ucloud", type=int, default=50_000, help="reports for ucloud")
    parser.add_argument("--innopaas", type=int, default=10_000, help="reports for innopaas")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)
    results = []
    if args.ucloud:
        results.append(run("ucloud", args.ucloud))
    if args.innopaas:
        results.append(run("innopaas", args.innopaas))
    print(
        "| protocol | reports | per request | end-to-end reports/s | ingest reports/s |"
        " service CPU s | service peak RSS MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.protocol} | {r.reports} | {r.batch_max} | {r.reports_per_s} |"
            f" {r.ingest_per_s} | {r.service_cpu_s} | {r.service_peak_rss_mb} |"
        )
    if args.json:
        args.json.write_bytes(
            orjson.dumps([asdict(r) for r in results], option=orjson.OPT_INDENT_2)
        )


if __name__ == "__main__":
    main()
