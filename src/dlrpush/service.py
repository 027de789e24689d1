"""Running the service: the store, the dispatcher and the API in one process.

The store is opened before the server binds, so a bad store URL is a plain error, and
the ready line is printed only once the socket accepts connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Iterator

import uvicorn

from dlrpush.api import create_app
from dlrpush.catalogue import DEFAULT_CATALOGUE, Catalogue
from dlrpush.dispatcher import Dispatcher
from dlrpush.errors import DlrpushError
from dlrpush.settings import Settings, redact_url
from dlrpush.store import open_store
from dlrpush.store.base import Store

log = logging.getLogger("dlrpush.service")


def load_catalogue(settings: Settings) -> Catalogue:
    return Catalogue.from_file(settings.catalogue) if settings.catalogue else DEFAULT_CATALOGUE


async def _open(settings: Settings) -> Store:
    store = open_store(settings.store, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        await store.open()
    except DlrpushError:
        raise
    except Exception as exc:
        raise DlrpushError(f"cannot open store {settings.store}: {exc}") from exc
    return store


# A stop signal repeated within this long is the same stop delivered twice (to the
# process group and again by a parent such as make or a supervisor passing it on).
SAME_STOP_S = 1.0


class _Server(uvicorn.Server):
    """uvicorn re-raises a captured SIGTERM once it has stopped serving, which would kill
    the process before the dispatcher records its in-flight pushes; the service handles
    the signals itself instead. A second stop signal forces the exit, unless it came
    right after the first."""

    _first_stop: float | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self) -> None:
        now = time.monotonic()
        if self._first_stop is None:
            self._first_stop = now
        elif now - self._first_stop >= SAME_STOP_S:
            self.force_exit = True
        self.should_exit = True


async def run_service(settings: Settings) -> None:
    catalogue = load_catalogue(settings)
    store = await _open(settings)
    dispatcher = (
        Dispatcher(store=store, settings=settings, catalogue=catalogue, beside_api=True)
        if settings.dispatch
        else None
    )
    try:
        if dispatcher is not None:
            await dispatcher.start()
        app = create_app(settings, store, dispatcher=dispatcher, manage_store=False)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            loop="asyncio",
            timeout_graceful_shutdown=10,
        )
        server = _Server(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.request_exit)
        serving = asyncio.create_task(server.serve())
        # uvicorn exposes no "started" event, only the flag.
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1]
            mode = "API and dispatcher" if dispatcher is not None else "API only"
            where = f"http://{settings.host}:{port}"
            shown = redact_url(settings.store)
            print(f"dlrpush ready on {where} ({mode}, store {shown})", flush=True)
        await serving
        if not server.started:
            raise DlrpushError(f"cannot listen on {settings.host}:{settings.port}")
    finally:
        if dispatcher is not None:
            await dispatcher.stop()
        await store.close()


async def run_worker(settings: Settings) -> None:
    catalogue = load_catalogue(settings)
    store = await _open(settings)
    dispatcher = Dispatcher(store=store, settings=settings, catalogue=catalogue)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await dispatcher.start()
        print(f"dlrpush worker running (store {redact_url(settings.store)})", flush=True)
        await stop.wait()
        print("dlrpush worker stopping: finishing in-flight pushes", file=sys.stderr, flush=True)
    finally:
        await dispatcher.stop()
        await store.close()
