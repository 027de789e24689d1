"""``dlrpush demo``: the whole product, working, on one machine, in well under a minute.

This module owns the demo run: it starts the service and four stand-in customer
callbacks as real ``python -m dlrpush`` processes on loopback, sets customers up and
sends traffic through the public HTTP API only, waits for the pushes to settle, prints
what each customer received and what dlrpush recorded, checks that this is what should
have happened, and stops every process it started whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any, TextIO
from zoneinfo import ZoneInfo

__all__ = ["run_demo"]

_READY = re.compile(r"(?:ready on|listening on) (http://\S+?:\d+)")
_START_TIMEOUT_S = 20.0
_SETTLE_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 5.0
_HTTP_TIMEOUT_S = 10.0
_MAX_REPORTS = 1000
# The provider's contract: the first push and 3 retries, 1 s apart.
_ATTEMPTS_BEFORE_FAILED = 4
_FLAKY_FAILURES = 2

_PHONES = (
    "8618888888888",
    "13912345678",
    "8613800138000",
    "15012345678",
    "18612345678",
    "8617712345678",
    "13312345678",
    "8618912345678",
)
_STATUSES = ("DELIVRD", "DELIVRD", "UNDELIV", "DELIVRD", "MSBLACK", "DELIVRD", "EXPIRED")
_ERRORS = {"DELIVRD": "000", "UNDELIV": "001", "MSBLACK": "045", "EXPIRED": "004"}
# Realistic 18-digit platform msgids, one block per customer.
_MSGID_BASE = 627239445736452096
_RECEIPT_TZ = ZoneInfo("Asia/Shanghai")


class _DemoError(Exception):
    """Something the demo needs did not happen; the message says what, in plain words."""


@dataclass(frozen=True)
class _Callback:
    account: str
    protocol: str
    behaviour: str
    receiver_args: tuple[str, ...] = ()


_CALLBACKS = (
    _Callback("shop", "ucloud", "healthy"),
    _Callback("shop", "innopaas", "healthy"),
    _Callback(
        "bank",
        "ucloud",
        f"refuses its first {_FLAKY_FAILURES} requests (HTTP 500), then accepts",
        ("--fail-first", str(_FLAKY_FAILURES)),
    ),
    _Callback("games", "ucloud", "refuses every push (HTTP 200 with code 1)", ("--code", "1")),
)
_ACCOUNTS = {
    "shop": "Online shop (two callbacks, one per format)",
    "bank": "Bank (callback that stumbles, then recovers)",
    "games": "Games studio (callback that refuses everything)",
}
_HEALTHY = ("shop", "bank")


@dataclass
class _Process:
    label: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


@dataclass
class _Processes:
    """Every child process of the demo, so one ``stop_all`` ends them all."""

    workdir: Path
    env: dict[str, str]
    items: list[_Process] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def start(self, label: str, args: Sequence[str]) -> _Process:
        log_path = self.workdir / f"{label.replace(' ', '-')}.log"
        log = open(log_path, "wb")  # noqa: SIM115  closed in stop_all
        self._logs.append(log)
        popen = subprocess.Popen(
            [sys.executable, "-m", "dlrpush", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        proc = _Process(label, popen, log_path)
        self.items.append(proc)
        return proc

    def wait_ready(self, deadline: float) -> None:
        """Read each process's ready line to learn the port it got."""
        waiting = [p for p in self.items if not p.url]
        while waiting:
            for proc in list(waiting):
                match = _READY.search(proc.log_path.read_text("utf-8", "replace"))
                if match:
                    proc.url = match.group(1)
                    waiting.remove(proc)
                elif proc.popen.poll() is not None:
                    raise _DemoError(
                        f"the {proc.label} stopped before it was ready "
                        f"(exit code {proc.popen.returncode}):\n{proc.log_tail()}"
                    )
            if waiting and time.monotonic() > deadline:
                names = ", ".join(p.label for p in waiting)
                raise _DemoError(f"not ready after {_START_TIMEOUT_S:g} s: {names}")
            if waiting:
                time.sleep(0.02)

    def stop_all(self) -> None:
        # The service first, so its last pushes still find their receivers answering.
        for group in (self.items[:1], self.items[1:]):
            for proc in group:
                if proc.popen.poll() is None:
                    proc.popen.terminate()
            deadline = time.monotonic() + _STOP_TIMEOUT_S
            for proc in group:
                try:
                    proc.popen.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.popen.kill()
                    proc.popen.wait()
        for log in self._logs:
            log.close()


class _Http:
    """A JSON client on urllib that never goes through a proxy: everything is loopback."""

    def __init__(self) -> None:
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, url: str, body: object = None, expect: int = 200) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if data is None else {"Content-Type": "application/json"}
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=_HTTP_TIMEOUT_S) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise _DemoError(f"{method} {url} failed: {exc}") from None
        if status != expect:
            text = raw.decode("utf-8", "replace")[:300]
            raise _DemoError(f"{method} {url} answered HTTP {status}: {text}")
        return json.loads(raw) if raw else None


class _Printer:
    def __init__(self, out: TextIO) -> None:
        self._out = out

    def __call__(self, text: str = "") -> None:
        try:
            self._out.write(text + "\n")
        except UnicodeEncodeError:
            # A terminal that cannot show Chinese still gets every line, escaped.
            encoding = getattr(self._out, "encoding", None) or "ascii"
            self._out.write(text.encode(encoding, "backslashreplace").decode(encoding) + "\n")
        self._out.flush()


@contextlib.contextmanager
def _sigterm_runs_cleanup() -> Iterator[None]:
    """A SIGTERM to the demo must still stop its children, so it becomes an exception."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(*, reports: int, keep: bool, out: TextIO) -> bool:
    """Run the demo, print what happened to ``out``; True when it is what should happen."""
    say = _Printer(out)
    if not 1 <= reports <= _MAX_REPORTS:
        say(f"--reports must be from 1 to {_MAX_REPORTS}, got {reports}")
        return False
    workdir = Path(tempfile.mkdtemp(prefix="dlrpush-demo-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLRPUSH_")}
    # The demo's callbacks are on loopback, which the service refuses unless allowed.
    env.update(DLRPUSH_CALLBACK_ALLOW="127.0.0.0/8", PYTHONUNBUFFERED="1")
    procs = _Processes(workdir, env)
    ok = False
    try:
        with _sigterm_runs_cleanup():
            ok = _Demo(say, procs, workdir / "demo.db", reports).run()
    except (_DemoError, OSError) as exc:
        say()
        say(f"The demo could not finish: {exc}")
        service_log = procs.items[0].log_tail(15) if procs.items else ""
        if service_log:
            say("Last lines the service wrote:")
            say(service_log)
    finally:
        procs.stop_all()
        if keep:
            say()
            say(f"Kept the demo's files in {workdir}")
            say(f"  database: {workdir / 'demo.db'}")
            say(f"  try: dlrpush stats --store sqlite:///{workdir / 'demo.db'}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return ok


@dataclass
class _Endpoint:
    callback: _Callback
    receiver: _Process
    id: int = 0
    url: str = ""


class _Demo:
    def __init__(self, say: _Printer, procs: _Processes, db: Path, reports: int) -> None:
        self.say = say
        self.procs = procs
        self.db = db
        self.n = reports
        self.http = _Http()
        self.api = ""
        self.endpoints: list[_Endpoint] = []
        self.problems: list[str] = []
        self.held_msgid = ""

    # -- the steps, in order ----------------------------------------------------------

    def run(self) -> bool:
        started = time.monotonic()
        self.say("dlrpush demo: the service pushes SMS status reports to four stand-in")
        self.say("customer callbacks, all real processes talking HTTP on 127.0.0.1.")
        self.say()
        self._start()
        self._set_up_customers()
        expected = self._send_traffic()
        took = self._wait_settled(expected)
        self.say()
        self.say(f"Waiting until no report is pending ... done after {took:.1f} s")
        self._summarise()
        self._replay()
        self.say()
        total = time.monotonic() - started
        if self.problems:
            self.say(f"RESULT: something did not go as it should ({total:.0f} s):")
            for problem in self.problems:
                self.say(f"  - {problem}")
            return False
        self.say(
            f"RESULT: OK ({total:.0f} s). Every shop and bank report was delivered, every "
            f"games report failed after exactly {_ATTEMPTS_BEFORE_FAILED} attempts, and the "
            "callbacks received every delivered report."
        )
        return True

    def _start(self) -> None:
        self.say("Starting processes (python -m dlrpush ...):")
        service = self.procs.start(
            "service",
            ["serve", "--host", "127.0.0.1", "--port", "0", "--store", f"sqlite:///{self.db}"],
        )
        for cb in _CALLBACKS:
            receiver = self.procs.start(
                f"{cb.account} {cb.protocol} receiver",
                [
                    "receiver",
                    "--protocol",
                    cb.protocol,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--quiet",
                    *cb.receiver_args,
                ],
            )
            self.endpoints.append(_Endpoint(cb, receiver))
        self.procs.wait_ready(time.monotonic() + _START_TIMEOUT_S)
        self.api = service.url
        self.say(f"  service                  {service.url}  (database {self.db.name})")
        for ep in self.endpoints:
            cb = ep.callback
            name = f"{cb.account} {cb.protocol} callback"
            self.say(f"  {name:24} {ep.receiver.url}  {cb.behaviour}")
        self.say()

    def _set_up_customers(self) -> None:
        self.say("Registering customers (POST /v1/accounts, POST /v1/accounts/{id}/endpoints):")
        for account, name in _ACCOUNTS.items():
            self._post("/v1/accounts", {"id": account, "name": name}, 201)
            urls: list[str] = []
            for ep in self.endpoints:
                cb = ep.callback
                if cb.account != account:
                    continue
                body: dict[str, object] = {
                    "url": f"{ep.receiver.url}/{account}/sms-report",
                    "protocol": cb.protocol,
                }
                if cb.protocol == "innopaas":
                    body["credentials"] = {"receiver": "receiver", "pswd": "pswd"}
                created = self._post(f"/v1/accounts/{account}/endpoints", body, 201)
                ep.id, ep.url = int(created["id"]), str(created["url"])
                urls.append(f"{cb.protocol} {ep.url}")
            self.say(f"  {account:6} {name}")
            for url in urls:
                self.say(f"         -> {url}")
        self.say()

    def _send_traffic(self) -> int:
        n = self.n
        self.say("Sending traffic:")
        messages: list[dict[str, object]] = []
        reports: list[dict[str, object]] = []
        for a, account in enumerate(_ACCOUNTS):
            for i in range(n):
                msg, report = _traffic(a, account, i)
                messages.append(msg)
                reports.append(report)
        # The first shop report arrives before its submission record, as happens when a
        # carrier is faster than the platform's own bookkeeping.
        early = reports.pop(0)
        self.held_msgid = str(messages[0]["msgid"])
        got = self._post("/v1/reports", [early], 202)
        self.say(
            f"  POST /v1/reports   1 report (msgid {self.held_msgid}) BEFORE its submission "
            f"record: {got['held']} held, waiting for the record"
        )
        if got["held"] != 1:
            self.problems.append(f"the early report was not held: {got}")
        got = self._post("/v1/messages", messages, 202)
        self.say(
            f"  POST /v1/messages  {len(messages)} submission records ({n} per customer): "
            f"{got['accepted']} accepted, {got['matched_reports']} held report matched"
        )
        if got["matched_reports"] != 1:
            self.problems.append(f"the held report was not matched by its record: {got}")
        texts = sum(1 for r in reports if "receipt" in r)
        got = self._post("/v1/reports", reports, 202)
        self.say(
            f"  POST /v1/reports   {len(reports)} status reports ({texts} as SMPP receipt "
            f"text, the rest structured): {got['accepted']} accepted, {got['held']} held"
        )
        return len(messages)

    def _wait_settled(self, expected: int) -> float:
        t0 = time.monotonic()
        deadline = t0 + _SETTLE_TIMEOUT_S
        while True:
            pending = self._get("/v1/reports?state=pending&limit=1")["items"]
            held = self._get("/v1/reports?state=held&limit=1")["items"]
            total = sum(self._get("/v1/stats")["reports"].values())
            if not pending and not held and total >= expected:
                return time.monotonic() - t0
            if time.monotonic() > deadline:
                raise _DemoError(
                    f"reports still pending after {_SETTLE_TIMEOUT_S:g} s "
                    f"({total} of {expected} reports stored)"
                )
            time.sleep(0.2)

    def _summarise(self) -> None:
        ucloud_sample: tuple[list[dict[str, Any]], int] | None = None
        innopaas_sample: dict[str, Any] | None = None
        for account in _ACCOUNTS:
            views = self._reports(account)
            states = Counter(str(r["state"]) for r in views)
            self.say()
            self.say(
                f"{account}: {len(views)} reports, {states['delivered']} delivered, "
                f"{states['failed']} failed"
            )
            statuses = Counter(str(r["status"]) for r in views)
            self.say("  statuses: " + ", ".join(f"{s} {c}" for s, c in statuses.most_common()))
            if len(views) != self.n:
                self.problems.append(f"{account}: {len(views)} reports stored, {self.n} sent")
            for ep in self.endpoints:
                if ep.callback.account == account:
                    self._summarise_endpoint(ep, views)
            if account == "shop":
                self._show_held(views)
                ucloud_sample = self._ucloud_sample(self._endpoint("shop", "ucloud"))
                innopaas_sample = self._innopaas_sample(self._endpoint("shop", "innopaas"))
            if account == "games":
                self._show_failed(views)
        if ucloud_sample is not None:
            data, of = ucloud_sample
            self.say()
            self.say(
                f"One ucloud push as the shop's callback received it "
                f"({len(data)} of the {_count(of, 'report')} it carried shown):"
            )
            self.say(
                _indent(json.dumps({"MsgType": 2, "Data": data}, ensure_ascii=False, indent=2))
            )
        if innopaas_sample is not None:
            self.say()
            self.say("One innopaas push as the shop's callback received it (one report a request):")
            self.say(_indent(json.dumps(innopaas_sample, ensure_ascii=False, indent=2)))

    def _summarise_endpoint(self, ep: _Endpoint, views: list[dict[str, Any]]) -> None:
        got = self.http.call("GET", f"{ep.receiver.url}/_received")
        items: list[dict[str, Any]] = got["items"]
        accepted_ids = {_msgid(i["report"]) for i in items if i["accepted"]}
        refused = sum(1 for i in items if not i["accepted"])
        tries = [
            int(d["tries"]) for r in views for d in r["deliveries"] if int(d["endpoint"]) == ep.id
        ]
        states = Counter(
            str(d["state"]) for r in views for d in r["deliveries"] if int(d["endpoint"]) == ep.id
        )
        cb = ep.callback
        self.say(f"  {cb.protocol} callback {ep.url}")
        self.say(
            f"    the callback received {_count(len(items), 'report')} in "
            f"{_count(int(got['requests']), 'request')}: accepted {len(accepted_ids)}, "
            f"refused {refused}"
        )
        spread = ", ".join(
            f"{_count(t, 'attempt')} for {_count(n, 'report')}"
            for t, n in sorted(Counter(tries).items())
        )
        self.say(
            f"    dlrpush made {_count(sum(tries), 'push attempt')} ({spread}): "
            f"{states['delivered']} delivered, {states['failed']} failed"
        )
        delivered = {
            str(r["msgid"])
            for r in views
            for d in r["deliveries"]
            if int(d["endpoint"]) == ep.id and d["state"] == "delivered"
        }
        if cb.account in _HEALTHY:
            if states["delivered"] != self.n:
                self.problems.append(
                    f"{cb.account} {cb.protocol}: {states['delivered']} of {self.n} delivered"
                )
            if not delivered <= accepted_ids:
                missing = sorted(delivered - accepted_ids)
                self.problems.append(
                    f"{cb.account} {cb.protocol}: delivered but never received: {missing[:5]}"
                )
        else:
            if states["failed"] != self.n or any(t != _ATTEMPTS_BEFORE_FAILED for t in tries):
                self.problems.append(
                    f"{cb.account}: expected {self.n} failed after {_ATTEMPTS_BEFORE_FAILED} "
                    f"attempts each; got {dict(states)} with attempts {sorted(set(tries))}"
                )
            if accepted_ids:
                self.problems.append(f"{cb.account}: a refusing callback accepted reports")

    def _show_held(self, views: list[dict[str, Any]]) -> None:
        view = next((r for r in views if r["msgid"] == self.held_msgid), None)
        state = "missing" if view is None else str(view["state"])
        self.say(
            f"  report {self.held_msgid} came before its submission record: held, then "
            f"matched when the record arrived; now {state}"
        )
        if state != "delivered":
            self.problems.append(f"the held report {self.held_msgid} is {state}, not delivered")

    def _show_failed(self, views: list[dict[str, Any]]) -> None:
        failed = [r for r in views if r["state"] == "failed"]
        if not failed:
            return
        report = failed[0]
        attempts: list[dict[str, Any]] = self._get(f"/v1/reports/{report['id']}/attempts")
        self.say(
            f"  report {report['msgid']} gave up after {len(attempts)} attempts "
            f"(GET /v1/reports/{report['id']}/attempts):"
        )
        first = int(attempts[0]["time_ms"]) if attempts else 0
        for n, a in enumerate(attempts, 1):
            status = "no answer" if a["http_status"] is None else f"HTTP {a['http_status']}"
            self.say(
                f"    attempt {n} at +{(int(a['time_ms']) - first) / 1000:.1f} s: "
                f"{a['outcome']:9} {status}  answer {a['snippet']}"
            )
        self.say("  failed reports are kept and can be pushed again (replay).")
        if len(attempts) != _ATTEMPTS_BEFORE_FAILED:
            self.problems.append(f"report {report['msgid']} shows {len(attempts)} attempts")

    def _replay(self) -> None:
        got = self._post("/v1/replay", {"account": "games"}, 202)
        self.say()
        self.say(
            f'Replay: POST /v1/replay {{"account": "games"}} -> {got["queued"]} failed reports '
            "queued for another push"
        )
        pending = self._reports("games", state="pending")
        self.say(
            f"  {_count(len(pending), 'games report')} pending again; a running service pushes "
            "them at once (this callback still refuses, so they will fail again)"
        )
        if got["queued"] != self.n:
            self.problems.append(f"replay queued {got['queued']} of the {self.n} failed reports")

    # -- helpers --------------------------------------------------------------------------

    def _endpoint(self, account: str, protocol: str) -> _Endpoint:
        return next(
            e
            for e in self.endpoints
            if e.callback.account == account and e.callback.protocol == protocol
        )

    def _ucloud_sample(self, ep: _Endpoint) -> tuple[list[dict[str, Any]], int] | None:
        items = self.http.call("GET", f"{ep.receiver.url}/_received")["items"]
        by_request: dict[int, list[dict[str, Any]]] = {}
        for item in items:
            by_request.setdefault(int(item["request"]), []).append(item["report"])
        if not by_request:
            return None
        # One delivered and one failed report show both spellings of the result: the
        # biggest request with a delivered one (pushed as they come, requests may be
        # small, and a small one may hold failures only).
        biggest = max(
            by_request.values(),
            key=lambda rs: (any(r.get("ReceiptCode") == "Delivrd" for r in rs), len(rs)),
        )
        shown = [r for r in biggest if r.get("ReceiptCode") == "Delivrd"][:1]
        shown += [r for r in biggest if r.get("ReceiptCode") != "Delivrd"][:1]
        return shown or biggest[:1], len(biggest)

    def _innopaas_sample(self, ep: _Endpoint) -> dict[str, Any] | None:
        items = [
            i["report"] for i in self.http.call("GET", f"{ep.receiver.url}/_received")["items"]
        ]
        # A report with its own uid and several segments shows the most fields filled in.
        rich = [
            r for r in items if str(r.get("uid")).startswith("order-") and r.get("smsNum") != "1"
        ]
        chosen = rich or items
        return dict(chosen[0]) if chosen else None

    def _reports(self, account: str, state: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        query = f"account={account}&limit=1000" + (f"&state={state}" if state else "")
        cursor = ""
        while True:
            page = self._get(f"/v1/reports?{query}{cursor}")
            items += page["items"]
            if page["next_cursor"] is None:
                return items
            cursor = f"&cursor={page['next_cursor']}"

    def _get(self, path: str) -> Any:
        return self.http.call("GET", self.api + path)

    def _post(self, path: str, body: object, expect: int) -> Any:
        return self.http.call("POST", self.api + path, body, expect)


def _traffic(a: int, account: str, i: int) -> tuple[dict[str, object], dict[str, object]]:
    """The submission record and status report of message ``i`` of customer ``a``."""
    now_ms = int(time.time() * 1000)
    msgid = str(_MSGID_BASE + a * 1_000_000 + i)
    stamp = datetime.fromtimestamp(now_ms / 1000, _RECEIPT_TZ).strftime("%y%m%d%H%M")
    message: dict[str, object] = {
        "msgid": msgid,
        "account": account,
        "phone": _PHONES[(i + a) % len(_PHONES)],
        "segments": 1 + (i % 3),
        "batch_seq": f"I{8393346 + a}_{stamp}_{i // 10}",
        "request_time_ms": now_ms - 3000 + i,
        "unit_price": "0.05670",
        "access_number": "106900001234",
    }
    if i % 2 == 0:
        message["uid"] = f"order-{a}{i:05d}"
    status = _STATUSES[(i + a) % len(_STATUSES)]
    report: dict[str, object]
    # Message 0 of the first customer is the held one; it always comes as receipt text.
    if i % 3 == 0:
        dlvrd = "001" if status == "DELIVRD" else "000"
        report = {
            "receipt": f"id:{msgid} sub:001 dlvrd:{dlvrd} submit date:{stamp} "
            f"done date:{stamp} stat:{status} err:{_ERRORS[status]} text:"
        }
    else:
        report = {"msgid": msgid, "status": status, "report_time_ms": now_ms - 1000 + i}
        if status != "DELIVRD":
            report["error_code"] = _ERRORS[status]
    return message, report


def _msgid(report: dict[str, Any]) -> str:
    return str(report.get("SessionNo") or report.get("msgid") or "")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
