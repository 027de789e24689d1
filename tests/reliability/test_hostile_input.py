"""Hostile input never gets a 5xx; a 4xx says what is wrong; a rejected request stores nothing."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from pydantic import TypeAdapter, ValidationError
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from conftest import Proc
from dlrpush.api import create_app
from dlrpush.netguard import literal_address, url_problem
from dlrpush.settings import Settings, parse_networks
from dlrpush.store import open_store

INT64 = range(-(2**63), 2**63)
TABLES = ("accounts", "endpoints", "messages", "reports", "deliveries", "pushes")
POST_ROUTES = (
    "/v1/messages",
    "/v1/reports",
    "/v1/accounts",
    "/v1/accounts/acme/endpoints",
    "/v1/replay",
)
JSON_HEADERS = {"content-type": "application/json"}
_INT = TypeAdapter(int)


def _hypothesis(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,  # nothing written into the repository
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# -- helpers ---------------------------------------------------------------------------------


def _as_int(value: object) -> int | None:
    """The integer FastAPI/pydantic would read from ``value`` (lax mode), if any."""
    try:
        return _INT.validate_python(value)
    except ValidationError:
        return None


def _idna_fails(url: object) -> bool:
    """True for a callback URL whose host makes getaddrinfo raise UnicodeError (a 500)."""
    if not isinstance(url, str) or url_problem(url) is not None:
        return False
    host = urlsplit(url).hostname or ""
    if literal_address(host) is not None:
        return False
    try:
        host.encode("idna")
    except UnicodeError:
        return True
    return False


# -- plumbing -------------------------------------------------------------------------------


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Callback hosts are resolved in-process: only localhost resolves, nothing leaves."""
    real = socket.getaddrinfo

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("localhost", "127.0.0.1", b"localhost", b"127.0.0.1"):
            return real(host, *args, **kwargs)
        if isinstance(host, str):
            host.encode("idna")  # what socket.getaddrinfo does first, errors included
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@contextmanager
def _service(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    db = tmp_path / "hostile.db"
    s = Settings(store=f"sqlite:///{db}", callback_allow=parse_networks("127.0.0.0/8"))
    with TestClient(create_app(s, open_store(s.store)), raise_server_exceptions=False) as c:
        assert c.post("/v1/accounts", json={"id": "acme", "name": "Acme"}).status_code == 201
        ep = c.post(
            "/v1/accounts/acme/endpoints",
            json={"url": "http://127.0.0.1:9/cb", "protocol": "innopaas"},
        )
        assert ep.status_code == 201
        yield c, db


def _counts(db: Path) -> dict[str, int]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


def _check(resp: httpx.Response, what: str) -> Any:
    """The answer is no 5xx, and a 4xx is JSON that says what is wrong. Returns the body."""
    assert resp.status_code < 500, f"{what} -> {resp.status_code}: {resp.text[:300]}"
    if resp.status_code < 400:
        return resp.json() if resp.content else None
    body = resp.json()
    assert isinstance(body, dict), (what, body)
    error = body.get("error") or body.get("detail")
    assert error, (what, body)
    if resp.status_code == 422:
        assert isinstance(body.get("field"), str), (what, body)
    return body


def _check_ingest(resp: httpx.Response, body: object, before: dict[str, int], db: Path) -> Any:
    answer = _check(resp, f"ingest {str(body)[:200]}")
    after = _counts(db)
    if resp.status_code != 202:
        assert after == before, f"a rejected request stored something: {before} -> {after}"
        field = answer.get("field", "")
        head = field.split(".", 1)[0]
        if isinstance(body, list) and head.isdigit():
            assert int(head) < len(body), answer  # names the offending item
            assert answer["error"].startswith(field), answer
    else:
        assert isinstance(body, list)
        assert answer["accepted"] == len(body)
    return answer


def _known_msgids(db: Path, ids: set[str]) -> int:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM messages WHERE msgid IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(ids)),),
        ).fetchone()
        return int(row[0])


# -- strategies -----------------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)  # lone surrogates too: JSON can carry them as \ud800
)
JSON_VALUES = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=30,
)
EXTRA_KEYS = st.dictionaries(st.text(max_size=10), LEAF, max_size=2)
DIGITS = st.from_regex(r"[0-9]{0,4}", fullmatch=True)


def _receipts() -> st.SearchStrategy[str]:
    date = st.from_regex(r"[0-9]{10}([0-9]{2})?", fullmatch=True) | TEXT
    return (
        st.builds(
            lambda i, s, d1, d2, e, t: (
                f"id:{i} sub:001 dlvrd:001 submit date:{d1} done date:{d2}"
                f" stat:{s} err:{e} text:{t}"
            ),
            st.sampled_from(["m1", "m2", "", "x" * 70]) | TEXT,
            st.sampled_from(["DELIVRD", "MK:0001", "", " "]) | TEXT,
            date,
            date,
            DIGITS,
            TEXT,
        )
        | TEXT
    )


MESSAGE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "msgid": st.sampled_from(["m1", "m2", "m3"]) | TEXT,
    "account": st.sampled_from(["acme", "acme", "nobody"]) | TEXT,
    "phone": st.from_regex(r"\+?[0-9]{3,20}", fullmatch=True) | st.just("8613912345678"),
    "segments": st.integers(0, 256),
    "uid": TEXT,
    "batch_seq": TEXT,
    "request_time_ms": st.integers(-1, 10**14),
    "unit_price": st.decimals(allow_nan=True).map(str) | TEXT,
    "currency": TEXT,
    "access_number": TEXT,
    "mcc": DIGITS,
    "mnc": DIGITS,
    "operator": TEXT,
}
REPORT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "msgid": st.sampled_from(["m1", "m2", "m3", "nope"]) | TEXT,
    "status": st.sampled_from(["DELIVRD", "undeliv", " ", "MK:0001"]) | TEXT,
    "report_time_ms": st.integers(-1, 10**14),
    "error_code": TEXT,
    "description": TEXT,
    "receipt": _receipts(),
}
ENDPOINT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "url": st.sampled_from(
        [
            "http://127.0.0.1:9/cb",
            "https://localhost/cb",
            "http://10.0.0.1/x",
            "http://169.254.169.254/latest",
            "ftp://127.0.0.1/",
            "http://user:pw@127.0.0.1/",
            "http://127.0.0.1:0/",
            "http://[::1/",
            "http://no-such-host.invalid/cb",
            "http:///nohost",
        ]
    )
    | st.builds(lambda h: f"http://{h}/cb", TEXT)
    | TEXT,
    "protocol": st.sampled_from(["ucloud", "innopaas", "UCLOUD", ""]) | TEXT,
    "credentials": st.fixed_dictionaries({}, optional={"receiver": TEXT, "pswd": TEXT}) | LEAF,
    "batch_max": st.integers(-1, 1001),
    "retry_schedule_s": st.lists(st.floats() | st.integers(-1, 10**6), max_size=4) | LEAF,
    "timeout_s": st.floats() | st.integers(-1, 301),
    "max_in_flight": st.integers(-1, 1025),
    "enabled": st.booleans() | LEAF,
    "description_lang": st.sampled_from(["zh", "en", "fr"]),
    "success_body_contains": TEXT | st.none(),
}
ACCOUNT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,70}", fullmatch=True) | TEXT,
    "name": TEXT | st.text(min_size=190, max_size=210),
}
REPLAY_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "account": st.sampled_from(["acme", "nobody"]) | TEXT,
    "endpoint": st.integers(-(2**63), 2**63 - 1),
    "state": st.sampled_from(["failed", "pending", "delivered", "held", "unmatched", "x"]),
    "since_ms": st.integers(-(2**63), 2**63 - 1),
    "until_ms": st.integers(-(2**63), 2**63 - 1),
    "msgids": st.lists(st.sampled_from(["m1", "m2"]) | TEXT, max_size=4),
}


def _objects(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with any subset of the known fields (good or hostile values) and stray keys."""
    optional = {k: s | LEAF for k, s in fields.items()}
    return st.builds(
        lambda known, extra: {**extra, **known},
        st.fixed_dictionaries({}, optional=optional),
        EXTRA_KEYS,
    )


# Well-formed objects, so that accepted requests (and their counts) are exercised too.
WORD = st.text(st.sampled_from("abcXYZ019_.:-"), min_size=1, max_size=12)
SAFE = st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=20)
VALID_MESSAGE = st.fixed_dictionaries(
    {"msgid": WORD, "account": st.just("acme"), "phone": MESSAGE_FIELDS["phone"]},
    optional={
        "segments": st.integers(1, 255),
        "uid": st.text(st.sampled_from("abc123-_"), max_size=32),
        "batch_seq": SAFE,
        "request_time_ms": st.integers(0, 10**14 - 1),
        "unit_price": st.decimals(min_value=0, max_value=100, places=5).map(str),
        "currency": st.sampled_from(["CNY", "USD"]),
        "access_number": SAFE,
        "mcc": st.from_regex(r"[0-9]{0,3}", fullmatch=True),
        "operator": SAFE,
    },
)
VALID_REPORT = st.fixed_dictionaries(
    {
        "msgid": st.sampled_from(["m1", "m2", "m3"]) | WORD,
        "status": st.sampled_from(["DELIVRD", "undeliv", "MK:0001", " expired "]),
    },
    optional={
        "report_time_ms": st.integers(0, 10**14 - 1),
        "error_code": st.text(st.sampled_from("0123456789"), max_size=8),
        "description": SAFE,
    },
) | st.builds(
    lambda i, d: {"receipt": f"id:{i} sub:001 dlvrd:001 done date:{d} stat:DELIVRD err:000"},
    WORD,
    st.sampled_from(["2511211531", "251121153100", "991231235959"]),
)
VALID_ENDPOINT = st.fixed_dictionaries(
    {
        "url": st.sampled_from(
            ["http://127.0.0.1:9/cb", "http://localhost:8/x", "http://127.9.9.9/"]
        ),
        "protocol": st.sampled_from(["ucloud", "innopaas"]),
    },
    optional={
        "credentials": st.fixed_dictionaries({}, optional={"receiver": SAFE, "pswd": SAFE}),
        "batch_max": st.integers(1, 1000),
        "retry_schedule_s": st.lists(st.floats(0, 86400), max_size=5),
        "timeout_s": st.floats(0.001, 300),
        "max_in_flight": st.integers(1, 1024),
        "enabled": st.booleans(),
        "description_lang": st.sampled_from(["zh", "en"]),
        "success_body_contains": st.text(min_size=1, max_size=20) | st.none(),
    },
)
VALID_ACCOUNT = st.fixed_dictionaries(
    {"id": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True)},
    optional={"name": SAFE},
)
VALID_REPLAY = st.fixed_dictionaries(
    {},
    optional={
        "account": st.just("acme"),
        "state": st.sampled_from(["failed", "pending", "delivered"]),
        "since_ms": st.integers(0, 2 * 10**12),
        "msgids": st.lists(WORD, max_size=3),
    },
)
VALID = {
    "/v1/messages": VALID_MESSAGE,
    "/v1/reports": VALID_REPORT,
    "/v1/accounts": VALID_ACCOUNT,
    "/v1/accounts/acme/endpoints": VALID_ENDPOINT,
    "PATCH /v1/endpoints/1": VALID_ENDPOINT,
    "/v1/replay": VALID_REPLAY,
}

# -- (a) properties over the in-process app -------------------------------------------------


def test_any_json_value_to_any_post_route(tmp_path: Path, no_dns: None) -> None:
    seen: Counter[int] = Counter()
    with _service(tmp_path) as (client, db):

        @_hypothesis(200)
        @given(path=st.sampled_from(POST_ROUTES), value=JSON_VALUES)
        def run(path: str, value: Any) -> None:
            before = _counts(db)
            resp = client.post(path, content=json.dumps(value).encode(), headers=JSON_HEADERS)
            seen[resp.status_code] += 1
            if path in ("/v1/messages", "/v1/reports"):
                _check_ingest(resp, value, before, db)
            else:
                _check(resp, f"{path} {str(value)[:200]}")
                if resp.status_code >= 400:
                    assert _counts(db) == before

        run()
    print(f"\nany JSON value: answers {dict(sorted(seen.items()))}")


def test_any_bytes_to_any_post_route(tmp_path: Path, no_dns: None) -> None:
    seen: Counter[int] = Counter()
    prefixes = st.sampled_from([b"", b"[", b"[{", b'{"id":', b"\xef\xbb\xbf[", b'[{"msgid":"m1"'])
    with _service(tmp_path) as (client, db):

        @_hypothesis(150)
        @given(
            path=st.sampled_from(POST_ROUTES),
            data=st.tuples(prefixes, st.binary(max_size=300)).map(b"".join),
            content_type=st.sampled_from(["application/json", "text/plain", "", "application/x"]),
        )
        def run(path: str, data: bytes, content_type: str) -> None:
            before = _counts(db)
            headers = {"content-type": content_type} if content_type else {}
            resp = client.post(path, content=data, headers=headers)
            seen[resp.status_code] += 1
            _check(resp, f"{path} {data[:100]!r}")
            if resp.status_code >= 300:
                assert _counts(db) == before

        run()
    print(f"\nany bytes: answers {dict(sorted(seen.items()))}")


@pytest.mark.parametrize(
    ("path", "fields"),
    [("/v1/messages", MESSAGE_FIELDS), ("/v1/reports", REPORT_FIELDS)],
    ids=["messages", "reports"],
)
def test_arrays_of_hostile_objects_are_stored_whole_or_not_at_all(
    tmp_path: Path, no_dns: None, path: str, fields: dict[str, st.SearchStrategy[Any]]
) -> None:
    seen: Counter[int] = Counter()
    matched = 0
    with _service(tmp_path) as (client, db):
        records = [{"msgid": m, "account": "acme", "phone": "123"} for m in ("m1", "m2", "m3")]
        assert client.post("/v1/messages", json=records).status_code == 202
        valid, hostile = VALID[path], _objects(fields)
        arrays = st.lists(valid, max_size=6) | st.lists(valid | hostile, max_size=6)

        @_hypothesis(200)
        @given(items=arrays)
        def run(items: list[dict[str, Any]]) -> None:
            before = _counts(db)
            ids = {str(i.get("msgid")) for i in items}
            known = _known_msgids(db, ids)
            resp = client.post(path, content=json.dumps(items).encode(), headers=JSON_HEADERS)
            seen[resp.status_code] += 1
            answer = _check_ingest(resp, items, before, db)
            after = _counts(db)
            if resp.status_code == 202 and path == "/v1/reports":
                # One delivery per matched report (acme has one endpoint); the rest held.
                assert after["reports"] == before["reports"] + len(items)
                assert after["deliveries"] == before["deliveries"] + answer["matched"]
                assert answer["held"] == len(items) - answer["matched"]
                nonlocal matched
                matched += answer["matched"]
            if resp.status_code == 202 and path == "/v1/messages":
                # The first record of a msgid stays; repeats are ignored.
                assert after["messages"] == before["messages"] + len(ids) - known

        run()
    extra = f", {matched} reports matched a record" if path == "/v1/reports" else ""
    print(f"\n{path} arrays: answers {dict(sorted(seen.items()))}{extra}")
    assert seen[202] >= 20 and seen[422] >= 20, "the strategy should produce both kinds"


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/v1/accounts", ACCOUNT_FIELDS),
        ("/v1/accounts/acme/endpoints", ENDPOINT_FIELDS),
        ("PATCH /v1/endpoints/1", ENDPOINT_FIELDS),
        ("/v1/replay", REPLAY_FIELDS),
    ],
    ids=["accounts", "endpoints", "patch-endpoint", "replay"],
)
def test_hostile_objects_to_the_object_routes(
    tmp_path: Path, no_dns: None, path: str, fields: dict[str, st.SearchStrategy[Any]]
) -> None:
    seen: Counter[int] = Counter()
    with _service(tmp_path) as (client, db):

        @_hypothesis(150)
        @given(
            body=VALID[path] | _objects(fields),
            account=st.sampled_from(["acme", "acme", "nobody"]) | TEXT,
        )
        def run(body: dict[str, Any], account: str) -> None:
            before = _counts(db)
            content = json.dumps(body).encode()
            if path.startswith("PATCH "):
                resp = client.patch(path.split()[1], content=content, headers=JSON_HEADERS)
            elif path.endswith("/endpoints"):
                target = f"/v1/accounts/{quote(account, safe='')}/endpoints"
                resp = client.post(target, content=content, headers=JSON_HEADERS)
            else:
                resp = client.post(path, content=content, headers=JSON_HEADERS)
            seen[resp.status_code] += 1
            answer = _check(resp, f"{path} {str(body)[:200]}")
            if resp.status_code >= 400:
                assert _counts(db) == before
            if resp.status_code in (200, 201) and "endpoint" in path:
                assert answer["credentials"]["pswd"] in ("", "***")  # never echoed

        run()
    print(f"\n{path} objects: answers {dict(sorted(seen.items()))}")
    assert sum(n for code, n in seen.items() if code < 300) >= 10, "accepted bodies too"
    assert sum(n for code, n in seen.items() if code >= 400) >= 10, "refused bodies too"


QUERY_KEYS = ["account", "msgid", "state", "since_ms", "until_ms", "cursor", "limit"]
QUERY_VALUES = (
    st.sampled_from(
        ["", "acme", "delivered", "failed", "held", "-1", "0", "1", "1000", "1001", "1e3", " 5"]
    )
    | st.from_regex(r"-?[0-9]{1,21}", fullmatch=True)
    | st.floats().map(str)
    | TEXT
)


def test_any_query_string_to_list_reports(tmp_path: Path) -> None:
    seen: Counter[int] = Counter()
    raw = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
    with _service(tmp_path) as (client, _db):
        client.post("/v1/messages", json=[{"msgid": "m1", "account": "acme", "phone": "123"}])
        client.post("/v1/reports", json=[{"msgid": "m1", "status": "DELIVRD"}] * 3)

        @_hypothesis(200)
        @given(
            pairs=st.lists(st.tuples(st.sampled_from(QUERY_KEYS) | TEXT, QUERY_VALUES), max_size=5),
            junk=st.none() | raw,
        )
        def run(pairs: list[tuple[str, str]], junk: str | None) -> None:
            query = urlencode(pairs)
            if junk is not None:
                query = f"{query}&{junk}" if query else junk
                assume("cursor=9" not in junk and "_ms=" not in junk)
            resp = client.get("/v1/reports?" + query)
            seen[resp.status_code] += 1
            answer = _check(resp, f"GET /v1/reports?{query}")
            if resp.status_code == 200:
                assert isinstance(answer["items"], list) and len(answer["items"]) <= 1000
                assert answer["next_cursor"] is None or answer["next_cursor"].isdigit()

        run()
    print(f"\nquery strings: answers {dict(sorted(seen.items()))}")


# -- bugs found by the fuzzing, kept as regression tests ------------------------------------

BIG = 2**63  # one past SQLite's largest integer


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/reports?cursor=9999999999999999999", None),  # inside the documented pattern
        ("GET", f"/v1/reports?since_ms={BIG}", None),
        ("GET", f"/v1/reports?until_ms=-{BIG + 1}", None),
        ("GET", f"/v1/reports/{BIG}", None),
        ("GET", f"/v1/reports/{BIG}/attempts", None),
        ("GET", f"/v1/endpoints/{BIG}", None),
        ("PATCH", f"/v1/endpoints/{BIG}", {"enabled": False}),
        ("DELETE", f"/v1/endpoints/{BIG}", None),
        ("POST", "/v1/replay", {"endpoint": BIG}),
        ("POST", "/v1/replay", {"since_ms": BIG}),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, str) else None,
)
def test_integers_beyond_64_bits_are_a_4xx_not_a_500(
    tmp_path: Path, method: str, path: str, body: Any
) -> None:
    with _service(tmp_path) as (client, _db):
        resp = client.request(method, path, json=body)
        print(f"\n{method} {path} {body or ''} -> {resp.status_code}")
        assert resp.status_code < 500, resp.text


@pytest.mark.parametrize("url", ["http://a..b/cb", "http://./cb", f"http://{'a' * 64}.example/"])
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_callback_host_that_cannot_be_encoded_is_a_422_not_a_500(
    tmp_path: Path, no_dns: None, url: str, method: str
) -> None:
    with _service(tmp_path) as (client, db):
        before = _counts(db)
        if method == "POST":
            resp = client.post(
                "/v1/accounts/acme/endpoints", json={"url": url, "protocol": "ucloud"}
            )
        else:
            resp = client.patch("/v1/endpoints/1", json={"url": url})
        print(f"\n{method} url={url} -> {resp.status_code}")
        assert resp.status_code == 422, resp.text
        assert resp.json()["field"] == "url"
        assert _counts(db) == before


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolves(doc: Any, ref: str) -> bool:
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_every_ref_in_the_openapi_document_resolves(tmp_path: Path) -> None:
    with _service(tmp_path) as (client, _db):
        doc = client.get("/openapi.json").json()
    dangling = sorted({r for r in _refs(doc) if not _resolves(doc, r)})
    print(f"\ndangling $refs: {dangling}")
    assert dangling == []


# -- (b) schemathesis against the live service ----------------------------------------------


def _make_local(case: Case[Any]) -> None:
    """Point any callback URL that would need DNS or reach off-host at 127.0.0.1."""
    body = case.body
    if not (isinstance(body, dict) and isinstance(body.get("url"), str)):
        return
    url = str(body["url"])
    if url_problem(url) is not None or _idna_fails(url):
        return  # refused on its form, before any resolution
    host = urlsplit(url).hostname or ""
    literal = literal_address(host)
    if literal is None or not literal.is_loopback:
        body["url"] = "http://127.0.0.1:9/cb"


def _fuzz(
    op: APIOperation[Any, Any, Any, Any],
    mode: GenerationMode,
    base_url: str,
    statuses: Counter[tuple[str, int]],
) -> None:
    """Run one operation's generated cases against the service; fail on an unknown 5xx."""

    @_hypothesis(25)
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Case[Any]) -> None:
        _make_local(case)
        resp = case.call(base_url=base_url, timeout=15)
        statuses[(op.label, resp.status_code)] += 1
        case.validate_response(resp, checks=[not_a_server_error])
        if 400 <= resp.status_code < 500:
            answer = json.loads(resp.content)
            assert answer.get("error") or answer.get("detail"), (op.label, answer)

    run()


def test_schemathesis_finds_no_server_error(spawn: Callable[..., Proc], tmp_path: Path) -> None:
    svc = spawn("serve", "--port", "0", "--store", f"sqlite:///{tmp_path}/st.db")
    doc = httpx.get(svc.url + "/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(doc)
    results = list(schema.get_all_operations())
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert len(operations) == len(results), "an operation could not be loaded"
    statuses: Counter[tuple[str, int]] = Counter()
    for op in operations:
        _fuzz(op, GenerationMode.POSITIVE, svc.url, statuses)
        raw = doc["paths"][op.path][op.method.lower()]
        if not (raw.get("parameters") or raw.get("requestBody")):
            continue  # nothing to get wrong (GET /healthz)
        try:
            _fuzz(op, GenerationMode.NEGATIVE, svc.url, statuses)
        except Unsatisfiable:
            assert not op.body, op.label  # a free-text path parameter cannot be wrong

    assert svc.popen.poll() is None, "the service died under the fuzzing"
    print(f"\nschemathesis: {len(operations)} operations")
    per_op: dict[str, Counter[int]] = {}
    for (label, status), n in sorted(statuses.items()):
        per_op.setdefault(label, Counter())[status] += n
    for label, counts in per_op.items():
        print(f"  {label:<42} {dict(counts)}")
    bodies = {op.label for op in operations if op.body}
    assert {"POST /v1/messages", "POST /v1/reports"} <= bodies
    assert sum(statuses.values()) >= 10 * len(operations)


# -- (c) body size and array length limits ---------------------------------------------------


def _reports_body(n: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [{"msgid": f"{prefix}{i}", "status": "DELIVRD"} for i in range(n)]


def _messages_body(n: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [
        {"msgid": f"{prefix}{i}", "account": "acme", "phone": "8613912345678"} for i in range(n)
    ]


def _stored(client: httpx.Client) -> dict[str, int]:
    counts: dict[str, int] = client.get("/v1/stats").json()["reports"]
    return counts


def test_body_over_the_byte_limit_is_413_and_stores_nothing(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    limit = 4096
    store = f"sqlite:///{tmp_path}/limit.db"
    svc = spawn(
        "serve", "--port", "0", "--store", store, env={"DLRPUSH_MAX_BODY_BYTES": str(limit)}
    )
    with httpx.Client(base_url=svc.url, timeout=30) as client:
        assert client.post("/v1/accounts", json={"id": "acme"}).status_code == 201
        big_messages = json.dumps(_messages_body(80)).encode()
        big_reports = json.dumps(_reports_body(200)).encode()
        assert len(big_messages) > limit and len(big_reports) > limit
        answers = {
            "messages, Content-Length": client.post(
                "/v1/messages", content=big_messages, headers=JSON_HEADERS
            ),
            "reports, Content-Length": client.post(
                "/v1/reports", content=big_reports, headers=JSON_HEADERS
            ),
            # No Content-Length: the limit must hold while the body streams in.
            "reports, chunked": client.post(
                "/v1/reports",
                content=iter([big_reports[:3000], big_reports[3000:]]),
                headers=JSON_HEADERS,
            ),
        }
        for what, resp in answers.items():
            print(f"\n{what}: {len(big_reports)} bytes -> {resp.status_code} {resp.text}")
            assert resp.status_code == 413, (what, resp.text)
            assert str(limit) in resp.json()["error"] and resp.json()["field"] == "body"
        assert sum(_stored(client).values()) == 0
        # The messages were not stored either: a report for one of them is held.
        held = client.post("/v1/reports", json=[{"msgid": "r0", "status": "DELIVRD"}])
        assert held.status_code == 202 and held.json()["held"] == 1
        # Just under the limit is fine.
        fits = json.dumps(_reports_body(60, "ok")).encode()
        assert len(fits) <= limit
        resp = client.post("/v1/reports", content=fits, headers=JSON_HEADERS)
        assert resp.status_code == 202, resp.text
        assert sum(_stored(client).values()) == 61


def test_array_of_10001_is_413_and_stores_nothing(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    svc = spawn("serve", "--port", "0", "--store", f"sqlite:///{tmp_path}/items.db")
    with httpx.Client(base_url=svc.url, timeout=60) as client:
        assert client.post("/v1/accounts", json={"id": "acme"}).status_code == 201
        for path, body in (
            ("/v1/messages", _messages_body(10_001)),
            ("/v1/reports", _reports_body(10_001)),
        ):
            resp = client.post(path, json=body)
            print(f"\n{path} with 10,001 items -> {resp.status_code} {resp.text}")
            assert resp.status_code == 413, resp.text
            assert "10001" in resp.json()["error"] and "10000" in resp.json()["error"]
        assert sum(_stored(client).values()) == 0
        held = client.post("/v1/reports", json=[{"msgid": "r7", "status": "DELIVRD"}])
        assert held.json()["held"] == 1  # the 10,001 messages were not stored
        resp = client.post("/v1/reports", json=_reports_body(10_000, "ok"))
        assert resp.status_code == 202 and resp.json()["accepted"] == 10_000
