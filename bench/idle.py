"""What an idle service costs: its CPU with many customers and no traffic.

For each store and each endpoint count, starts ``dlrpush serve`` on a fresh SQLite file
or PostgreSQL schema, creates that many accounts with one ``innopaas`` endpoint each
through the API, waits for the dispatcher to have seen them, and then reads the
service's CPU (from /proc) over ``--seconds`` with nothing sent. What is left is the
dispatcher's poll (every ``DLRPUSH_POLL_INTERVAL_S``) and the event loop's own timers.
Prints a markdown table; the service's PostgreSQL server is not counted.

    python -m bench.idle [--endpoints 0 1000 3000] [--stores sqlite,postgres] [--seconds 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx

from bench.procs import DEFAULT_PG_URL, Procs, base_env, fresh_store, pg_available


def idle_cpu_share(procs: Procs, store_url: str, endpoints: int, seconds: float) -> float:
    """The service's CPU over ``seconds`` of no traffic, as a share of one core."""
    svc = procs.service(store_url)
    try:
        with httpx.Client(base_url=svc.url, timeout=30) as api:
            for i in range(endpoints):
                api.post("/v1/accounts", json={"id": f"a{i}"}).raise_for_status()
                api.post(
                    f"/v1/accounts/a{i}/endpoints",
                    json={"url": "http://127.0.0.1:9/dlr", "protocol": "innopaas"},
                ).raise_for_status()
            deadline = time.monotonic() + 60
            while len(api.get("/v1/stats").json()["dispatcher"]["endpoints"]) < endpoints:
                if time.monotonic() > deadline:
                    raise RuntimeError("the dispatcher did not pick up every endpoint in 60 s")
                time.sleep(0.2)
        time.sleep(2)  # the creations' own after-effects (a poll or two) are not counted
        svc.mark_cpu()
        time.sleep(seconds)
        return svc.cpu_since_mark() / seconds
    finally:
        procs.stop(svc)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.split("\n")[0])
    ap.add_argument("--endpoints", type=int, nargs="+", default=[0, 1000, 3000])
    ap.add_argument("--stores", default="sqlite,postgres")
    ap.add_argument("--seconds", type=float, default=20.0, help="idle time measured")
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = ap.parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    print(
        f"`python -m bench.idle --endpoints {' '.join(map(str, args.endpoints))}"
        f" --stores {','.join(stores)} --seconds {args.seconds:g}`\n"
    )
    print("| store | endpoints | service CPU, share of a core |")
    print("| --- | ---: | ---: |")
    with (
        tempfile.TemporaryDirectory(prefix="dlrpush-idle-") as tmp,
        Procs(Path(tmp), base_env()) as procs,
    ):
        for store in stores:
            if store == "postgres" and (why := pg_available(args.pg_url)) is not None:
                print(f"| postgres | – | skipped: {why} |")
                continue
            for n in args.endpoints:
                with fresh_store(store, Path(tmp), f"idle-{n}", args.pg_url) as url:
                    share = idle_cpu_share(procs, url, n, args.seconds)
                print(f"| {store} | {n:,} | {share * 100:.2f} % |", flush=True)


if __name__ == "__main__":
    main()
