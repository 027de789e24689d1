"""The push client against real servers on loopback: what goes on the wire, what comes
back, which connections are reused, and every way an answer can go wrong."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trustme
import uvloop
from aiohttp import web

from dlrpush.netguard import BlockedDestination, Network
from dlrpush.pushclient import PushClient, ResponseError

LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"),)
JSON = "application/json; charset=utf-8"

# A scripted server gets each connection's reader and writer and does what it likes.
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    """One request: its request line, headers (lower-case names) and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    line, *fields = head[:-4].split(b"\r\n")
    headers = {}
    for f in fields:
        name, _, value = f.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line, headers, body


@asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[tuple[int, list[int]]]:
    """A raw TCP server running ``script`` per connection; yields its port and a list
    that grows by one entry per accepted connection."""
    accepted: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            await script(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, accepted
    finally:
        server.close()


def answer_once(raw: bytes, *, then_close: bool) -> Script:
    """A script that reads one request and writes ``raw``; then it closes the connection
    or waits for the client to."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()
        if not then_close:
            await reader.read()

    return script


async def post_once(port: int, body: bytes = b"{}") -> tuple[int, bytes]:
    """One POST from a fresh client to ``port`` on loopback."""
    client = PushClient(LOOPBACK)
    try:
        return await client.post(client.target(f"http://127.0.0.1:{port}/"), body, JSON, 5)
    finally:
        await client.close()


@asynccontextmanager
async def aiohttp_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_post("/{path:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def ok_json(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"code": 0, "echo": len(body)})


async def test_one_connection_carries_many_pushes_and_the_wire_is_as_expected() -> None:
    seen: list[tuple[bytes, dict[str, str], bytes]] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"code":0}\n')
            await writer.drain()

    async with scripted(script) as (port, accepted):
        client = PushClient(LOOPBACK, user_agent="dlrpush-test")
        target = client.target(f"http://127.0.0.1:{port}/dlr/in?key=a%20b#frag")
        for n in range(20):
            status, body = await client.post(target, b'{"n":%d}' % n, JSON, 5)
            assert (status, body) == (200, b'{"code":0}\n')
        await client.close()
    assert len(accepted) == 1
    assert client.connections_made == 1
    line, headers, body = seen[-1]
    assert line == b"POST /dlr/in?key=a%20b HTTP/1.1"
    assert headers["host"] == f"127.0.0.1:{port}"
    assert headers["user-agent"] == "dlrpush-test"
    assert headers["content-type"] == JSON
    assert body == b'{"n":19}'


async def test_concurrent_pushes_each_get_their_own_answer() -> None:
    async with aiohttp_server(ok_json) as port:
        client = PushClient(LOOPBACK)
        target = client.target(f"http://127.0.0.1:{port}/")
        bodies = [b"x" * n for n in range(1, 41)]
        answers = await asyncio.gather(*(client.post(target, b, JSON, 5) for b in bodies))
        await client.close()
    assert [a[0] for a in answers] == [200] * 40
    assert [a[1] for a in answers] == [b'{"code": 0, "echo": %d}' % len(b) for b in bodies]
    assert client.connections_made <= 40


async def test_chunked_and_close_delimited_answers_are_read_whole() -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(status=200)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b'{"code"', b": 0", b"}"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async with aiohttp_server(chunked) as port:
        client = PushClient(LOOPBACK)
        target = client.target(f"http://127.0.0.1:{port}/")
        assert await client.post(target, b"{}", JSON, 5) == (200, b'{"code": 0}')
        assert await client.post(target, b"{}", JSON, 5) == (200, b'{"code": 0}')
        assert client.connections_made == 1
        await client.close()

    close_delimited = answer_once(
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nSUCCESS", then_close=True
    )
    async with scripted(close_delimited) as (port, accepted):
        client = PushClient(LOOPBACK)
        target = client.target(f"http://127.0.0.1:{port}/")
        assert await client.post(target, b"{}", JSON, 5) == (200, b"SUCCESS")
        assert await client.post(target, b"{}", JSON, 5) == (200, b"SUCCESS")
        await client.close()
    assert len(accepted) == 2  # an answer ended by closing cannot leave the connection open


async def test_an_interim_100_answer_is_skipped() -> None:
    interim_then_final = answer_once(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        then_close=False,
    )
    async with scripted(interim_then_final) as (port, _):
        assert await post_once(port, b"") == (201, b"ok")


async def test_a_huge_answer_is_cut_at_the_cap_and_its_connection_dropped() -> None:
    big = b"A" * 300_000

    async def huge(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=big)

    async with aiohttp_server(huge) as port:
        client = PushClient(LOOPBACK, read_cap=1000)
        target = client.target(f"http://127.0.0.1:{port}/")
        status, body = await client.post(target, b"{}", JSON, 5)
        assert (status, body) == (200, big[:1000])
        await client.post(target, b"{}", JSON, 5)
        assert client.connections_made == 2
        await client.close()

    async def exactly_the_cap(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=big[:1000])

    async with aiohttp_server(exactly_the_cap) as port:
        client = PushClient(LOOPBACK, read_cap=1000)
        target = client.target(f"http://127.0.0.1:{port}/")
        for _ in range(3):
            assert await client.post(target, b"{}", JSON, 5) == (200, big[:1000])
        assert client.connections_made == 1
        await client.close()


async def test_a_receiver_that_never_answers_times_out_on_time() -> None:
    hang = answer_once(b"", then_close=False)  # until the client gives up and closes
    async with scripted(hang) as (port, accepted):
        client = PushClient(LOOPBACK)
        target = client.target(f"http://127.0.0.1:{port}/")
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.post(target, b"{}", JSON, 0.3)
        assert 0.25 < time.monotonic() - t0 < 2.0
        # The timed-out connection is not reused: its answer may still come.
        with pytest.raises(TimeoutError):
            await client.post(target, b"{}", JSON, 0.1)
        await client.close()
    assert len(accepted) == 2


async def test_an_idle_connection_closed_under_a_request_is_retried_once_on_a_fresh_one() -> None:
    requests: list[bytes] = []

    async def one_answer_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # Answers keep-alive, then drops the connection when the next request comes in,
        # the way a receiver whose idle timeout fires as the request arrives does.
        _, _, body = await read_request(reader)
        requests.append(body)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        _, _, body = await read_request(reader)
        requests.append(body)

    async with scripted(one_answer_per_connection) as (port, accepted):
        client = PushClient(LOOPBACK)
        target = client.target(f"http://127.0.0.1:{port}/")
        assert await client.post(target, b"1", JSON, 5) == (200, b"ok")
        assert await client.post(target, b"2", JSON, 5) == (200, b"ok")
        await client.close()
    assert requests == [b"1", b"2", b"2"]
    assert len(accepted) == 2


async def test_a_fresh_connection_closed_without_an_answer_is_an_error() -> None:
    async with scripted(answer_once(b"", then_close=True)) as (port, accepted):
        with pytest.raises(ConnectionResetError, match="without answering"):
            await post_once(port)
    assert len(accepted) == 1  # not retried: the receiver may have acted on it


async def test_an_answer_that_is_not_http_is_an_error() -> None:
    async with scripted(answer_once(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", then_close=False)) as (
        port,
        _,
    ):
        with pytest.raises(ResponseError, match="not a valid HTTP answer"):
            await post_once(port)


async def test_an_extra_answer_in_the_same_read_keeps_the_connection_out_of_the_pool() -> None:
    async def one_too_many(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        # The answer, and the head of another nobody asked for, in one segment.
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n"
        )
        await writer.drain()
        await read_request(reader)
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 7\r\n\r\nsecond!")
        await writer.drain()
        await reader.read()

    async with scripted(one_too_many) as (port, accepted):
        client = PushClient(LOOPBACK)
        target = client.target(f"http://127.0.0.1:{port}/")
        assert await client.post(target, b"1", JSON, 5) == (200, b"ok")
        # Reusing that connection would read the 201 as the stray answer's body.
        assert await client.post(target, b"2", JSON, 5) == (200, b"ok")
        await client.close()
    assert len(accepted) == 2


async def test_a_body_cut_short_by_a_close_is_an_error_not_an_answer() -> None:
    cut = answer_once(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"code":0', then_close=True)
    async with scripted(cut) as (port, _):
        with pytest.raises(ConnectionResetError, match="in the middle of its answer"):
            await post_once(port)


async def test_a_protocol_switch_is_not_an_answer() -> None:
    upgrade = answer_once(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        then_close=False,
    )
    async with scripted(upgrade) as (port, _):
        with pytest.raises(ResponseError):
            await post_once(port)


async def test_refused_connections_raise_the_network_error() -> None:
    async with scripted(answer_once(b"", then_close=True)) as (port, _):
        pass  # closed: nothing listens on the port any more
    with pytest.raises(ConnectionRefusedError):
        await post_once(port)


async def test_the_guard_refuses_literal_and_resolved_addresses_outside_the_allowed_ranges() -> (
    None
):
    async with aiohttp_server(ok_json) as port:
        client = PushClient(())  # nothing on loopback is allowed
        literal = client.target(f"http://127.0.0.1:{port}/")
        assert "not an allowed callback destination" in literal.blocked
        with pytest.raises(BlockedDestination):
            await client.post(literal, b"{}", JSON, 5)
        named = client.target(f"http://localhost:{port}/")
        assert named.blocked == ""  # a name is judged by what it resolves to, when connecting
        with pytest.raises(BlockedDestination, match="localhost resolves only to"):
            await client.post(named, b"{}", JSON, 5)
        assert client.connections_made == 0
        allowed = PushClient(LOOPBACK)
        assert (await allowed.post(allowed.target(f"http://localhost:{port}/"), b"{}", JSON, 5))[
            0
        ] == 200
        await allowed.close()


async def test_https_with_the_receivers_certificate_checked() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    async with aiohttp_server(ok_json, ssl_context=server_ctx) as port:
        trusting = ssl.create_default_context()
        ca.configure_trust(trusting)
        client = PushClient(LOOPBACK, ssl_context=trusting)
        target = client.target(f"https://localhost:{port}/dlr")
        assert await client.post(target, b"abc", JSON, 5) == (200, b'{"code": 0, "echo": 3}')
        assert await client.post(target, b"abcd", JSON, 5) == (200, b'{"code": 0, "echo": 4}')
        assert client.connections_made == 1
        await client.close()
        # A certificate nobody vouches for is refused.
        strict = PushClient(LOOPBACK)
        with pytest.raises(ssl.SSLCertVerificationError):
            await strict.post(strict.target(f"https://localhost:{port}/dlr"), b"", JSON, 5)
        await strict.close()


async def test_idle_connections_are_closed_after_the_keepalive() -> None:
    closed = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        assert await reader.read() == b""  # the client's close
        closed.set()

    async with scripted(script) as (port, _):
        client = PushClient(LOOPBACK, keepalive_s=0.1)
        await client.post(client.target(f"http://127.0.0.1:{port}/"), b"", JSON, 5)
        await asyncio.wait_for(closed.wait(), 5)
        await client.close()


@pytest.mark.parametrize(
    ("url", "problem"),
    [("ftp://127.0.0.1/", "not a usable callback URL"), ("http:///nohost", "not a usable")],
)
def test_unusable_urls_are_refused_with_a_reason(url: str, problem: str) -> None:
    assert problem in PushClient(LOOPBACK).target(url).blocked


_ON_THE_STDLIB_LOOP = [
    case
    for name, case in list(globals().items())
    if name.startswith("test_") and asyncio.iscoroutinefunction(case)
]


@pytest.mark.parametrize("case", _ON_THE_STDLIB_LOOP, ids=lambda case: case.__name__)
def test_the_same_on_uvloop(case: Callable[[], Awaitable[None]]) -> None:
    """The commands run on uvloop, whose transports differ from the stdlib's."""

    async def run() -> None:
        await case()

    uvloop.run(run())
