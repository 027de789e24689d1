"""The ``dlrpush receiver`` command: run the bundled receiver from a shell.

It owns only the command line: one flag per ``ReceiverOptions`` field, range checks done
by click so a bad value exits non-zero with a message naming the flag, and the hand-off
to ``run_receiver``.
"""

from __future__ import annotations

import click

from dlrpush.errors import ConfigError
from dlrpush.receiver import PROTOCOLS
from dlrpush.receiver.server import FAIL_MODES, ReceiverOptions, run_receiver

__all__ = ["receiver_command"]


@click.command(name="receiver")
@click.option(
    "--protocol",
    required=True,
    type=click.Choice(PROTOCOLS),
    help="Wire format to accept: ucloud (batches) or innopaas (one report a request).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=9000,
    show_default=True,
    help="Port to listen on; 0 picks a free one (the ready line shows which).",
)
@click.option(
    "--fail-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Share of requests to fail at random (see --seed).",
)
@click.option(
    "--fail-first",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Fail the first N requests, then succeed.",
)
@click.option(
    "--fail-with",
    type=click.Choice(FAIL_MODES),
    default="status",
    show_default=True,
    help=(
        "How a failure looks: status = HTTP --fail-status; code = HTTP 200 with"
        " --reject-code; hang = never answer; reset = drop the connection."
    ),
)
@click.option(
    "--fail-status",
    type=click.IntRange(300, 599),
    default=500,
    show_default=True,
    help="HTTP status of a --fail-with status failure.",
)
@click.option(
    "--reject-code",
    type=int,
    default=1,
    show_default=True,
    help="Non-zero code of a --fail-with code failure.",
)
@click.option(
    "--delay-ms",
    type=click.FloatRange(min=0.0),
    default=0.0,
    show_default=True,
    help="Delay every answer by this many milliseconds.",
)
@click.option(
    "--code",
    type=int,
    default=0,
    show_default=True,
    help="When non-zero, answer every push HTTP 200 with this code (rejects everything).",
)
@click.option(
    "--loose-reply",
    is_flag=True,
    help="Answer success with the provider's non-strict JSON example, byte for byte.",
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Append one JSON line per received report to this file.",
)
@click.option(
    "--no-keep",
    is_flag=True,
    help="Keep counts only, not records (for long benchmark runs).",
)
@click.option("--quiet", is_flag=True, help="Do not print a line per report.")
@click.option("--seed", type=int, default=None, help="Seed for --fail-rate draws.")
def receiver_command(
    protocol: str,
    host: str,
    port: int,
    fail_rate: float,
    fail_first: int,
    fail_with: str,
    fail_status: int,
    reject_code: int,
    delay_ms: float,
    code: int,
    loose_reply: bool,
    log_path: str | None,
    no_keep: bool,
    quiet: bool,
    seed: int | None,
) -> None:
    """Run a stand-in customer callback that receives pushed status reports.

    Any POST path is a push. GET /_received lists what arrived, DELETE /_received starts
    afresh, GET /_stats gives counts only.
    """
    if reject_code == 0:
        raise click.BadParameter(
            "0 means accepted; use a non-zero code", param_hint="--reject-code"
        )
    try:
        options = ReceiverOptions(
            protocol=protocol,
            host=host,
            port=port,
            fail_rate=fail_rate,
            fail_first=fail_first,
            fail_with=fail_with,
            fail_status=fail_status,
            reject_code=reject_code,
            delay_ms=delay_ms,
            code=code,
            loose_reply=loose_reply,
            log_path=log_path,
            keep=not no_keep,
            quiet=quiet,
            seed=seed,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        run_receiver(options)
    except OSError as exc:
        # A taken port or an unwritable log: a traceback would hide the one useful line.
        raise click.ClickException(f"cannot start the receiver: {exc}") from None
