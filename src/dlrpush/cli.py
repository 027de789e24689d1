"""The ``dlrpush`` command line: serve, worker, receiver, demo, replay, migrate, stats.

Every command reads settings once (flags over ``DLRPUSH_*`` env over an optional TOML
file), prints the cause of an error in one plain line and exits non-zero; no traceback
reaches a user for a mistake of theirs.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from dlrpush import __version__, eventloop
from dlrpush.errors import DlrpushError
from dlrpush.logs import setup_logging
from dlrpush.models import ReportState
from dlrpush.receiver.command import receiver_command
from dlrpush.settings import Settings, env_name, load_settings, redact_url
from dlrpush.store import open_store
from dlrpush.store.base import ReplayFilter

T = TypeVar("T")
log = logging.getLogger("dlrpush")


def _settings(config: str | None, **overrides: Any) -> Settings:
    try:
        return load_settings(os.environ, config_file=config, overrides=overrides)
    except DlrpushError as exc:
        raise click.ClickException(str(exc)) from None


def _run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return eventloop.run(coro_fn())
    except DlrpushError as exc:
        raise click.ClickException(str(exc)) from None


def _store_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--store",
        default=None,
        help=f"Store URL, sqlite:///path.db or postgresql://… [env {env_name('store')}]",
    )(fn)


def _config_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        type=click.Path(dir_okay=False),
        default=None,
        envvar="DLRPUSH_CONFIG",
        help="TOML file of settings (same names as the env variables, lower case, no prefix).",
    )(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dlrpush")
def main() -> None:
    """dlrpush: push SMS status reports to customers' HTTP callbacks."""


main.add_command(receiver_command)


@main.command()
@click.option("--host", default=None, help=f"Address to listen on [env {env_name('host')}]")
@click.option(
    "--port", type=int, default=None, help=f"Port; 0 picks a free one [env {env_name('port')}]"
)
@_store_option
@_config_option
@click.option(
    "--no-dispatch",
    is_flag=True,
    default=False,
    help="Serve the API only; run `dlrpush worker` processes to push.",
)
@click.option(
    "--log-level", default=None, help=f"DEBUG, INFO, WARNING [env {env_name('log_level')}]"
)
def serve(
    host: str | None,
    port: int | None,
    store: str | None,
    config: str | None,
    no_dispatch: bool,
    log_level: str | None,
) -> None:
    """Run the HTTP API and the dispatcher (SQLite file by default)."""
    settings = _settings(
        config,
        host=host,
        port=port,
        store=store,
        log_level=log_level,
        dispatch=False if no_dispatch else None,
    )
    from dlrpush.service import run_service

    setup_logging(settings)
    _run(lambda: run_service(settings))


@main.command()
@_store_option
@_config_option
@click.option(
    "--log-level", default=None, help=f"DEBUG, INFO, WARNING [env {env_name('log_level')}]"
)
def worker(store: str | None, config: str | None, log_level: str | None) -> None:
    """Run the dispatcher only (no HTTP API)."""
    settings = _settings(config, store=store, log_level=log_level)
    from dlrpush.service import run_worker

    setup_logging(settings)
    _run(lambda: run_worker(settings))


@main.command()
@_store_option
@_config_option
def migrate(store: str | None, config: str | None) -> None:
    """Create or upgrade the store's schema, then exit."""
    settings = _settings(config, store=store)

    async def go() -> None:
        st = open_store(settings.store, sqlite_synchronous=settings.sqlite_synchronous)
        await st.open()
        await st.close()

    _run(go)
    click.echo(f"schema of {redact_url(settings.store)} is up to date")


@main.command()
@_store_option
@_config_option
def stats(store: str | None, config: str | None) -> None:
    """Print how many reports are in each state."""
    settings = _settings(config, store=store)

    async def go() -> dict[str, int]:
        st = open_store(
            settings.store, sqlite_synchronous=settings.sqlite_synchronous, create=False
        )
        await st.open()
        try:
            return await st.counts()
        finally:
            await st.close()

    counts = _run(go)
    for state, n in counts.items():
        click.echo(f"{state:10} {n}")


@main.command()
@_store_option
@_config_option
@click.option("--account", default=None, help="Only this account's reports.")
@click.option("--endpoint", type=int, default=None, help="Only deliveries to this endpoint.")
@click.option(
    "--state",
    type=click.Choice(
        [ReportState.FAILED.value, ReportState.DELIVERED.value, ReportState.PENDING.value]
    ),
    default=None,
    help="Deliveries in this state (default: failed; any state when --msgid is given).",
)
@click.option("--msgid", "msgids", multiple=True, help="Only these msgids (repeat the option).")
@click.option("--since-ms", type=int, default=None, help="Reports received at or after (epoch ms).")
@click.option("--until-ms", type=int, default=None, help="Reports received before (epoch ms).")
def replay(
    store: str | None,
    config: str | None,
    account: str | None,
    endpoint: int | None,
    state: str | None,
    msgids: tuple[str, ...],
    since_ms: int | None,
    until_ms: int | None,
) -> None:
    """Push reports again: they go back to pending, with a fresh retry schedule.

    Works on the store directly, with or without a running service; a running
    dispatcher picks the work up within its poll interval.
    """
    settings = _settings(config, store=store)
    from dlrpush.api.app import now_ms

    async def go() -> int:
        st = open_store(
            settings.store, sqlite_synchronous=settings.sqlite_synchronous, create=False
        )
        await st.open()
        try:
            if endpoint is not None and await st.get_endpoint(endpoint) is None:
                raise DlrpushError(f"endpoint {endpoint} does not exist")
            result = await st.replay(
                ReplayFilter(
                    account=account,
                    endpoint=endpoint,
                    state=ReportState(state) if state else None,
                    since_ms=since_ms,
                    until_ms=until_ms,
                    msgids=msgids or None,
                ),
                now_ms(),
            )
            return result.queued
        finally:
            await st.close()

    queued = _run(go)
    click.echo(f"queued {queued} reports for another push")


@main.command()
@click.option("--reports", type=int, default=12, show_default=True, help="Reports per customer.")
@click.option("--keep", is_flag=True, help="Keep the demo's database and print its path.")
def demo(reports: int, keep: bool) -> None:
    """Start a service and three receivers, send traffic, and show what happened."""
    from dlrpush.demo import run_demo

    ok = run_demo(reports=reports, keep=keep, out=sys.stdout)
    if not ok:
        raise SystemExit(1)
