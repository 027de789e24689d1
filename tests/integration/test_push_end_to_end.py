"""The service and receivers as real processes over loopback, on a real SQLite file."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import Api, Proc, received


def _service(
    spawn: Callable[..., Proc], tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> Proc:
    store = f"sqlite:///{tmp_path}/e2e.db"
    return spawn("serve", "--port", "0", "--store", store, *extra, env=env)


def _customer(api: Api, account: str, receiver: Proc, protocol: str, **settings: Any) -> int:
    api.post("/v1/accounts", {"id": account, "name": account}, 201)
    ep = api.post(
        f"/v1/accounts/{account}/endpoints",
        {"url": receiver.url + "/dlr", "protocol": protocol, **settings},
        201,
    )
    return int(ep["id"])


def _traffic(api: Api, account: str, n: int, prefix: str = "m", **msg: Any) -> None:
    api.post(
        "/v1/messages",
        [
            {
                "msgid": f"{prefix}{i}",
                "account": account,
                "phone": f"86139{i:08d}",
                "segments": 1 + i % 3,
                **msg,
            }
            for i in range(n)
        ],
        202,
    )
    api.post(
        "/v1/reports",
        [
            {
                "msgid": f"{prefix}{i}",
                "status": "DELIVRD" if i % 4 else "UNDELIV",
                "report_time_ms": 1_763_700_000_000 + i,
            }
            for i in range(n)
        ],
        202,
    )


def test_ucloud_batches_arrive_once_each_in_the_wire_format(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    svc = _service(spawn, tmp_path)
    rcv = spawn("receiver", "--protocol", "ucloud", "--port", "0", "--quiet")
    api = api_factory(svc.url)
    _customer(api, "shop", rcv, "ucloud", batch_max=50)
    _traffic(api, "shop", 230, uid="order-1")
    reports = api.wait_settled(230)
    assert {r["state"] for r in reports} == {"delivered"}
    got = received(rcv)
    arrived = [item["report"] for item in got["items"]]
    assert sorted(r["SessionNo"] for r in arrived) == sorted(f"m{i}" for i in range(230))
    assert got["requests"] < 230  # batched, not one POST per report
    sample = next(r for r in arrived if r["SessionNo"] == "m5")
    assert sample == {
        "SessionNo": "m5",
        "Phone": "8613900000005",
        "CostCount": 3,
        "ReceiptTime": 1_763_700_000,
        "ReceiptResult": "发送成功",
        "ReceiptCode": "Delivrd",
        "ReceiptDesc": "用户接收成功",
        "UserId": "order-1",
    }
    failed_one = next(r for r in arrived if r["SessionNo"] == "m4")
    assert failed_one["ReceiptResult"] == "发送失败" and failed_one["ReceiptCode"] == "UNDELIV"


def test_innopaas_one_post_per_report_all_strings(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    svc = _service(spawn, tmp_path)
    rcv = spawn("receiver", "--protocol", "innopaas", "--port", "0", "--quiet")
    api = api_factory(svc.url)
    _customer(api, "bank", rcv, "innopaas", credentials={"receiver": "account", "pswd": "password"})
    before = int(time.time() * 1000)
    _traffic(api, "bank", 20, unit_price="0.05670", batch_seq="B7", access_number="508tongdao")
    api.wait_settled(20)
    got = received(rcv)
    assert got["requests"] == 20
    by_msgid = {item["report"]["msgid"]: item["report"] for item in got["items"]}
    assert set(by_msgid) == {f"m{i}" for i in range(20)}
    body = by_msgid["m2"]
    assert all(isinstance(v, str) for v in body.values()) and len(body) == 20
    assert body["receiver"] == "account" and body["pswd"] == "password"
    assert body["uid"] == "B7" and body["batchSeq"] == "B7"  # uid defaults to batchSeq
    assert body["smsNum"] == "3" and body["fee"] == "0.1701" and body["unitPrice"] == "0.05670"
    assert body["countryNumber"] == "0086" and body["regionCode"] == "CN"
    assert body["mnoName"] == "中国移动" and body["mobile"] == "8613900000002"
    assert int(body["notifyTime"]) >= before


def test_receiver_failing_three_times_gets_four_attempts_one_second_apart(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    svc = _service(spawn, tmp_path)
    rcv = spawn("receiver", "--protocol", "ucloud", "--port", "0", "--quiet", "--fail-first", "3")
    api = api_factory(svc.url)
    _customer(api, "flaky", rcv, "ucloud")
    _traffic(api, "flaky", 1)
    (report,) = api.wait_settled(1, timeout=30)
    assert report["state"] == "delivered" and report["attempts"] == 4
    attempts = api.get(f"/v1/reports/{report['id']}/attempts")
    assert [a["outcome"] for a in attempts] == ["http_error"] * 3 + ["delivered"]
    assert [a["http_status"] for a in attempts] == [500, 500, 500, 200]
    gaps = [b["time_ms"] - a["time_ms"] for a, b in itertools.pairwise(attempts)]
    assert all(900 <= g <= 1600 for g in gaps), gaps
    assert received(rcv)["requests"] == 4


def test_always_failing_customer_ends_failed_and_is_delivered_after_replay(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    svc = _service(spawn, tmp_path)
    bad = spawn("receiver", "--protocol", "ucloud", "--port", "0", "--quiet", "--code", "1")
    api = api_factory(svc.url)
    _customer(api, "dead", bad, "ucloud")
    _traffic(api, "dead", 3)
    reports = api.wait_settled(3, timeout=30)
    assert [r["state"] for r in reports] == ["failed"] * 3
    assert [r["attempts"] for r in reports] == [4, 4, 4]
    attempts = api.get(f"/v1/reports/{reports[0]['id']}/attempts")
    assert {a["outcome"] for a in attempts} == {"rejected"}
    assert '"code":1' in attempts[0]["snippet"].replace(" ", "")
    # Failed reports are kept and listed.
    assert len(api.reports(state="failed")) == 3
    # The operator hears of it without one log line per report.
    assert svc.output().count("failed since the last such line") == 1
    # The customer fixes its receiver (same address), the operator replays.
    port = bad.port
    bad.stop()
    good = spawn("receiver", "--protocol", "ucloud", "--port", str(port), "--quiet")
    assert api.post("/v1/replay", {"account": "dead"}, 202) == {"queued": 3}
    reports = api.wait_settled(3, timeout=30)
    assert [r["state"] for r in reports] == ["delivered"] * 3
    assert [r["attempts"] for r in reports] == [5, 5, 5]
    assert received(good)["reports"] == 3


def test_report_before_its_submission_is_held_then_pushed(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    svc = _service(spawn, tmp_path)
    rcv = spawn("receiver", "--protocol", "ucloud", "--port", "0", "--quiet")
    api = api_factory(svc.url)
    _customer(api, "shop", rcv, "ucloud")
    receipt = (
        "id:early1 sub:001 dlvrd:001 submit date:2511211530 done date:2511211531"
        " stat:MK:0001 err:0001 text:"
    )
    assert api.post("/v1/reports", [{"receipt": receipt}], 202)["held"] == 1
    (held,) = api.reports()
    assert held["state"] == "held" and held["status"] == "MK:0001"
    time.sleep(0.5)
    assert received(rcv)["reports"] == 0
    api.post("/v1/messages", [{"msgid": "early1", "account": "shop", "phone": "13912345678"}], 202)
    (report,) = api.wait_settled(1)
    assert report["state"] == "delivered" and report["error_code"] == "0001"
    (pushed,) = [i["report"] for i in received(rcv)["items"]]
    assert pushed["ReceiptCode"] == "MK:0001" and pushed["ReceiptResult"] == "发送失败"
    # done date 2025-11-21 15:31 Asia/Shanghai is the report time.
    assert pushed["ReceiptTime"] == 1_763_710_260


def test_slow_customer_does_not_hold_up_the_others(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    svc = _service(spawn, tmp_path)
    hang = spawn(
        "receiver",
        "--protocol",
        "innopaas",
        "--port",
        "0",
        "--quiet",
        "--fail-rate",
        "1",
        "--fail-with",
        "hang",
    )
    fast = spawn("receiver", "--protocol", "innopaas", "--port", "0", "--quiet")
    api = api_factory(svc.url)
    _customer(api, "slow", hang, "innopaas", timeout_s=3, max_in_flight=4)
    _customer(api, "quick", fast, "innopaas")
    _traffic(api, "slow", 200, prefix="s")
    started = time.monotonic()
    _traffic(api, "quick", 200, prefix="q")
    api.wait_settled(200, timeout=20, account="quick")
    elapsed = time.monotonic() - started
    assert received(fast)["reports"] == 200
    # 200 reports at 4 in flight against a 3 s hang would take minutes if they shared slots.
    assert elapsed < 10, elapsed
    assert all(r["state"] == "pending" for r in api.reports(account="slow"))


@pytest.mark.slow
def test_kill_9_mid_run_loses_nothing(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    svc = _service(spawn, tmp_path)
    rcv = spawn("receiver", "--protocol", "innopaas", "--port", "0", "--quiet", "--delay-ms", "5")
    api = api_factory(svc.url)
    _customer(api, "acme", rcv, "innopaas", max_in_flight=16)
    n = 3000
    _traffic(api, "acme", n)
    deadline = time.monotonic() + 30
    while received(rcv)["reports"] < n // 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    svc.kill9()
    mid = received(rcv)["reports"]
    assert mid < n, "the run finished before the kill; make it longer"
    svc2 = _service(spawn, tmp_path)
    api2 = api_factory(svc2.url)
    reports = api2.wait_settled(n, timeout=120)
    assert {r["state"] for r in reports} == {"delivered"}
    got = {item["report"]["msgid"] for item in received(rcv)["items"]}
    assert got == {f"m{i}" for i in range(n)}  # lost: none


def test_unmatched_after_the_window_still_pushed_when_its_record_lands(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    svc = spawn(
        "serve",
        "--port",
        "0",
        "--store",
        f"sqlite:///{tmp_path}/w.db",
        env={"DLRPUSH_HOLD_WINDOW_S": "0.5", "DLRPUSH_POLL_INTERVAL_S": "0.2"},
    )
    rcv = spawn("receiver", "--protocol", "ucloud", "--port", "0", "--quiet")
    api = api_factory(svc.url)
    _customer(api, "shop", rcv, "ucloud")
    api.post("/v1/reports", [{"msgid": "late", "status": "EXPIRED"}], 202)
    deadline = time.monotonic() + 10
    while api.reports()[0]["state"] != "unmatched" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert api.reports(state="unmatched")[0]["msgid"] == "late"
    api.post("/v1/messages", [{"msgid": "late", "account": "shop", "phone": "13912345678"}], 202)
    (report,) = api.wait_settled(1)
    assert report["state"] == "delivered"
    assert [i["report"]["ReceiptCode"] for i in received(rcv)["items"]] == ["EXPIRED"]


def test_the_providers_loose_reply_counts_as_success(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    svc = _service(spawn, tmp_path)
    rcv = spawn("receiver", "--protocol", "ucloud", "--port", "0", "--quiet", "--loose-reply")
    api = api_factory(svc.url)
    _customer(api, "shop", rcv, "ucloud")
    _traffic(api, "shop", 2)
    reports = api.wait_settled(2)
    assert [r["state"] for r in reports] == ["delivered", "delivered"]
    (attempt,) = api.get(f"/v1/reports/{reports[0]['id']}/attempts")
    assert attempt["snippet"].startswith("{\n    code: 0")


def test_graceful_stop_records_in_flight_pushes(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    svc = _service(spawn, tmp_path)
    rcv = spawn("receiver", "--protocol", "innopaas", "--port", "0", "--quiet", "--delay-ms", "800")
    api = api_factory(svc.url)
    _customer(api, "shop", rcv, "innopaas", max_in_flight=4)
    _traffic(api, "shop", 4)
    deadline = time.monotonic() + 10
    while received(rcv)["requests"] < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert svc.stop() == 0  # SIGTERM while 4 pushes wait on the slow receiver
    svc2 = _service(spawn, tmp_path)
    reports = api_factory(svc2.url).wait_settled(4)
    # Acknowledged before the stop and recorded: not pushed a second time.
    assert [r["attempts"] for r in reports] == [1, 1, 1, 1]
    assert received(rcv)["reports"] == 4


def test_retries_of_reports_due_at_different_times_each_keep_one_second_gaps(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    svc = _service(spawn, tmp_path)
    bad = spawn("receiver", "--protocol", "innopaas", "--port", "0", "--quiet", "--fail-rate", "1")
    api = api_factory(svc.url)
    _customer(api, "shop", bad, "innopaas")
    api.post(
        "/v1/messages",
        [{"msgid": m, "account": "shop", "phone": "13912345678"} for m in ("a", "b")],
        202,
    )
    api.post("/v1/reports", [{"msgid": "a", "status": "DELIVRD"}], 202)
    time.sleep(0.4)
    api.post("/v1/reports", [{"msgid": "b", "status": "DELIVRD"}], 202)
    for report in api.wait_settled(2, timeout=30):
        times = [a["time_ms"] for a in api.get(f"/v1/reports/{report['id']}/attempts")]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(times) == 4 and all(900 <= g <= 1400 for g in gaps), (report["msgid"], gaps)


def test_destination_is_checked_again_at_connect_time(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    """An endpoint allowed when created is blocked once the address is no longer allowed,
    for a name (checked on its resolved address) as for a literal address."""
    svc = _service(spawn, tmp_path)
    rcv = spawn("receiver", "--protocol", "ucloud", "--port", "0", "--quiet")
    api = api_factory(svc.url)
    api.post("/v1/accounts", {"id": "shop"}, 201)
    for host in ("localhost", "127.0.0.1"):
        api.post(
            "/v1/accounts/shop/endpoints",
            {"url": f"http://{host}:{rcv.port}/cb", "protocol": "ucloud", "retry_schedule_s": []},
            201,
        )
    svc.stop()
    strict = spawn(
        "serve",
        "--port",
        "0",
        "--store",
        f"sqlite:///{tmp_path}/e2e.db",
        env={"DLRPUSH_CALLBACK_ALLOW": ""},
    )
    api = api_factory(strict.url)
    _traffic(api, "shop", 1)
    (report,) = api.wait_settled(1)
    assert report["state"] == "failed"
    attempts = api.get(f"/v1/reports/{report['id']}/attempts")
    assert [a["outcome"] for a in attempts] == ["blocked", "blocked"]
    assert received(rcv)["requests"] == 0


def test_work_queued_behind_hanging_pushes_arrives_once_with_a_tight_lease(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    # End to end, with deliveries claimed a round ahead waiting behind pushes that hang
    # until the timeout and almost no lease margin: every report is accepted once and
    # every attempt counted. (The queue's lease and hand-back rules themselves are
    # pinned in tests/unit/test_dispatcher_queue.py.)
    svc = _service(spawn, tmp_path, env={"DLRPUSH_LEASE_MARGIN_S": "0.1"})
    rcv = spawn(
        "receiver", "--protocol", "innopaas", "--port", "0", "--quiet",
        "--fail-first", "3", "--fail-with", "hang", "--delay-ms", "20",
    )  # fmt: skip
    api = api_factory(svc.url)
    _customer(api, "slow", rcv, "innopaas", max_in_flight=2, timeout_s=0.5)
    # Enough work that the runner keeps claiming while the hung pushes are out.
    _traffic(api, "slow", 60)

    reports = api.wait_settled(60, timeout=60)

    assert {r["state"] for r in reports} == {"delivered"}
    got = [item["report"]["msgid"] for item in received(rcv)["items"] if item["accepted"]]
    assert sorted(got) == sorted(f"m{i}" for i in range(60))  # each accepted exactly once
    assert sum(r["attempts"] for r in reports) == 60 + 3  # plus the three that hung


def test_reports_for_an_idle_customer_are_pushed_straight_from_ingest(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    """A customer with nothing left to claim gets each new report leased by the ingest
    itself and pushed without a claim; every report still arrives exactly once."""
    svc = _service(spawn, tmp_path)
    rcv = spawn("receiver", "--protocol", "innopaas", "--port", "0", "--quiet")
    api = api_factory(svc.url)
    ep_id = _customer(api, "bank", rcv, "innopaas")
    api.post(
        "/v1/messages",
        [{"msgid": f"t{i}", "account": "bank", "phone": "8613900000000"} for i in range(20)],
        202,
    )
    # The endpoint's runner exists and has looked once (found nothing) before reports come.
    deadline = time.monotonic() + 10
    while str(ep_id) not in api.get("/v1/stats")["dispatcher"]["endpoints"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    for i in range(20):
        api.post("/v1/reports", [{"msgid": f"t{i}", "status": "DELIVRD"}], 202)
        time.sleep(0.02)
    api.wait_settled(20)
    got = received(rcv)
    assert sorted(item["report"]["msgid"] for item in got["items"]) == sorted(
        f"t{i}" for i in range(20)
    )
    dispatcher = api.get("/v1/stats")["dispatcher"]
    assert dispatcher["from_ingest"] == 20 and dispatcher["claimed"] == 0


def test_endpoint_changes_made_by_another_process_reach_the_dispatcher(
    spawn: Callable[..., Proc], api_factory: Callable[[str], Api], tmp_path: Path
) -> None:
    """The dispatcher re-reads endpoints only when the store says they changed; an
    endpoint created, and then moved to another URL, through an API-only process on
    the same file still gets its reports, at its current URL."""
    _service(spawn, tmp_path)  # the dispatcher
    api_only = _service(spawn, tmp_path, "--no-dispatch")
    first = spawn("receiver", "--protocol", "ucloud", "--port", "0", "--quiet")
    second = spawn("receiver", "--protocol", "ucloud", "--port", "0", "--quiet")
    api = api_factory(api_only.url)
    ep_id = _customer(api, "shop", first, "ucloud")
    _traffic(api, "shop", 5, prefix="a")
    api.wait_settled(5)
    resp = api.client.patch(f"/v1/endpoints/{ep_id}", json={"url": second.url + "/dlr"})
    assert resp.status_code == 200, resp.text
    _traffic(api, "shop", 5, prefix="b")
    api.wait_settled(10)

    def arrived(receiver: Proc) -> list[str]:
        return sorted(item["report"]["SessionNo"] for item in received(receiver)["items"])

    assert arrived(first) == [f"a{i}" for i in range(5)]
    assert arrived(second) == [f"b{i}" for i in range(5)]
