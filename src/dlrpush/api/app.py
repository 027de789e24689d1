"""The HTTP API (ASGI): accounts, endpoints, ingest, pull, attempts, replay, health.

``create_app`` wires routes to a store and, when this process also dispatches, to the
dispatcher so new work is pushed at once. Every user error is a 4xx naming the field;
ingest arrays are parsed and validated whole before anything is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from dlrpush import __version__
from dlrpush.api.schemas import (
    AccountIn,
    EndpointIn,
    EndpointPatch,
    MessageIn,
    Millis,
    ReplayIn,
    ReportIn,
)
from dlrpush.dispatcher import Dispatcher
from dlrpush.enrich import enrich
from dlrpush.errors import Conflict, DlrpushError, InvalidInput, NotFound, StoreUnavailable
from dlrpush.models import (
    Account,
    ApiKey,
    Credentials,
    Endpoint,
    IncomingReport,
    Message,
    ReportState,
)
from dlrpush.netguard import check_callback_url
from dlrpush.receipts import parse_receipt
from dlrpush.settings import Settings
from dlrpush.store.base import AttemptView, ReplayFilter, ReportFilter, ReportView, Store

log = logging.getLogger("dlrpush.api")

DbIdPath = Annotated[int, Path(ge=1, le=2**63 - 1)]

M = TypeVar("M", bound=BaseModel)

_MESSAGES = TypeAdapter(list[MessageIn])
_REPORTS = TypeAdapter(list[ReportIn])


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def error_response(status: int, message: str, field: str | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return json_response(body, status)


def _loc(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts)


_FRIENDLY = {"missing": "is required", "extra_forbidden": "is not a known field"}


def _validation_response(errors: Sequence[Any], prefix: str = "") -> Response:
    first = errors[0]
    field = prefix + _loc(first["loc"])
    msg = _FRIENDLY.get(first["type"]) or str(first["msg"]).removeprefix("Value error, ")
    detail = [
        {"loc": [str(p) for p in e["loc"]], "msg": str(e["msg"]), "type": e["type"]}
        for e in errors[:20]
    ]
    return json_response(
        {"error": f"{field}: {msg}" if field else msg, "field": field, "detail": detail}, 422
    )


def now_ms() -> int:
    import time

    return int(time.time() * 1000)


def endpoint_view(ep: Endpoint) -> dict[str, Any]:
    pswd = ep.credentials.pswd
    return {
        "id": ep.id,
        "account": ep.account_id,
        "url": ep.url,
        "protocol": ep.protocol,
        # The password is never echoed: only whether one is set.
        "credentials": {"receiver": ep.credentials.receiver, "pswd": "***" if pswd else ""},
        "batch_max": ep.batch_max,
        "retry_schedule_s": list(ep.retry_schedule_s),
        "timeout_s": ep.timeout_s,
        "max_in_flight": ep.max_in_flight,
        "enabled": ep.enabled,
        "description_lang": ep.description_lang,
        "success_body_contains": ep.success_body_contains,
        "created_ms": ep.created_ms,
    }


def report_view(r: ReportView) -> dict[str, Any]:
    return {
        "id": r.id,
        "msgid": r.msgid,
        "account": r.account,
        "status": r.status,
        "error_code": r.error_code,
        "description": r.description,
        "report_time_ms": r.report_time_ms,
        "received_ms": r.received_ms,
        "state": r.state.value,
        "attempts": r.attempts,
        "deliveries": [
            {
                "endpoint": d.endpoint_id,
                "state": d.state.value,
                "tries": d.tries,
                "next_attempt_ms": d.next_attempt_ms,
                "updated_ms": d.updated_ms,
            }
            for d in r.deliveries
        ],
    }


def attempt_view(a: AttemptView) -> dict[str, Any]:
    return {
        "id": a.id,
        "report_id": a.report_id,
        "endpoint": a.endpoint_id,
        "time_ms": a.started_ms,
        "http_status": a.http_status,
        "outcome": a.outcome.value,
        "latency_ms": a.latency_ms,
        "snippet": a.snippet,
    }


_SCHEMA_REF = "#/components/schemas/{model}"


def _array_body(name: str) -> dict[str, Any]:
    """The request body of an ingest route, whose array is parsed by hand for speed."""
    adapter = _MESSAGES if name == "messages" else _REPORTS
    schema = adapter.json_schema(ref_template=_SCHEMA_REF)
    schema.pop("$defs", None)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _with_ingest_schemas(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """``app.openapi`` that also publishes the item models the ingest bodies refer to."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = spec.setdefault("components", {}).setdefault("schemas", {})
            for adapter in (_MESSAGES, _REPORTS):
                defs = adapter.json_schema(ref_template=_SCHEMA_REF).get("$defs", {})
                components.update(defs)
            app.openapi_schema = spec
        return app.openapi_schema

    return openapi


def create_app(
    settings: Settings,
    store: Store,
    *,
    dispatcher: Dispatcher | None = None,
    manage_store: bool = True,
) -> FastAPI:
    """The ASGI app. With ``manage_store`` the app opens and closes the store (and starts
    and stops the dispatcher) in its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_store:
            await store.open()
            if dispatcher is not None:
                await dispatcher.start()
        try:
            yield
        finally:
            if manage_store:
                if dispatcher is not None:
                    await dispatcher.stop()
                await store.close()

    app = FastAPI(
        title="dlrpush",
        version=__version__,
        description="Push SMS status reports to customers' HTTP callbacks.",
        lifespan=lifespan,
    )

    async def principal(request: Request) -> Principal:
        """Who is calling: the operator (admin token) or one account (its API key)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if (
            settings.admin_token
            and token
            and hmac.compare_digest(token.encode(), settings.admin_token.encode())
        ):
            return OPERATOR
        if token.startswith(KEY_PREFIX):
            key = await store.find_api_key(hash_key(token))
            if key is not None:
                return Principal(account=key.account_id)
        if not settings.admin_token and not token:
            return OPERATOR  # no token configured: the API is open (local use)
        raise _Unauthorised()

    async def operator(who: Principal = Depends(principal)) -> None:
        if who.account is not None:
            raise _Forbidden("an account's API key can only read that account's reports")

    @app.exception_handler(_Unauthorised)
    async def _unauth(request: Request, exc: _Unauthorised) -> Response:
        resp = error_response(401, "missing or wrong bearer token (Authorization: Bearer …)")
        resp.headers["WWW-Authenticate"] = "Bearer"
        return resp

    @app.exception_handler(_Forbidden)
    async def _forbidden(request: Request, exc: _Forbidden) -> Response:
        return error_response(403, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return _validation_response(list(exc.errors()))

    @app.exception_handler(InvalidInput)
    async def _bad(request: Request, exc: InvalidInput) -> Response:
        return error_response(422, exc.message, exc.field)

    @app.exception_handler(NotFound)
    async def _missing(request: Request, exc: NotFound) -> Response:
        return error_response(404, str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> Response:
        return error_response(409, str(exc))

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(request: Request, exc: StoreUnavailable) -> Response:
        log.warning("store unavailable: %s", exc)
        return error_response(503, "the store is unavailable; nothing was stored; retry later")

    async def read_json(request: Request) -> Any:
        # BodyLimit has already bounded the size.
        try:
            return orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"body is not valid JSON: {exc}", "body") from None

    @app.exception_handler(_TooLarge)
    async def _too_large(request: Request, exc: _TooLarge) -> Response:
        return error_response(413, str(exc), "body")

    async def read_array(request: Request, adapter: TypeAdapter[list[M]]) -> list[M]:
        # The usual, valid body is parsed and validated in one pass (pydantic's own JSON
        # reader): half the time of parsing to Python objects and validating those.
        # Anything it rejects takes the path below, which says what is wrong in the
        # API's words (not JSON, not an array, too many items, which field).
        try:
            items = adapter.validate_json(await request.body())
        except ValidationError:
            pass
        else:
            if len(items) <= settings.max_items:
                return items
        data = await read_json(request)
        if not isinstance(data, list):
            raise InvalidInput("body must be a JSON array", "body")
        if len(data) > settings.max_items:
            raise _TooLarge(f"{len(data)} items; at most {settings.max_items} in one request")
        try:
            return adapter.validate_python(data)
        except ValidationError as exc:
            raise _ItemsInvalid(exc) from None

    @app.exception_handler(_ItemsInvalid)
    async def _items_invalid(request: Request, exc: _ItemsInvalid) -> Response:
        return _validation_response(exc.errors)

    def wake(endpoints: frozenset[int]) -> None:
        if dispatcher is not None and endpoints:
            dispatcher.wake(endpoints)

    v1: list[Any] = [Depends(operator)]
    app.openapi = _with_ingest_schemas(app)  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    # -- health -------------------------------------------------------------------------

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> Response:
        try:
            await asyncio.wait_for(store.ping(), 5.0)
        except (DlrpushError, TimeoutError) as exc:
            return json_response({"status": "unavailable", "store": str(exc) or "timeout"}, 503)
        body: dict[str, Any] = {"status": "ok", "store": "ok", "version": __version__}
        if dispatcher is not None:
            body["dispatcher"] = "ok" if dispatcher.healthy else "store unreachable"
        return json_response(body)

    @app.get("/v1/stats", tags=["operations"], dependencies=v1)
    async def stats() -> Response:
        body: dict[str, Any] = {"reports": await store.counts()}
        if dispatcher is not None:
            s = dispatcher.stats
            body["dispatcher"] = {
                "requests": s.requests,
                "delivered": s.delivered,
                "retried": s.retried,
                "failed": s.failed,
                "outcomes": s.by_outcome,
                # Deliveries queued for a push by a claim, and those leased by an
                # ingest in this process and pushed without one.
                "claimed": s.claimed,
                "from_ingest": s.from_ingest,
                "endpoints": {
                    str(ep_id): {"in_flight": r.inflight} for ep_id, r in dispatcher.runners.items()
                },
            }
        return json_response(body)

    # -- accounts and endpoints -----------------------------------------------------------

    @app.post("/v1/accounts", status_code=201, tags=["accounts"], dependencies=v1)
    async def create_account(body: AccountIn) -> Response:
        account = await store.create_account(
            Account(id=body.id, name=body.name or body.id, created_ms=now_ms())
        )
        return json_response(
            {
                "id": account.id,
                "name": account.name,
                "created_ms": account.created_ms,
                "endpoints": [],
            },
            201,
        )

    @app.get("/v1/accounts/{account_id}", tags=["accounts"], dependencies=v1)
    async def get_account(account_id: str) -> Response:
        account = await store.get_account(account_id)
        if account is None:
            raise NotFound(f"account {account_id!r} does not exist")
        endpoints = await store.list_endpoints(account_id)
        return json_response(
            {
                "id": account.id,
                "name": account.name,
                "created_ms": account.created_ms,
                "endpoints": [endpoint_view(e) for e in endpoints],
            }
        )

    @app.post("/v1/accounts/{account_id}/keys", status_code=201, tags=["accounts"], dependencies=v1)
    async def create_key(account_id: str) -> Response:
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = await store.create_api_key(
            account_id, secret[: len(KEY_PREFIX) + 6], hash_key(secret), now_ms()
        )
        # The only time the key is shown: only its hash is stored.
        return json_response({**key_view(key), "key": secret}, 201)

    @app.get("/v1/accounts/{account_id}/keys", tags=["accounts"], dependencies=v1)
    async def list_keys(account_id: str) -> Response:
        if await store.get_account(account_id) is None:
            raise NotFound(f"account {account_id!r} does not exist")
        return json_response([key_view(k) for k in await store.list_api_keys(account_id)])

    @app.delete("/v1/keys/{key_id}", status_code=204, tags=["accounts"], dependencies=v1)
    async def revoke_key(key_id: DbIdPath) -> Response:
        if not await store.revoke_api_key(key_id, now_ms()):
            raise NotFound(f"key {key_id} does not exist or is already revoked")
        return Response(status_code=204)

    async def check_url(url: str) -> None:
        await asyncio.to_thread(check_callback_url, url, settings.callback_allow)

    @app.post(
        "/v1/accounts/{account_id}/endpoints",
        status_code=201,
        tags=["endpoints"],
        dependencies=v1,
    )
    async def create_endpoint(account_id: str, body: EndpointIn) -> Response:
        if await store.get_account(account_id) is None:
            raise NotFound(f"account {account_id!r} does not exist")
        await check_url(body.url)
        creds = body.credentials or None
        endpoint = await store.create_endpoint(
            Endpoint(
                id=0,
                account_id=account_id,
                url=body.url,
                protocol=body.protocol,
                credentials=Credentials(creds.receiver, creds.pswd) if creds else Credentials(),
                batch_max=body.batch_max,
                retry_schedule_s=tuple(body.retry_schedule_s),
                timeout_s=body.timeout_s,
                max_in_flight=body.max_in_flight,
                enabled=body.enabled,
                description_lang=body.description_lang,
                success_body_contains=body.success_body_contains,
                created_ms=now_ms(),
            )
        )
        if dispatcher is not None:
            dispatcher.refresh()
        return json_response(endpoint_view(endpoint), 201)

    async def _endpoint(endpoint_id: int) -> Endpoint:
        ep = await store.get_endpoint(endpoint_id)
        if ep is None:
            raise NotFound(f"endpoint {endpoint_id} does not exist")
        return ep

    @app.get("/v1/endpoints/{endpoint_id}", tags=["endpoints"], dependencies=v1)
    async def get_endpoint(endpoint_id: DbIdPath) -> Response:
        return json_response(endpoint_view(await _endpoint(endpoint_id)))

    @app.patch("/v1/endpoints/{endpoint_id}", tags=["endpoints"], dependencies=v1)
    async def patch_endpoint(endpoint_id: DbIdPath, body: EndpointPatch) -> Response:
        ep = await _endpoint(endpoint_id)
        changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"credentials"})
        for key in [k for k, v in changes.items() if v is None and k != "success_body_contains"]:
            raise InvalidInput(f"{key} may not be null", key)
        if "url" in changes:
            await check_url(changes["url"])
        if "retry_schedule_s" in changes:
            changes["retry_schedule_s"] = tuple(changes["retry_schedule_s"])
        if "credentials" in body.model_fields_set:
            c = body.credentials
            changes["credentials"] = Credentials(c.receiver, c.pswd) if c else Credentials()
        updated = await store.update_endpoint(replace(ep, **changes))
        if dispatcher is not None:
            dispatcher.refresh()
        return json_response(endpoint_view(updated))

    @app.delete("/v1/endpoints/{endpoint_id}", status_code=204, tags=["endpoints"], dependencies=v1)
    async def delete_endpoint(endpoint_id: DbIdPath) -> Response:
        if not await store.delete_endpoint(endpoint_id, now_ms()):
            raise NotFound(f"endpoint {endpoint_id} does not exist")
        if dispatcher is not None:
            dispatcher.refresh()
        return Response(status_code=204)

    # -- ingest ---------------------------------------------------------------------------

    @app.post(
        "/v1/messages",
        status_code=202,
        tags=["ingest"],
        dependencies=v1,
        openapi_extra=_array_body("messages"),
    )
    async def add_messages(request: Request) -> Response:
        items = await read_array(request, _MESSAGES)
        missing = await store.missing_accounts({m.account for m in items})
        if missing:
            index = next(i for i, m in enumerate(items) if m.account in missing)
            raise InvalidInput(
                f"{index}.account: account {items[index].account!r} does not exist",
                f"{index}.account",
            )
        messages = [
            Message(
                msgid=m.msgid,
                account_id=m.account,
                phone=m.phone,
                segments=m.segments,
                uid=m.uid,
                batch_seq=m.batch_seq,
                request_time_ms=m.request_time_ms,
                unit_price=m.unit_price,
                currency=m.currency,
                access_number=m.access_number,
                mcc=m.mcc,
                mnc=m.mnc,
                operator=m.operator,
                enrichment=enrich(
                    m.phone,
                    default_region=settings.default_region,
                    mcc=m.mcc,
                    mnc=m.mnc,
                    operator=m.operator,
                ),
            )
            for m in items
        ]
        result = await store.add_messages(messages, now_ms())
        wake(result.endpoints)
        return json_response({"accepted": result.accepted, "matched_reports": result.matched}, 202)

    @app.post(
        "/v1/reports",
        status_code=202,
        tags=["ingest"],
        dependencies=v1,
        openapi_extra=_array_body("reports"),
    )
    async def add_reports(request: Request) -> Response:
        items = await read_array(request, _REPORTS)
        received = now_ms()
        reports = []
        for i, r in enumerate(items):
            if r.receipt is not None:
                try:
                    receipt = parse_receipt(r.receipt, tz=settings.receipt_tz)
                except InvalidInput as exc:
                    raise InvalidInput(f"{i}.receipt: {exc.message}", f"{i}.receipt") from None
                msgid = r.msgid or receipt.id
                status = r.status or receipt.stat
                for what, value, most in (
                    ("id", msgid, 64),
                    ("stat", status, 32),
                    ("err", receipt.err, 32),
                ):
                    if len(value) > most:
                        raise InvalidInput(
                            f"{i}.receipt: {what} is {len(value)} characters; at most {most}",
                            f"{i}.receipt",
                        )
                report_time = r.report_time_ms or receipt.done_date_ms or received
                error_code = r.error_code or receipt.err or None
            else:
                assert r.msgid is not None and r.status is not None
                msgid, status = r.msgid, r.status
                report_time = r.report_time_ms if r.report_time_ms is not None else received
                error_code = r.error_code
            reports.append(
                IncomingReport(
                    msgid=msgid,
                    status=status,
                    report_time_ms=report_time,
                    error_code=error_code,
                    description=r.description,
                    receipt=r.receipt,
                )
            )
        if dispatcher is None:
            result = await store.add_reports(reports, received, settings.hold_ms)
        else:
            # New work for an idle endpoint comes back leased and is pushed at once.
            result = await store.add_reports(reports, received, settings.hold_ms, dispatcher.offers)
            dispatcher.hand(result.leased, received)
        wake(result.endpoints)
        return json_response(
            {
                "accepted": result.accepted,
                "matched": result.matched,
                "held": result.accepted - result.matched,
            },
            202,
        )

    # -- pull, attempts, replay -------------------------------------------------------------

    @app.get("/v1/reports", tags=["reports"])
    async def list_reports(
        who: Principal = Depends(principal),
        account: str | None = None,
        msgid: str | None = None,
        state: ReportState | None = None,
        since_ms: Millis | None = None,
        until_ms: Millis | None = None,
        cursor: str | None = Query(default=None, pattern=r"^[0-9]{1,18}$"),
        limit: int = Query(default=100, ge=1, le=1000),
    ) -> Response:
        if who.account is not None:
            if account is not None and account != who.account:
                raise _Forbidden("an account's API key can only read that account's reports")
            account = who.account
        page = await store.list_reports(
            ReportFilter(account, msgid, state, since_ms, until_ms), cursor, limit
        )
        return json_response(
            {"items": [report_view(r) for r in page.items], "next_cursor": page.next_cursor}
        )

    async def visible_report(report_id: int, who: Principal) -> ReportView:
        report = await store.get_report(report_id)
        # Another account's report is "not found" to a key, not "forbidden": a key
        # learns nothing about what others have.
        if report is None or (who.account is not None and report.account != who.account):
            raise NotFound(f"report {report_id} does not exist")
        return report

    @app.get("/v1/reports/{report_id}", tags=["reports"])
    async def get_report(report_id: DbIdPath, who: Principal = Depends(principal)) -> Response:
        return json_response(report_view(await visible_report(report_id, who)))

    @app.get("/v1/reports/{report_id}/attempts", tags=["reports"])
    async def list_attempts(report_id: DbIdPath, who: Principal = Depends(principal)) -> Response:
        await visible_report(report_id, who)
        return json_response([attempt_view(a) for a in await store.list_attempts(report_id)])

    @app.post("/v1/replay", status_code=202, tags=["reports"], dependencies=v1)
    async def replay(body: ReplayIn) -> Response:
        if body.endpoint is not None and await store.get_endpoint(body.endpoint) is None:
            raise InvalidInput(f"endpoint {body.endpoint} does not exist", "endpoint")
        result = await store.replay(
            ReplayFilter(
                account=body.account,
                endpoint=body.endpoint,
                state=body.state,
                since_ms=body.since_ms,
                until_ms=body.until_ms,
                msgids=tuple(body.msgids) if body.msgids is not None else None,
            ),
            now_ms(),
        )
        wake(result.endpoints)
        return json_response({"queued": result.queued}, 202)

    return app


class _Unauthorised(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with a 413, counted as they stream in,
    so a client cannot make the service buffer an unbounded body on any route."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(send)
                return
        seen = 0
        started = False

        async def counting_receive() -> AsgiMessage:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(f"body over {self.max_bytes} bytes")
            return message

        async def tracking_send(message: AsgiMessage) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps({"error": f"body over {self.max_bytes} bytes", "field": "body"})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _Forbidden(Exception):
    pass


KEY_PREFIX = "dlrk_"


@dataclass(frozen=True, slots=True)
class Principal:
    account: str | None  # None: the operator, who may do everything


OPERATOR = Principal(account=None)


def hash_key(secret: str) -> str:
    # Keys are 256 random bits, so a plain SHA-256 is enough: there is nothing to
    # guess that a slow hash would protect.
    return hashlib.sha256(secret.encode()).hexdigest()


def key_view(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "account": key.account_id,
        "prefix": key.prefix,
        "created_ms": key.created_ms,
        "revoked_ms": key.revoked_ms,
    }


class _TooLarge(Exception):
    pass


class _ItemsInvalid(Exception):
    def __init__(self, exc: ValidationError) -> None:
        super().__init__(str(exc))
        self.errors = list(exc.errors())
