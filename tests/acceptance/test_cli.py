"""The ``dlrpush`` command line as a user meets it: help, plain errors, a real serve.

Every test runs ``python -m dlrpush ...`` as a child process on loopback; a mistake of
the user's must end in one plain line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import Proc

COMMANDS = ("serve", "worker", "receiver", "demo", "replay", "migrate", "stats")


def dlrpush(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlrpush", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        encoding="utf-8",
        env=env,
        timeout=60,
        check=False,
    )


def assert_plain_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Non-zero exit, no traceback, and a last line that names ``words``."""
    assert result.returncode != 0, result.stdout
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no message on stderr"
    for word in words:
        assert word in lines[-1], lines


def http(method: str, url: str, body: object = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_top_level_help_lists_every_command(test_env: dict[str, str]) -> None:
    result = dlrpush(test_env, "--help")

    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize(
    ("command", "option"),
    [
        ("serve", "--store"),
        ("worker", "--store"),
        ("receiver", "--fail-first"),
        ("demo", "--reports"),
        ("replay", "--endpoint"),
        ("migrate", "--store"),
        ("stats", "--store"),
    ],
)
def test_each_command_explains_itself(test_env: dict[str, str], command: str, option: str) -> None:
    result = dlrpush(test_env, command, "--help")

    assert result.returncode == 0, result.stderr
    assert f"Usage: python -m dlrpush {command}" in result.stdout
    assert option in result.stdout


def test_serve_with_an_unknown_store_says_so_in_one_line(test_env: dict[str, str]) -> None:
    result = dlrpush(test_env, "serve", "--port", "0", "--store", "mysql://x")

    assert_plain_error(result, "mysql")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_serve_refuses_a_port_that_does_not_exist(test_env: dict[str, str]) -> None:
    result = dlrpush(test_env, "serve", "--port", "99999")

    assert_plain_error(result, "99999")
    assert "port" in result.stderr.lower()
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_receiver_refuses_a_fail_rate_over_one_naming_the_option(
    test_env: dict[str, str],
) -> None:
    result = dlrpush(test_env, "receiver", "--protocol", "ucloud", "--fail-rate", "2")

    assert_plain_error(result, "--fail-rate")


def test_migrate_creates_the_database_and_stats_reads_it(
    test_env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "a.db"
    store = f"sqlite:///{db}"

    migrated = dlrpush(test_env, "migrate", "--store", store)

    assert migrated.returncode == 0, migrated.stderr
    assert db.is_file()
    assert "up to date" in migrated.stdout

    stats = dlrpush(test_env, "stats", "--store", store)

    assert stats.returncode == 0, stats.stderr
    counts = {line.split()[0]: line.split()[1] for line in stats.stdout.splitlines()}
    assert counts == {
        "held": "0",
        "unmatched": "0",
        "pending": "0",
        "failed": "0",
        "delivered": "0",
    }


def test_replay_to_an_unknown_endpoint_names_it(test_env: dict[str, str], tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'a.db'}"
    assert dlrpush(test_env, "migrate", "--store", store).returncode == 0

    result = dlrpush(test_env, "replay", "--store", store, "--endpoint", "999")

    assert_plain_error(result, "endpoint 999")
    assert "queued" not in result.stdout


def test_serve_answers_health_and_stops_cleanly_on_sigterm(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    service = spawn("serve", "--port", "0", "--store", f"sqlite:///{tmp_path / 's.db'}")
    assert "dlrpush ready on http://127.0.0.1:" in service.output()

    status, body = http("GET", service.url + "/healthz")

    assert status == 200
    assert body["status"] == "ok"

    started = time.monotonic()
    service.popen.send_signal(signal.SIGTERM)
    try:
        code = service.popen.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("serve still running 10 s after SIGTERM")
    assert time.monotonic() - started < 5
    assert code == 0, f"exit code {code}:\n{service.output()}"
    assert "Traceback" not in service.output()


def test_a_stop_signal_delivered_twice_still_stops_gracefully(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    """``timeout``, make and supervisors may signal the process group and the service
    too: the same stop arrives twice, a moment apart."""
    service = spawn("serve", "--port", "0", "--store", f"sqlite:///{tmp_path / 's.db'}")
    service.popen.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    service.popen.send_signal(signal.SIGTERM)
    try:
        code = service.popen.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("serve still running 10 s after SIGTERM")
    assert code == 0, f"exit code {code}:\n{service.output()}"
    assert "Traceback" not in service.output()


def test_admin_token_guards_the_api(spawn: Callable[..., Proc], tmp_path: Path) -> None:
    service = spawn(
        "serve",
        "--port",
        "0",
        "--store",
        f"sqlite:///{tmp_path / 't.db'}",
        env={"DLRPUSH_ADMIN_TOKEN": "secret"},
    )
    accounts = service.url + "/v1/accounts"

    assert http("POST", accounts, {"id": "shop"})[0] == 401
    assert http("POST", accounts, {"id": "shop"}, token="wrong")[0] == 401
    status, body = http("POST", accounts, {"id": "shop"}, token="secret")
    assert status == 201
    assert body["id"] == "shop"
    # Health checks from a load balancer carry no token.
    assert http("GET", service.url + "/healthz")[0] == 200


@pytest.mark.parametrize("command", ["stats", "replay"])
def test_reading_commands_do_not_create_a_store_from_a_typo(
    test_env: dict[str, str], tmp_path: Path, command: str
) -> None:
    typo = tmp_path / "dlrpush-typo.db"
    result = dlrpush(test_env, command, "--store", f"sqlite:///{typo}")
    assert_plain_error(result, "no SQLite store", str(typo))
    assert not typo.exists()


def test_store_passwords_never_appear_in_errors(test_env: dict[str, str]) -> None:
    result = dlrpush(test_env, "migrate", "--store", "mysql://app:hunter2@db/x")
    assert_plain_error(result, "unknown scheme")
    assert "hunter2" not in result.stdout + result.stderr


def test_a_second_dispatcher_on_one_sqlite_file_is_refused(
    spawn: Callable[..., Proc], test_env: dict[str, str], tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 's.db'}"
    service = spawn("serve", "--port", "0", "--store", store)

    second = dlrpush(test_env, "worker", "--store", store)

    assert_plain_error(second, "another dispatcher", f"pid {service.popen.pid}")
    # The API-only layout beside it is fine, and the first one is unharmed.
    api_only = spawn("serve", "--no-dispatch", "--port", "0", "--store", store)
    assert http("GET", api_only.url + "/healthz")[0] == 200
    assert http("GET", service.url + "/healthz")[0] == 200


def test_the_dispatcher_lock_goes_with_a_killed_process(
    spawn: Callable[..., Proc], test_env: dict[str, str], tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 's.db'}"
    first = spawn("serve", "--port", "0", "--store", store)
    first.popen.kill()
    first.popen.wait(10)

    again = spawn("serve", "--port", "0", "--store", store)

    assert http("GET", again.url + "/healthz")[0] == 200
