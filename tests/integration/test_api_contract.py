"""The HTTP API in-process over a real SQLite file: validation at the door, codes, shapes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dlrpush.api import create_app
from dlrpush.settings import Settings, parse_networks
from dlrpush.store import open_store


def _client(tmp_path: Path, **settings: Any) -> TestClient:
    s = Settings(
        store=f"sqlite:///{tmp_path}/api.db",
        callback_allow=parse_networks("127.0.0.0/8"),
        **settings,
    )
    return TestClient(create_app(s, open_store(s.store)))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with _client(tmp_path) as c:
        assert c.post("/v1/accounts", json={"id": "acme", "name": "Acme"}).status_code == 201
        yield c


def _msg(i: int, **kw: Any) -> dict[str, Any]:
    return {"msgid": f"m{i}", "account": "acme", "phone": "8618888888888", "segments": 1, **kw}


def _count(client: TestClient) -> int:
    return len(client.get("/v1/reports", params={"limit": 1000}).json()["items"])


def test_health_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    assert "/v1/messages" in spec["paths"] and "/v1/reports" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_account_conflict_and_lookup(client: TestClient) -> None:
    resp = client.post("/v1/accounts", json={"id": "acme", "name": "Again"})
    assert resp.status_code == 409
    assert "acme" in resp.json()["error"]
    assert client.get("/v1/accounts/nobody").status_code == 404
    bad = client.post("/v1/accounts", json={"id": "", "name": "x"})
    assert bad.status_code == 422 and bad.json()["field"] == "id"


def test_endpoint_lifecycle_never_echoes_the_password(client: TestClient) -> None:
    resp = client.post(
        "/v1/accounts/acme/endpoints",
        json={
            "url": "http://127.0.0.1:9/cb",
            "protocol": "innopaas",
            "credentials": {"receiver": "account", "pswd": "s3cret"},
        },
    )
    assert resp.status_code == 201
    ep = resp.json()
    assert ep["credentials"] == {"receiver": "account", "pswd": "***"}
    assert "s3cret" not in resp.text
    assert ep["retry_schedule_s"] == [1.0, 1.0, 1.0] and ep["batch_max"] == 100
    account = client.get("/v1/accounts/acme").json()
    assert [e["id"] for e in account["endpoints"]] == [ep["id"]]
    assert "s3cret" not in client.get("/v1/accounts/acme").text
    patched = client.patch(f"/v1/endpoints/{ep['id']}", json={"timeout_s": 2, "enabled": False})
    assert patched.status_code == 200
    assert patched.json()["timeout_s"] == 2 and patched.json()["enabled"] is False
    assert patched.json()["credentials"]["receiver"] == "account"
    assert client.delete(f"/v1/endpoints/{ep['id']}").status_code == 204
    assert client.get(f"/v1/endpoints/{ep['id']}").status_code == 404
    assert client.delete(f"/v1/endpoints/{ep['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://127.0.0.1/x", "protocol": "ucloud"}, "url"),
        ({"url": "http://127.0.0.1/x", "protocol": "smtp"}, "protocol"),
        ({"url": "http://127.0.0.1/x", "protocol": "ucloud", "batch_max": 0}, "batch_max"),
        (
            {"url": "http://127.0.0.1/x", "protocol": "ucloud", "retry_schedule_s": [-1]},
            "retry_schedule_s",
        ),
        ({"url": "http://127.0.0.1/x", "protocol": "ucloud", "timeout_s": 0}, "timeout_s"),
        ({"url": "http://10.0.0.8/x", "protocol": "ucloud"}, "url"),
        ({"url": "http://169.254.169.254/latest", "protocol": "ucloud"}, "url"),
        ({"protocol": "ucloud"}, "url"),
    ],
)
def test_bad_endpoints_name_the_field(client: TestClient, body: dict[str, Any], field: str) -> None:
    resp = client.post("/v1/accounts/acme/endpoints", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field


def test_loopback_callbacks_are_refused_unless_allowed(tmp_path: Path) -> None:
    s = Settings(store=f"sqlite:///{tmp_path}/strict.db")
    with TestClient(create_app(s, open_store(s.store))) as c:
        c.post("/v1/accounts", json={"id": "a"})
        resp = c.post(
            "/v1/accounts/a/endpoints", json={"url": "http://127.0.0.1:9000/", "protocol": "ucloud"}
        )
        assert resp.status_code == 422
        assert "DLRPUSH_CALLBACK_ALLOW" in resp.json()["error"]


def test_messages_accepted_and_stored(client: TestClient) -> None:
    resp = client.post("/v1/messages", json=[_msg(i, uid="订单-1 ok_x") for i in range(3)])
    assert resp.status_code == 202 and resp.json()["accepted"] == 3


@pytest.mark.parametrize(
    ("item", "field", "words"),
    [
        ({"account": "acme", "phone": "1"}, "2.msgid", "required"),
        ({"msgid": "x", "account": "acme"}, "2.phone", "required"),
        ({"msgid": "x", "phone": "8613900000000"}, "2.account", "required"),
        ({**_msg(9), "account": "ghost"}, "2.account", "ghost"),
        ({**_msg(9), "uid": "x" * 33}, "2.uid", "32"),
        ({**_msg(9), "uid": "it's"}, "2.uid", "quote"),
        ({**_msg(9), "uid": "ok😀"}, "2.uid", "emoji"),
        ({**_msg(9), "phone": "abc"}, "2.phone", ""),
        ({**_msg(9), "segments": 0}, "2.segments", ""),
        ({**_msg(9), "unit_price": "1e3"}, "2.unit_price", ""),
        ({**_msg(9), "unit_price": "cheap"}, "2.unit_price", "decimal"),
        ({**_msg(9), "colour": "red"}, "2.colour", "not a known field"),
    ],
)
def test_one_bad_message_rejects_the_batch_naming_it(
    client: TestClient, item: dict[str, Any], field: str, words: str
) -> None:
    resp = client.post("/v1/messages", json=[_msg(0), _msg(1), item, _msg(3)])
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["field"] == field
    assert words in body["error"]
    # Nothing of the batch was stored: a report for m0 is held, not matched.
    rep = client.post("/v1/reports", json=[{"msgid": "m0", "status": "DELIVRD"}]).json()
    assert rep["held"] == 1


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"status": "DELIVRD"}, "1"),
        ({"msgid": "m1"}, "1"),
        ({"receipt": "stat:DELIVRD err:000"}, "1.receipt"),
        ({"receipt": "id:1 done date:2599999999 stat:DELIVRD"}, "1.receipt"),
        ({"msgid": "m1", "status": "DELIVRD", "report_time_ms": -5}, "1.report_time_ms"),
    ],
)
def test_one_bad_report_rejects_the_batch(
    client: TestClient, item: dict[str, Any], field: str
) -> None:
    resp = client.post("/v1/reports", json=[{"msgid": "m0", "status": "DELIVRD"}, item])
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field
    assert _count(client) == 0


def test_bodies_that_are_not_arrays_or_not_json(client: TestClient) -> None:
    for path in ("/v1/messages", "/v1/reports"):
        resp = client.post(path, content=b"{not json", headers={"content-type": "application/json"})
        assert resp.status_code == 422 and resp.json()["field"] == "body"
        resp = client.post(path, json={"msgid": "m"})
        assert resp.status_code == 422 and "array" in resp.json()["error"]


def test_arrays_over_ten_thousand_items_are_413(client: TestClient) -> None:
    resp = client.post("/v1/reports", json=[{"msgid": "m", "status": "DELIVRD"}] * 10_001)
    assert resp.status_code == 413
    assert _count(client) == 0
    ok = client.post("/v1/reports", json=[{"msgid": "m", "status": "DELIVRD"}] * 10_000)
    assert ok.status_code == 202


def test_receipt_text_and_status_normalisation(client: TestClient) -> None:
    resp = client.post(
        "/v1/reports",
        json=[
            {
                "receipt": "id:abc sub:001 dlvrd:001 submit date:2506101652 done date:2506101653"
                " stat:DELIVRD err:000 text:hi"
            },
            {"msgid": "m2", "status": "Delivrd"},
        ],
    )
    assert resp.status_code == 202
    items = client.get("/v1/reports").json()["items"]
    assert items[0]["msgid"] == "abc" and items[0]["status"] == "DELIVRD"
    assert items[0]["report_time_ms"] == 1749545580000  # 2025-06-10 16:53 +08:00
    assert items[1]["status"] == "DELIVRD" and items[1]["state"] == "held"


def test_listing_filters_and_cursor_validation(client: TestClient) -> None:
    client.post("/v1/messages", json=[_msg(i) for i in range(5)])
    client.post("/v1/reports", json=[{"msgid": f"m{i}", "status": "DELIVRD"} for i in range(5)])
    page = client.get("/v1/reports", params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = client.get("/v1/reports", params={"cursor": page["next_cursor"]}).json()
    assert [r["msgid"] for r in rest["items"]] == ["m2", "m3", "m4"]
    assert rest["next_cursor"] is None
    item = rest["items"][0]
    assert {"id", "msgid", "account", "status", "state", "attempts"} <= set(item)
    assert client.get("/v1/reports", params={"cursor": "abc"}).status_code == 422
    assert client.get("/v1/reports", params={"state": "lost"}).status_code == 422
    assert client.get("/v1/reports", params={"limit": 0}).status_code == 422
    assert client.get("/v1/reports/999/attempts").status_code == 404


def test_replay_validates_its_filter(client: TestClient) -> None:
    assert client.post("/v1/replay", json={"endpoint": 42}).json()["field"] == "endpoint"
    assert client.post("/v1/replay", json={"state": "nope"}).status_code == 422
    assert client.post("/v1/replay", json={}).json() == {"queued": 0}


def test_admin_token_guards_v1_but_not_health(tmp_path: Path) -> None:
    with _client(tmp_path, admin_token="t0ken") as c:
        assert c.get("/healthz").status_code == 200
        denied = c.post("/v1/accounts", json={"id": "a"})
        assert denied.status_code == 401 and "bearer" in denied.json()["error"].lower()
        wrong = c.post("/v1/accounts", json={"id": "a"}, headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401
        ok = c.post("/v1/accounts", json={"id": "a"}, headers={"Authorization": "Bearer t0ken"})
        assert ok.status_code == 201


def test_an_account_key_reads_only_its_own_reports(tmp_path: Path) -> None:
    admin = {"Authorization": "Bearer op-token"}
    with _client(tmp_path, admin_token="op-token") as c:
        for acct in ("acme", "other"):
            assert c.post("/v1/accounts", json={"id": acct}, headers=admin).status_code == 201
        c.post(
            "/v1/messages",
            headers=admin,
            json=[
                {"msgid": "a1", "account": "acme", "phone": "13912345678"},
                {"msgid": "o1", "account": "other", "phone": "13912345678"},
            ],
        )
        c.post(
            "/v1/reports",
            headers=admin,
            json=[{"msgid": "a1", "status": "DELIVRD"}, {"msgid": "o1", "status": "DELIVRD"}],
        )
        made = c.post("/v1/accounts/acme/keys", headers=admin)
        assert made.status_code == 201
        key = made.json()["key"]
        assert key.startswith("dlrk_") and made.json()["prefix"] == key[:11]
        listed = c.get("/v1/accounts/acme/keys", headers=admin).json()
        assert [k["id"] for k in listed] == [made.json()["id"]]
        assert key not in c.get("/v1/accounts/acme/keys", headers=admin).text
        mine = {"Authorization": f"Bearer {key}"}
        items = c.get("/v1/reports", headers=mine).json()["items"]
        assert [r["msgid"] for r in items] == ["a1"]
        other_id = next(
            r["id"]
            for r in c.get("/v1/reports", headers=admin).json()["items"]
            if r["msgid"] == "o1"
        )
        assert c.get(f"/v1/reports/{other_id}", headers=mine).status_code == 404
        assert c.get(f"/v1/reports/{other_id}/attempts", headers=mine).status_code == 404
        assert c.get("/v1/reports", params={"account": "other"}, headers=mine).status_code == 403
        # A key is for reading: everything else is the operator's.
        assert c.post("/v1/reports", json=[], headers=mine).status_code == 403
        assert c.post("/v1/replay", json={}, headers=mine).status_code == 403
        assert c.get("/v1/accounts/acme", headers=mine).status_code == 403
        # Revoked keys stop working at once.
        assert c.delete(f"/v1/keys/{made.json()['id']}", headers=admin).status_code == 204
        assert c.get("/v1/reports", headers=mine).status_code == 401
        assert c.delete(f"/v1/keys/{made.json()['id']}", headers=admin).status_code == 404


def test_bodies_over_the_limit_are_413_on_every_route(tmp_path: Path) -> None:
    with _client(tmp_path, max_body_bytes=2048) as c:
        big = {"id": "acme", "name": "x" * 4096}
        resp = c.post("/v1/accounts", json=big)
        assert resp.status_code == 413 and resp.json()["field"] == "body"
        assert c.get("/v1/accounts/acme").status_code == 404
