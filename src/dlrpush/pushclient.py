"""The push client: HTTP/1.1 POSTs to customers over kept-alive connections.

It owns the dispatcher's side of the wire. It resolves a callback's host through the SSRF
guard on every new connection and speaks TLS for ``https``. It writes one request at a
time per connection and reads the answer with httptools (llhttp, the parser under uvicorn
and Node.js), within one total timeout, keeping at most ``read_cap`` bytes of a body. Idle
connections are reused per origin and closed after ``keepalive_s``. Redirects, cookies,
proxies and compression have no place in a push, so there are none. A push is the hot
loop: this client spends about a quarter of the CPU per request of aiohttp's general
client (docs/benchmarks.md, the `innopaas` paragraph and "Changes measured").
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, cast

import httptools
import yarl

from dlrpush.netguard import BlockedDestination, Network, address_allowed, literal_address

KEEPALIVE_S: Final = 30.0
READ_CAP: Final = 64 * 1024

_Key = tuple[str, int, bool]
_Answer = tuple[int, bytes, bool]  # status, body (capped), whether the connection is reusable


class ResponseError(Exception):
    """The receiver's answer is not HTTP/1.x."""


class _Lost(ConnectionResetError):
    """The connection closed before the answer ended."""

    def __init__(self, answered: bool) -> None:
        super().__init__(
            "the receiver closed the connection"
            + (" in the middle of its answer" if answered else " without answering")
        )
        self.answered = answered


@dataclass(frozen=True, slots=True)
class Target:
    """A callback URL parsed once into what every push to it needs."""

    url: str
    host: str  # ASCII (IDNA) host or address, no brackets
    port: int
    tls: bool
    literal: bool  # the host is an IP address: nothing to resolve
    head: bytes  # request line and the headers that never change
    blocked: str  # why pushes to it are refused, or ""

    @property
    def key(self) -> _Key:
        return (self.host, self.port, self.tls)

    @classmethod
    def of(cls, url: str, allow: Sequence[Network], user_agent: str) -> Target:
        try:
            parsed = yarl.URL(url)
            host = parsed.raw_host or ""
            port = parsed.port
            if parsed.scheme not in ("http", "https") or not host or not port:
                raise ValueError("not an http(s) URL with a host")
            authority = f"[{host}]" if ":" in host else host
            if not parsed.is_default_port():
                authority = f"{authority}:{port}"
            head = (
                f"POST {parsed.raw_path_qs or '/'} HTTP/1.1\r\n"
                f"Host: {authority}\r\nUser-Agent: {user_agent}\r\n"
            ).encode("ascii")
        except (ValueError, UnicodeError) as exc:
            return cls(url, "", 0, False, True, b"", f"not a usable callback URL: {exc}")
        literal = literal_address(host)
        blocked = ""
        # Names are checked at connect time, on what they resolve to then.
        if literal is not None and not address_allowed(literal, allow):
            blocked = f"{literal} is not an allowed callback destination"
        return cls(url, host, port, parsed.scheme == "https", literal is not None, head, blocked)


class _Connection(asyncio.Protocol):
    """One connection to one origin, carrying one exchange at a time."""

    def __init__(self, client: PushClient, key: _Key) -> None:
        self._client = client
        self.key = key
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[_Answer] | None = None
        self._status = 0
        self._chunks: list[bytes] = []
        self._size = 0
        self._answered = False
        self._delimited = False  # the answer says where its body ends (length or chunked)

    def begin(self, waiter: asyncio.Future[_Answer], request: bytes) -> None:
        assert self.transport is not None
        self._waiter = waiter
        self._status = 0
        self._chunks = []
        self._size = 0
        self._answered = False
        self._delimited = False
        self.transport.write(request)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not isinstance: uvloop's transports implement the interface without the class.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._client._forget(self)
        if self._waiter is None:
            return
        if self._status >= 200 and not self._delimited:
            # An answer that gives neither a length nor chunks ends where the connection does.
            self._finish(False)
        else:
            # Cut short: a verdict on part of a body could mistake it for a whole one.
            self._fail(_Lost(self._answered))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes nobody asked for: the stream is out of step and cannot be reused.
            self.abort()
            return
        self._answered = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(ResponseError(f"not a valid HTTP answer: {exc}"))
            self.abort()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._waiter is None:
            # Another answer follows the one we asked for in the same read: the stream is
            # out of step and the connection must not go back to the pool.
            self.abort()

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) in (14, 17) and name.lower() in (b"content-length", b"transfer-encoding"):
            self._delimited = True

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self._waiter is None:
            return
        room = self._client.read_cap - self._size
        self._chunks.append(body[:room] if len(body) > room else body)
        self._size += len(body)
        if self._size > self._client.read_cap:
            # Enough to judge by; the rest is not worth reading, nor the connection keeping.
            self._finish(False)
            self.abort()

    def on_message_complete(self) -> None:
        if self._waiter is None:
            return
        if 100 <= self._status < 200:
            self._status = 0  # an interim answer: the real one follows
            return
        self._finish(self._parser.should_keep_alive())

    # -- ending an exchange -------------------------------------------------------------

    def _finish(self, reusable: bool) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
            waiter.set_result((self._status, body, reusable))
        self._chunks = []

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class PushClient:
    """POSTs bodies to targets; connections are pooled per (host, port, TLS)."""

    def __init__(
        self,
        allow: Sequence[Network],
        *,
        user_agent: str = "dlrpush",
        read_cap: int = READ_CAP,
        keepalive_s: float = KEEPALIVE_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._allow = tuple(allow)
        self._user_agent = user_agent
        self.read_cap = read_cap
        self._keepalive_s = keepalive_s
        self._ssl = ssl_context
        self._targets: dict[str, Target] = {}
        self._idle: dict[_Key, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self.connections_made = 0

    def target(self, url: str) -> Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) > 10_000:
                self._targets.clear()  # endpoints come and go; keep the cache bounded
            target = self._targets[url] = Target.of(url, self._allow, self._user_agent)
        return target

    async def post(
        self, target: Target, body: bytes, content_type: str, timeout_s: float
    ) -> tuple[int, bytes]:
        """POST ``body``; the status and up to ``read_cap`` bytes of the answer's body.

        Raises ``TimeoutError`` past ``timeout_s`` (connecting included),
        ``BlockedDestination`` when the guard refuses every address, ``ResponseError``
        for an answer that is not HTTP, and ``OSError`` for the network's failures."""
        if target.blocked:
            raise BlockedDestination(target.blocked)
        request = b"%bContent-Type: %b\r\nContent-Length: %d\r\n\r\n%b" % (
            target.head,
            content_type.encode("latin-1"),
            len(body),
            body,
        )
        async with asyncio.timeout(timeout_s):
            conn = self._take_idle(target.key)
            if conn is not None:
                answer = await self._exchange(conn, request, reused=True)
                if answer is not None:
                    return answer
            conn = await self._connect(target)
            answer = await self._exchange(conn, request, reused=False)
            assert answer is not None
            return answer

    async def close(self) -> None:
        for conn in list(self._open):
            conn.abort()
        self._open.clear()
        self._idle.clear()

    # -- connections --------------------------------------------------------------------

    async def _exchange(
        self, conn: _Connection, request: bytes, *, reused: bool
    ) -> tuple[int, bytes] | None:
        waiter: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        try:
            conn.begin(waiter, request)
            status, body, reusable = await waiter
        except _Lost as exc:
            if reused and not exc.answered:
                # The receiver closed the idle connection as this request went out (its
                # keep-alive ran out first): it never saw the request. Once more, fresh.
                return None
            raise
        except BaseException:
            conn.abort()  # timed out or cancelled mid-exchange: the stream is unusable
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # failed as the timeout struck: seen, not to be logged
            raise
        transport = conn.transport
        if reusable and not conn.closed and transport is not None and not transport.is_closing():
            self._park(conn)
        else:
            conn.close()
        return status, body

    def _take_idle(self, key: _Key) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.idle_timer is not None:
                conn.idle_timer.cancel()
                conn.idle_timer = None
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    def _park(self, conn: _Connection) -> None:
        conn.idle_timer = asyncio.get_running_loop().call_later(self._keepalive_s, conn.close)
        self._idle.setdefault(conn.key, []).append(conn)

    def _forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        if conn.idle_timer is not None:
            conn.idle_timer.cancel()
            conn.idle_timer = None
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    async def _addresses(self, target: Target) -> list[str]:
        if target.literal:
            return [target.host]
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed = [a for a in found if address_allowed(a, self._allow)]
        if not allowed:
            raise BlockedDestination(
                f"{target.host} resolves only to addresses callbacks may not reach"
            )
        return allowed

    async def _connect(self, target: Target) -> _Connection:
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if target.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        error: OSError | None = None
        for address in await self._addresses(target):
            try:
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, target.key),
                    address,
                    target.port,
                    ssl=tls,
                    server_hostname=target.host if tls else None,
                )
            except OSError as exc:
                error = exc
                continue
            self._open.add(conn)
            self.connections_made += 1
            return conn
        assert error is not None
        raise error
