"""The bundled receiver: an aiohttp server that plays a customer's callback endpoint.

It owns everything a stand-in customer does on the wire: accepting pushes of one protocol
on any POST path, answering success or an injected failure (HTTP error, refusal code,
hang, connection reset, delay), and keeping counts, records and an optional JSON-lines log
that tests, the demo and benchmarks inspect through ``/_received`` and ``/_stats``.
The push handler is the hot path of benchmarks, so it does the minimum per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO, Final, NamedTuple

import orjson
from aiohttp import web

from dlrpush import eventloop
from dlrpush.errors import ConfigError
from dlrpush.receiver import (
    LOOSE_ACCEPT_BODY,
    PROTOCOLS,
    ReceiverParseError,
    StatusReport,
    accept_body,
    parse,
    reject_body,
)

__all__ = [
    "FAIL_MODES",
    "RECEIVER_STATE",
    "Received",
    "ReceiverOptions",
    "ReceiverState",
    "make_app",
    "run_receiver",
    "start_receiver",
]

FAIL_MODES: Final = ("status", "code", "hang", "reset")

_JSON: Final = "application/json"
# Pushes are small (a ucloud batch of 100 is ~30 KB); this only has to admit odd batch_max.
_CLIENT_MAX_SIZE: Final = 32 * 1024 * 1024
# How long a stop waits for in-flight answers before cancelling them; delayed answers are
# test fixtures, not work worth waiting a minute for.
_SHUTDOWN_TIMEOUT_S: Final = 2.0
_HANG_POLL_S: Final = 0.05
_LOG_BODY_CHARS: Final = 2000


@dataclass(frozen=True)
class ReceiverOptions:
    """How the receiver behaves; see ``dlrpush receiver --help`` for each option."""

    protocol: str
    host: str = "127.0.0.1"
    port: int = 9000
    fail_rate: float = 0.0
    fail_first: int = 0
    fail_with: str = "status"
    fail_status: int = 500
    reject_code: int = 1
    delay_ms: float = 0
    code: int = 0
    loose_reply: bool = False
    log_path: str | None = None
    keep: bool = True
    quiet: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(
                f"protocol: expected one of {', '.join(PROTOCOLS)}, got {self.protocol!r}"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port: expected 0..65535, got {self.port}")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ConfigError(f"fail_rate: expected 0..1, got {self.fail_rate}")
        if self.fail_first < 0:
            raise ConfigError(f"fail_first: expected 0 or more, got {self.fail_first}")
        if self.fail_with not in FAIL_MODES:
            raise ConfigError(
                f"fail_with: expected one of {', '.join(FAIL_MODES)}, got {self.fail_with!r}"
            )
        # A 2xx "failure" would be a success to every pusher; 1xx cannot end a request.
        if not 300 <= self.fail_status <= 599:
            raise ConfigError(f"fail_status: expected 300..599, got {self.fail_status}")
        if self.reject_code == 0:
            raise ConfigError("reject_code: 0 means accepted; use a non-zero code")
        if not self.delay_ms >= 0:  # also refuses NaN
            raise ConfigError(f"delay_ms: expected 0 or more, got {self.delay_ms}")


class _Answer(NamedTuple):
    kind: str  # "ok" | "status" | "code" | "hang" | "reset"
    accepted: bool
    label: str  # what the log and the console say was answered
    status: int
    body: bytes


class Received(NamedTuple):
    """One report as received, with what was answered to the request that carried it."""

    t_ms: int
    request: int
    accepted: bool
    answer: str
    report: StatusReport


class ReceiverState:
    """Counters and records of one receiver; reachable as ``app[RECEIVER_STATE]``.

    ``accepted`` and ``rejected`` count reports (a ucloud request carries many); a report
    counts as accepted when the receiver gave its accept answer, whatever a pusher's own
    success rule makes of a refusal (innopaas pushers accept any 2xx).
    """

    def __init__(self, options: ReceiverOptions) -> None:
        self.options = options
        self.requests = 0
        self.reports = 0
        self.accepted = 0
        self.rejected = 0
        self.bad = 0
        self.items: list[Received] = []
        self.stopping = asyncio.Event()
        self._rng = random.Random(options.seed)
        self._log: IO[bytes] | None = None
        self._wake: asyncio.Event | None = None
        self._delay_s = options.delay_ms / 1000.0
        ok_body = LOOSE_ACCEPT_BODY if options.loose_reply else accept_body()
        self._ok = _Answer("ok", True, "accepted", 200, ok_body)
        self._always = _Answer(
            "code", False, f"code {options.code}", 200, reject_body(options.code, "rejected")
        )
        self._failure = {
            "status": _Answer(
                "status",
                False,
                f"HTTP {options.fail_status}",
                options.fail_status,
                reject_body(options.fail_status, "injected failure"),
            ),
            "code": _Answer(
                "code",
                False,
                f"code {options.reject_code}",
                200,
                reject_body(options.reject_code, "rejected"),
            ),
            "hang": _Answer("hang", False, "hang", 0, b""),
            "reset": _Answer("reset", False, "reset", 0, b""),
        }[options.fail_with]

    def reset(self) -> None:
        """Back to a fresh start: counts, records, ``fail_first`` and the seeded draws."""
        self.requests = self.reports = self.accepted = self.rejected = self.bad = 0
        self.items = []
        self._rng = random.Random(self.options.seed)

    def accepted_reports(self) -> list[StatusReport]:
        return [item.report for item in self.items if item.accepted]

    def stats(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "reports": self.reports,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "bad": self.bad,
        }

    async def wait_for_accepted(self, n_reports: int, timeout_s: float) -> None:
        """Return once ``n_reports`` reports were accepted; TimeoutError after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.accepted < n_reports:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.accepted} of {n_reports} reports accepted after {timeout_s:g} s"
                    f" ({self.requests} requests, {self.rejected} reports not accepted)"
                )
            if self._wake is None:
                self._wake = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    def open_log(self) -> None:
        if self.options.log_path is not None:
            self._log = open(self.options.log_path, "ab")  # noqa: SIM115  closed in close_log

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _decide(self, number: int) -> _Answer:
        opts = self.options
        if opts.code:
            return self._always
        failed = number <= opts.fail_first
        # Draw for every request so a seed gives the same sequence whatever fail_first is.
        if opts.fail_rate > 0.0 and self._rng.random() < opts.fail_rate:
            failed = True
        return self._failure if failed else self._ok

    def _record(self, number: int, t_ms: int, reports: list[StatusReport], answer: _Answer) -> None:
        n = len(reports)
        self.reports += n
        if answer.accepted:
            self.accepted += n
        else:
            self.rejected += n
        if self.options.keep:
            for report in reports:
                self.items.append(Received(t_ms, number, answer.accepted, answer.label, report))
        if self._log is not None:
            self._log.write(
                b"".join(
                    orjson.dumps(
                        {
                            "t_ms": t_ms,
                            "request": number,
                            "report": report.raw,
                            "accepted": answer.accepted,
                            "answer": answer.label,
                        }
                    )
                    + b"\n"
                    for report in reports
                )
            )
            self._log.flush()
        if not self.options.quiet:
            protocol = self.options.protocol
            sys.stdout.write(
                "".join(
                    f"{protocol:<7} msgid={r.msgid} phone={r.phone} {r.status}"
                    f"{' ' + r.description if r.description else ''} -> {answer.label}\n"
                    for r in reports
                )
            )
            sys.stdout.flush()
        if answer.accepted and self._wake is not None:
            self._wake.set()
            self._wake = None

    def _record_bad(self, number: int, t_ms: int, body: bytes, error: str) -> None:
        self.bad += 1
        if self._log is not None:
            snippet = body[:_LOG_BODY_CHARS].decode("utf-8", "replace")
            line = {"t_ms": t_ms, "request": number, "error": error, "body": snippet}
            self._log.write(orjson.dumps({**line, "answer": "HTTP 400"}) + b"\n")
            self._log.flush()
        if not self.options.quiet:
            sys.stdout.write(f"{self.options.protocol:<7} bad request: {error} -> HTTP 400\n")
            sys.stdout.flush()

    async def handle_push(self, request: web.Request) -> web.StreamResponse:
        t_ms = time.time_ns() // 1_000_000
        self.requests += 1
        number = self.requests
        try:
            body = await request.read()
        except web.HTTPException:
            self.bad += 1  # e.g. 413: still a request that got no reports through
            raise
        try:
            reports = parse(self.options.protocol, body)
        except ReceiverParseError as exc:
            self._record_bad(number, t_ms, body, str(exc))
            if self._delay_s:
                await asyncio.sleep(self._delay_s)
            return web.Response(status=400, body=reject_body(400, str(exc)), content_type=_JSON)
        answer = self._decide(number)
        self._record(number, t_ms, reports, answer)
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        kind = answer.kind
        if kind == "hang":
            await self._hang(request)
            kind = "reset"  # the client is gone or we are stopping: nothing left to say
        if kind == "reset":
            _reset(request)
            # Never written: the transport is closed. aiohttp still wants a response.
            return web.Response(status=500)
        return web.Response(status=answer.status, body=answer.body, content_type=_JSON)

    async def _hang(self, request: web.Request) -> None:
        while not self.stopping.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            await asyncio.sleep(_HANG_POLL_S)


def _reset(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 turns the close into a TCP RST, which is what "connection reset" means
        # to a client; a plain close would read as an empty answer instead.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


RECEIVER_STATE: Final = web.AppKey("dlrpush_receiver_state", ReceiverState)


def make_app(options: ReceiverOptions) -> web.Application:
    """The receiver as an aiohttp application (POST anywhere = push; ``/_…`` = inspection)."""
    state = ReceiverState(options)
    app = web.Application(client_max_size=_CLIENT_MAX_SIZE)
    app[RECEIVER_STATE] = state

    async def received(_: web.Request) -> web.Response:
        doc: dict[str, object] = dict(state.stats())
        if options.keep:
            doc["items"] = [
                {
                    "t_ms": item.t_ms,
                    "request": item.request,
                    "accepted": item.accepted,
                    "answer": item.answer,
                    "report": item.report.raw,
                }
                for item in state.items
            ]
        return web.Response(body=orjson.dumps(doc), content_type=_JSON)

    async def clear(_: web.Request) -> web.Response:
        state.reset()
        return web.Response(body=orjson.dumps(state.stats()), content_type=_JSON)

    async def stats(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(state.stats()), content_type=_JSON)

    async def lifetime(_: web.Application) -> AsyncIterator[None]:
        state.open_log()
        yield
        state.close_log()

    async def on_shutdown(_: web.Application) -> None:
        state.stopping.set()  # releases hung requests so a stop does not wait for them

    app.cleanup_ctx.append(lifetime)
    app.on_shutdown.append(on_shutdown)
    # Registered before the catch-all so GET/DELETE here are not pushes.
    app.router.add_get("/_received", received)
    app.router.add_delete("/_received", clear)
    app.router.add_get("/_stats", stats)
    app.router.add_post("/{path:.*}", state.handle_push)
    return app


async def start_receiver(options: ReceiverOptions) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (``await runner.cleanup()`` stops) and the port.

    With ``port=0`` the system picks a free port, which is the one returned.
    """
    runner = web.AppRunner(make_app(options), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port)
        await site.start()
        port: int = runner.addresses[0][1]
    except BaseException:
        await runner.cleanup()
        raise
    return runner, port


def url_host(host: str) -> str:
    """``host`` as written inside a URL (IPv6 literals get brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def run_receiver(options: ReceiverOptions) -> None:
    """Serve until SIGINT or SIGTERM; prints one ready line with the bound port first."""

    async def serve() -> None:
        runner, port = await start_receiver(options)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        handled: list[signal.Signals] = []
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):  # Windows
                    loop.add_signal_handler(sig, stop.set)
                    handled.append(sig)
            print(
                f"dlrpush receiver ({options.protocol}) listening on "
                f"http://{url_host(options.host)}:{port}",
                flush=True,
            )
            await stop.wait()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        eventloop.run(serve())
