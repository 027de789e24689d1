"""Helpers for users' own tests: a real receiver on loopback that records what it got.

This module owns ``RecordingReceiver``, the bundled receiver started in-process on a free
loopback port for the length of an ``async with`` block, with its records exposed as typed
``StatusReport`` values so a test can push to ``r.url`` and assert on what arrived.
"""

from __future__ import annotations

from types import TracebackType

from aiohttp import web

from dlrpush.receiver import StatusReport
from dlrpush.receiver.server import (
    RECEIVER_STATE,
    Received,
    ReceiverOptions,
    ReceiverState,
    start_receiver,
    url_host,
)

__all__ = ["RecordingReceiver"]


class RecordingReceiver:
    """The bundled receiver, in-process, for one test.

    ``async with RecordingReceiver("ucloud", fail_first=3) as r:`` then push to ``r.url``;
    ``r.reports`` are the reports it accepted, ``r.requests`` counts every push request.
    Options are those of ``ReceiverOptions``; the port is always a free one and per-report
    printing is off unless ``quiet=False``.
    """

    def __init__(
        self,
        protocol: str,
        *,
        fail_rate: float = 0.0,
        fail_first: int = 0,
        fail_with: str = "status",
        fail_status: int = 500,
        reject_code: int = 1,
        delay_ms: float = 0,
        code: int = 0,
        loose_reply: bool = False,
        seed: int | None = None,
        log_path: str | None = None,
        quiet: bool = True,
        host: str = "127.0.0.1",
        path: str = "/",
    ) -> None:
        self.options = ReceiverOptions(
            protocol=protocol,
            host=host,
            port=0,
            fail_rate=fail_rate,
            fail_first=fail_first,
            fail_with=fail_with,
            fail_status=fail_status,
            reject_code=reject_code,
            delay_ms=delay_ms,
            code=code,
            loose_reply=loose_reply,
            log_path=log_path,
            keep=True,  # the records are the point of this class
            quiet=quiet,
            seed=seed,
        )
        self._path = path if path.startswith("/") else "/" + path
        self._runner: web.AppRunner | None = None
        self._state: ReceiverState | None = None
        self._port = 0

    async def __aenter__(self) -> RecordingReceiver:
        runner, port = await start_receiver(self.options)
        self._runner = runner
        self._state = runner.app[RECEIVER_STATE]
        self._port = port
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def port(self) -> int:
        self._started()
        return self._port

    @property
    def url(self) -> str:
        """Where to push, e.g. ``http://127.0.0.1:41234/``."""
        self._started()
        return f"http://{url_host(self.options.host)}:{self._port}{self._path}"

    @property
    def reports(self) -> list[StatusReport]:
        """Reports the receiver accepted, in arrival order (a fresh list each time)."""
        return self._started().accepted_reports()

    @property
    def received(self) -> list[Received]:
        """Every report received, accepted or not, with the request number and answer."""
        return list(self._started().items)

    @property
    def requests(self) -> int:
        """Push requests received, well-formed or not."""
        return self._started().requests

    @property
    def stats(self) -> dict[str, int]:
        """Counts: requests, reports, accepted, rejected, bad (malformed requests)."""
        return self._started().stats()

    async def wait_for(self, n_reports: int, timeout_s: float = 5.0) -> list[StatusReport]:
        """Wait until ``n_reports`` reports were accepted and return the accepted reports.

        Raises TimeoutError, saying how many arrived, when they do not within ``timeout_s``.
        """
        state = self._started()
        await state.wait_for_accepted(n_reports, timeout_s)
        return state.accepted_reports()

    def reset(self) -> None:
        """Forget everything received; ``fail_first`` and seeded failures start over."""
        self._started().reset()

    def _started(self) -> ReceiverState:
        if self._state is None:
            raise RuntimeError("RecordingReceiver is used outside its 'async with' block")
        return self._state
