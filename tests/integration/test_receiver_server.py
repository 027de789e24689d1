"""The bundled receiver on real loopback sockets answers pushes the way a customer would.

Every test starts the server on a free port, talks to it with an aiohttp client, and stops
it again; the last tests run the click command in a child process as a user would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from dlrpush.receiver import StatusReport
from dlrpush.receiver.server import ReceiverOptions, start_receiver
from dlrpush.testing import RecordingReceiver

UCLOUD_EXAMPLE = (
    '{"MsgType": 2, "Data": [{"SessionNo": "d0****f7-0fc3-****-****-9f73****6c6e", '
    '"Phone": "185****9057", "CostCount": 2, "ReceiptTime": 1563867000, '
    '"ReceiptResult": "发送成功", "ReceiptCode": "Delivrd", "ReceiptDesc": "用户接收成功", '
    '"UserId": "you man c define the content by yrself"}, '
    '{"SessionNo": "d1****f7-0fc3-****-****-9f73****6c6e", "Phone": "185****9057", '
    '"CostCount": 2, "ReceiptTime": 1563867000, "ReceiptResult": "发送失败", '
    '"ReceiptCode": "MSBLACK", "ReceiptDesc": "手机在运营商防骚扰黑名单", '
    '"UserId": "you man c define the content by yrself"}]}'
).encode()
INNOPAAS_EXAMPLE = (
    '{"batchSeq": "I8393346_2506101652_35", "unitPrice": "0.05670", "countryNumber": "0086", '
    '"mnc": "2", "receiver": "account", "pswd": "password", "mnoName": "中国移动", '
    '"notifyTime": "1749545540975", "fee": "0.0567", "mobile": "8618888888888", '
    '"msgid": "627239445736452096", "mcc": "460", "requestTime": "1749545538198", '
    '"uid": "I8393346_2506101652_35", "regionCode": "CN", "accessNumber": "508tongdao", '
    '"currency": "CNY", "status": "DELIVRD", "reportTime": "1749545540967", "smsNum": "1"}'
).encode()
# The provider's own (non-strict) example answer.
LOOSE_REPLY = b'{\n    code: 0,\n    message: "ok"\n}'

SRC_DIR = Path(__file__).resolve().parents[2] / "src"
COMMAND = "from dlrpush.receiver.command import receiver_command; receiver_command()"


@asynccontextmanager
async def receiver(
    protocol: str, **options: Any
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """A started receiver's base URL and a client session; both closed on exit."""
    runner, port = await start_receiver(
        ReceiverOptions(protocol=protocol, port=0, quiet=options.pop("quiet", True), **options)
    )
    try:
        async with aiohttp.ClientSession() as session:
            yield f"http://127.0.0.1:{port}", session
    finally:
        await runner.cleanup()


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, bytes]:
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        return r.status, await r.read()


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as r:
        assert r.status == 200
        return orjson.loads(await r.read())


# --- accepting ----------------------------------------------------------------------------


async def test_ucloud_batch_is_accepted_and_recorded_report_by_report() -> None:
    async with receiver("ucloud") as (base, session):
        status, body = await post(session, f"{base}/dlr/ucloud", UCLOUD_EXAMPLE)
        seen = await get_json(session, f"{base}/_received")

    assert status == 200
    assert orjson.loads(body) == {"code": 0, "message": "ok"}
    assert {k: seen[k] for k in ("requests", "reports", "accepted", "rejected")} == {
        "requests": 1,
        "reports": 2,
        "accepted": 2,
        "rejected": 0,
    }
    assert [item["report"] for item in seen["items"]] == orjson.loads(UCLOUD_EXAMPLE)["Data"]
    assert [(item["request"], item["accepted"]) for item in seen["items"]] == [(1, True)] * 2
    assert abs(seen["items"][0]["t_ms"] - time.time() * 1000) < 60_000


async def test_innopaas_report_is_accepted_on_any_post_path() -> None:
    async with receiver("innopaas") as (base, session):
        first = await post(session, f"{base}/", INNOPAAS_EXAMPLE)
        second = await post(session, f"{base}/callbacks/sms?token=abc", INNOPAAS_EXAMPLE)
        seen = await get_json(session, f"{base}/_received")

    assert first == second == (200, b'{"code":0,"message":"ok"}')
    assert seen["reports"] == seen["accepted"] == 2
    assert seen["items"][1]["report"] == orjson.loads(INNOPAAS_EXAMPLE)
    assert seen["items"][1]["request"] == 2


async def test_loose_reply_is_the_providers_example_byte_for_byte() -> None:
    async with receiver("ucloud", loose_reply=True) as (base, session):
        status, body = await post(session, f"{base}/", UCLOUD_EXAMPLE)

    assert status == 200
    assert body == LOOSE_REPLY
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)  # it really is not strict JSON


# --- failing on purpose -------------------------------------------------------------------


async def test_fail_first_fails_exactly_the_first_three_requests() -> None:
    async with receiver("innopaas", fail_first=3, fail_status=503) as (base, session):
        answers = [(await post(session, f"{base}/", INNOPAAS_EXAMPLE))[0] for _ in range(5)]
        seen = await get_json(session, f"{base}/_received")

    assert answers == [503, 503, 503, 200, 200]
    assert (seen["accepted"], seen["rejected"]) == (2, 3)
    assert [item["accepted"] for item in seen["items"]] == [False, False, False, True, True]


async def test_fail_with_code_answers_200_with_the_reject_code() -> None:
    async with receiver("ucloud", fail_first=1, fail_with="code") as (base, session):
        first = await post(session, f"{base}/", UCLOUD_EXAMPLE)
        second = await post(session, f"{base}/", UCLOUD_EXAMPLE)
        seen = await get_json(session, f"{base}/_stats")

    assert first[0] == 200
    assert orjson.loads(first[1]) == {"code": 1, "message": "rejected"}
    assert second == (200, b'{"code":0,"message":"ok"}')
    assert seen == {"requests": 2, "reports": 4, "accepted": 2, "rejected": 2, "bad": 0}


async def test_code_option_rejects_every_push() -> None:
    async with receiver("ucloud", code=7) as (base, session):
        answers = [await post(session, f"{base}/", UCLOUD_EXAMPLE) for _ in range(3)]
        seen = await get_json(session, f"{base}/_stats")

    assert [(s, orjson.loads(b)["code"]) for s, b in answers] == [(200, 7)] * 3
    assert (seen["accepted"], seen["rejected"]) == (0, 6)


async def test_seeded_fail_rate_fails_a_share_and_repeats_with_the_same_seed() -> None:
    async def statuses() -> list[int]:
        async with receiver("innopaas", fail_rate=0.5, seed=42) as (base, session):
            return [(await post(session, f"{base}/", INNOPAAS_EXAMPLE))[0] for _ in range(40)]

    first, second = await statuses(), await statuses()

    assert first == second
    assert set(first) == {200, 500}
    assert 8 <= first.count(500) <= 32


async def test_delay_ms_delays_the_answer() -> None:
    async with receiver("innopaas", delay_ms=300) as (base, session):
        started = time.perf_counter()
        status, _ = await post(session, f"{base}/", INNOPAAS_EXAMPLE)
        elapsed = time.perf_counter() - started

    assert status == 200
    assert elapsed >= 0.29


async def test_reset_drops_the_connection_then_the_server_keeps_serving() -> None:
    async with receiver("ucloud", fail_first=1, fail_with="reset") as (base, session):
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(session, f"{base}/", UCLOUD_EXAMPLE)
        after = await post(session, f"{base}/", UCLOUD_EXAMPLE)
        seen = await get_json(session, f"{base}/_stats")

    assert after == (200, b'{"code":0,"message":"ok"}')
    assert (seen["requests"], seen["accepted"], seen["rejected"]) == (2, 2, 2)


async def test_hang_never_answers_until_the_client_gives_up() -> None:
    async with receiver("innopaas", fail_first=1, fail_with="hang") as (base, session):
        started = time.perf_counter()
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(
                f"{base}/", data=INNOPAAS_EXAMPLE, timeout=aiohttp.ClientTimeout(total=0.5)
            ) as r:
                await r.read()
        waited = time.perf_counter() - started
        after = await post(session, f"{base}/", INNOPAAS_EXAMPLE)

    assert waited >= 0.45
    assert after[0] == 200


async def test_stopping_does_not_wait_for_a_hung_request() -> None:
    runner, port = await start_receiver(
        ReceiverOptions(protocol="innopaas", port=0, fail_with="hang", fail_rate=1.0, quiet=True)
    )
    stopped = False
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/"
            pending = asyncio.create_task(post(session, url, INNOPAAS_EXAMPLE))
            await asyncio.sleep(0.2)
            assert not pending.done()
            started = time.perf_counter()
            await runner.cleanup()
            stopped = True
            stop_took = time.perf_counter() - started
            with pytest.raises(aiohttp.ClientConnectionError):
                await asyncio.wait_for(pending, 5)
    finally:
        if not stopped:
            await runner.cleanup()

    assert stop_took < 1.0


# --- bad input and inspection -------------------------------------------------------------


async def test_bad_body_gets_400_naming_the_field_and_the_server_keeps_serving() -> None:
    wrong = UCLOUD_EXAMPLE.replace(b'"CostCount": 2', b'"CostCount": "2"', 1)
    async with receiver("ucloud") as (base, session):
        bad = await post(session, f"{base}/", wrong)
        garbage = await post(session, f"{base}/", b"\x00\xff not json")
        good = await post(session, f"{base}/", UCLOUD_EXAMPLE)
        seen = await get_json(session, f"{base}/_stats")

    assert bad[0] == 400
    assert "Data[0].CostCount" in orjson.loads(bad[1])["message"]
    assert garbage[0] == 400
    assert good[0] == 200
    assert seen == {"requests": 3, "reports": 2, "accepted": 2, "rejected": 0, "bad": 2}


async def test_innopaas_receiver_refuses_a_ucloud_body() -> None:
    async with receiver("innopaas") as (base, session):
        status, body = await post(session, f"{base}/", UCLOUD_EXAMPLE)

    assert status == 400
    assert orjson.loads(body)["message"].startswith("MsgType: expected a string")


async def test_delete_received_starts_afresh_and_rearms_fail_first() -> None:
    async with receiver("innopaas", fail_first=1) as (base, session):
        before = [(await post(session, f"{base}/", INNOPAAS_EXAMPLE))[0] for _ in range(2)]
        async with session.delete(f"{base}/_received") as r:
            cleared = orjson.loads(await r.read())
        emptied = await get_json(session, f"{base}/_received")
        after = [(await post(session, f"{base}/", INNOPAAS_EXAMPLE))[0] for _ in range(2)]

    assert before == after == [500, 200]
    assert cleared == {"requests": 0, "reports": 0, "accepted": 0, "rejected": 0, "bad": 0}
    assert emptied["items"] == []


async def test_without_keep_only_counts_are_kept() -> None:
    async with receiver("ucloud", keep=False) as (base, session):
        await post(session, f"{base}/", UCLOUD_EXAMPLE)
        seen = await get_json(session, f"{base}/_received")

    assert seen == {"requests": 1, "reports": 2, "accepted": 2, "rejected": 0, "bad": 0}


async def test_log_file_gets_one_json_line_per_report(tmp_path: Path) -> None:
    log = tmp_path / "received.jsonl"
    async with receiver("ucloud", fail_first=1, log_path=str(log)) as (base, session):
        await post(session, f"{base}/", UCLOUD_EXAMPLE)
        await post(session, f"{base}/", UCLOUD_EXAMPLE)

    lines = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    data = orjson.loads(UCLOUD_EXAMPLE)["Data"]
    assert [(x["request"], x["accepted"], x["answer"]) for x in lines] == [
        (1, False, "HTTP 500"),
        (1, False, "HTTP 500"),
        (2, True, "accepted"),
        (2, True, "accepted"),
    ]
    assert [x["report"] for x in lines] == data * 2
    assert all(isinstance(x["t_ms"], int) for x in lines)


async def test_prints_one_line_per_report_unless_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    async with receiver("ucloud", quiet=False) as (base, session):
        await post(session, f"{base}/", UCLOUD_EXAMPLE)
    async with receiver("ucloud", quiet=True) as (base, session):
        await post(session, f"{base}/", UCLOUD_EXAMPLE)

    assert capsys.readouterr().out.splitlines() == [
        "ucloud  msgid=d0****f7-0fc3-****-****-9f73****6c6e phone=185****9057 DELIVRD"
        " 用户接收成功 -> accepted",
        "ucloud  msgid=d1****f7-0fc3-****-****-9f73****6c6e phone=185****9057 MSBLACK"
        " 手机在运营商防骚扰黑名单 -> accepted",
    ]


# --- RecordingReceiver --------------------------------------------------------------------


async def test_recording_receiver_keeps_accepted_reports_as_typed_values() -> None:
    async with RecordingReceiver("innopaas", fail_first=2) as r, aiohttp.ClientSession() as s:
        statuses = [(await post(s, r.url, INNOPAAS_EXAMPLE))[0] for _ in range(3)]
        got = await r.wait_for(1, timeout_s=2)

    assert statuses == [500, 500, 200]
    assert r.requests == 3
    assert [x.msgid for x in got] == ["627239445736452096"]
    assert r.reports == got
    assert isinstance(r.reports[0], StatusReport)
    assert [x.accepted for x in r.received] == [False, False, True]


async def test_recording_receiver_wait_for_wakes_on_a_later_push() -> None:
    async with RecordingReceiver("ucloud") as r, aiohttp.ClientSession() as s:
        waiting = asyncio.create_task(r.wait_for(2, timeout_s=5))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await post(s, r.url, UCLOUD_EXAMPLE)
        got = await asyncio.wait_for(waiting, 2)

    assert [x.status for x in got] == ["DELIVRD", "MSBLACK"]


async def test_recording_receiver_wait_for_times_out_saying_what_arrived() -> None:
    async with RecordingReceiver("ucloud", code=3) as r, aiohttp.ClientSession() as s:
        await post(s, r.url, UCLOUD_EXAMPLE)
        with pytest.raises(TimeoutError, match="0 of 1 reports accepted"):
            await r.wait_for(1, timeout_s=0.2)

    assert r.reports == []
    assert r.stats["rejected"] == 2


async def test_recording_receiver_cannot_be_read_before_it_starts() -> None:
    r = RecordingReceiver("ucloud")

    with pytest.raises(RuntimeError, match="async with"):
        _ = r.url


# --- the command in a child process -------------------------------------------------------


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def test_command_prints_the_bound_port_serves_and_stops_on_sigterm() -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        COMMAND,
        "--protocol",
        "innopaas",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_child_env(),
    )
    try:
        assert child.stdout is not None
        ready = (await asyncio.wait_for(child.stdout.readline(), 20)).decode().rstrip("\n")
        prefix = "dlrpush receiver (innopaas) listening on http://127.0.0.1:"
        assert ready.startswith(prefix), ready
        port = int(ready.removeprefix(prefix))
        assert 0 < port <= 65535

        async with aiohttp.ClientSession() as session:
            answer = await post(session, f"http://127.0.0.1:{port}/dlr", INNOPAAS_EXAMPLE)
            seen = await get_json(session, f"http://127.0.0.1:{port}/_stats")

        child.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(child.communicate(), 10)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()

    assert answer == (200, b'{"code":0,"message":"ok"}')
    assert seen["accepted"] == 1
    assert child.returncode == 0, err.decode()
    assert out.decode().splitlines() == [
        "innopaas msgid=627239445736452096 phone=8618888888888 DELIVRD -> accepted"
    ]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--protocol", "innopaas", "--fail-rate", "1.5"], "--fail-rate"),
        (["--protocol", "innopaas", "--port", "70000"], "--port"),
        (["--protocol", "smpp"], "--protocol"),
        (["--protocol", "ucloud", "--fail-with", "explode"], "--fail-with"),
        (["--protocol", "ucloud", "--reject-code", "0"], "--reject-code"),
        (["--port", "0"], "--protocol"),
    ],
)
async def test_command_refuses_bad_options_naming_them(args: list[str], names: str) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        COMMAND,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_child_env(),
    )
    out, err = await asyncio.wait_for(child.communicate(), 20)

    assert child.returncode == 2
    assert names in err.decode()
    assert out == b""
