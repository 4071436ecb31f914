"""The command line: parse, call the application object, print, exit. The only layer that prints.

Exit codes: 0 success, 1 a failure (the message says what and where), 2 bad usage or config.
With --output json, stdout carries exactly one JSON document.
"""

from __future__ import annotations

import gc
import logging
import sys
import traceback

import click

from sync.cli.context import Context
from sync.cli.options import group_options
from sync.cli.output import diagnostic, publish_error
from sync.errors import CertsyncError


class CertsyncGroup(click.Group):
    """Turns errors into one line on stderr and an exit code, inside click (the traceback only
    with --debug, wherever it was typed)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except CertsyncError as exc:
            obj = ctx.find_object(Context)
            if obj is not None and obj.debug:
                traceback.print_exc()
            for line in str(exc).splitlines():
                diagnostic(logging.ERROR, line, "error")
            publish_error(obj, ctx.invoked_subcommand or "run", str(exc))
            ctx.exit(exc.exit_code)
        except Exception as exc:  # a bug: one line, the traceback only with --debug
            obj = ctx.find_object(Context)
            if obj is not None and obj.debug:
                traceback.print_exc()
            diagnostic(
                logging.ERROR,
                f"internal error: {exc.__class__.__name__}: {exc} (run with --debug for details)",
                "internal_error",
            )
            ctx.exit(1)


@click.group(cls=CertsyncGroup, context_settings={"help_option_names": ["-h", "--help"]})
@group_options
@click.version_option(package_name="certsync")
@click.pass_context
def cli(
    ctx: click.Context, config_path: str, output: str, quiet: bool, debug: bool, log_format: str, github: bool
) -> None:
    """certsync: a private CA and certificate store that keeps cloud secret stores in sync.

    Global options may be given before or after the command."""
    ctx.obj = Context(config_path, output, quiet, debug, github, log_format)
    ctx.obj.setup_logging()
    ctx.call_on_close(ctx.obj.close)


from sync.cli import acme_commands, agent_commands, commands, discover_clouds, discovery_commands, server_commands  # noqa: E402,F401  (register the commands on `cli`)


def main(argv: list[str] | None = None) -> None:
    if argv is None:  # the process is this run (console script, python -m sync), not a caller's
        # It makes many small objects that live until it ends (config, listings, plan): keep the
        # collector from re-scanning them, and the modules imported so far, every 700 allocations.
        gc.freeze()
        gc.set_threshold(20000, 20, 20)
    try:
        code = cli.main(args=argv, prog_name="certsync", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:  # bad usage: one line naming the option and the rule, exit 2
        message = exc.format_message()
        if isinstance(exc, click.UsageError) and exc.ctx is not None and not isinstance(exc, click.BadParameter):
            message += f" (see `{exc.ctx.command_path} --help`)"
        click.echo(f"error: {' '.join(message.split())}", err=True)
        sys.exit(2)
    if isinstance(code, int) and code:  # ctx.exit(n) from an error, returned by click
        sys.exit(code)
