"""A fast stand-in customer for benchmarks that notes when each report arrives.

It owns the receiving end of every benchmark: it accepts pushes of one protocol on any
POST path, answers ``{"code": 0}`` at once, and stores the arrival time
(``time.monotonic()``, which on Linux is one clock for every process) of the first copy of
each report by its msgid number (msgids are a one-letter prefix and a decimal index, as the
harness makes them: ``m0``, ``m1``…). It does not validate bodies beyond finding the
msgids; the bundled ``dlrpush receiver`` does that and is too slow to time with.

``GET /_stats`` gives counts (``unique`` is how many distinct reports arrived), ``GET
/_times`` the arrival times as native float64s (NaN: not arrived), ``DELETE /_received``
starts afresh. Run it as ``python -m bench.timing_receiver --protocol ucloud --port 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import time
from array import array
from collections.abc import Callable
from typing import Final

import orjson
from aiohttp import web

ACCEPT: Final = orjson.dumps({"code": 0, "message": "ok"})
_JSON: Final = "application/json"
_NAN: Final = math.nan


class Arrivals:
    """Arrival time of each report by msgid index, and the counts ``/_stats`` shows."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.times = array("d")
        self.requests = 0
        self.reports = 0
        self.unique = 0
        self.duplicates = 0
        self.bad = 0

    def note(self, msgid: str, t: float) -> None:
        index = int(msgid[1:])
        times = self.times
        if index >= len(times):
            grow = max(index + 1, 2 * len(times), 1024) - len(times)
            times.extend(array("d", [_NAN]) * grow)
        if times[index] != times[index]:  # NaN: first copy
            times[index] = t
            self.unique += 1
        else:
            self.duplicates += 1

    def stats(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "reports": self.reports,
            "accepted": self.reports,
            "unique": self.unique,
            "duplicates": self.duplicates,
            "bad": self.bad,
        }


def make_app(protocol: str) -> web.Application:
    """The receiver as an aiohttp application for ``protocol`` ("ucloud" or "innopaas")."""
    state = Arrivals()
    batched = protocol == "ucloud"

    async def push(request: web.Request) -> web.Response:
        t = time.monotonic()
        state.requests += 1
        body = await request.read()
        try:
            doc = orjson.loads(body)
            msgids = [item["SessionNo"] for item in doc["Data"]] if batched else [doc["msgid"]]
            for msgid in msgids:
                state.note(msgid, t)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
            state.bad += 1
            return web.Response(status=400, body=b'{"code":400}', content_type=_JSON)
        state.reports += len(msgids)
        return web.Response(body=ACCEPT, content_type=_JSON)

    async def stats(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(state.stats()), content_type=_JSON)

    async def times(_: web.Request) -> web.Response:
        return web.Response(body=state.times.tobytes(), content_type="application/octet-stream")

    async def clear(_: web.Request) -> web.Response:
        state.reset()
        return web.Response(body=orjson.dumps(state.stats()), content_type=_JSON)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/_stats", stats)
    app.router.add_get("/_times", times)
    app.router.add_delete("/_received", clear)
    app.router.add_post("/{path:.*}", push)
    return app


async def serve(protocol: str, host: str, port: int) -> None:
    runner = web.AppRunner(make_app(protocol), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        bound = runner.addresses[0][1]
        print(f"timing receiver ({protocol}) listening on http://{host}:{bound}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--protocol", choices=("ucloud", "innopaas"), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=_loop_factory()) as runner,
    ):
        runner.run(serve(args.protocol, args.host, args.port))


if __name__ == "__main__":
    main()
