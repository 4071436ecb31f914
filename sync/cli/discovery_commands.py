"""`certsync discover`: scan what the user lists for certificates and record them (docs/discovery.md)."""

from __future__ import annotations

import logging
import sys

import click

from sync.cli import cli
from sync.cli.commands import _notify
from sync.cli.context import Context, pass_ctx
from sync.cli.discover_clouds import cloud_options, listing_failed, run_clouds
from sync.cli.options import command_options
from sync.cli.output import diagnostic
from sync.config_discovery import parse_ports
from sync.discovery import scan as discovery
from sync.errors import UsageError


@cli.command()
@command_options
@click.option(
    "--tls",
    "tls",
    multiple=True,
    metavar="HOST:PORT[/SNI]",
    help="A TLS endpoint to scan (repeatable); smtp://HOST:PORT and imap://HOST:PORT use STARTTLS.",
)
@click.option(
    "--tls-file", "tls_files", multiple=True, metavar="FILE", help="A file of TLS targets, one a line (repeatable)."
)
@click.option(
    "--cidr",
    "cidrs",
    multiple=True,
    metavar="NETWORK",
    help="Scan every address of this network (repeatable) on --ports; at most --max-hosts addresses.",
)
@click.option("--ports", metavar="LIST", help="Ports for --cidr, e.g. 443,8443 (default: the config's, 443).")
@click.option(
    "--max-hosts",
    type=click.IntRange(1, 16777216),
    metavar="N",
    help="Largest network --cidr may name, in addresses (default 65536, a /16).",
)
@click.option(
    "--files",
    "files",
    multiple=True,
    metavar="DIR",
    type=click.Path(),
    help="A folder (or file) to search for certificate files (repeatable).",
)
@click.option("--pkcs12-password-env", metavar="VAR", help="Environment variable holding the PKCS#12 password.")
@cloud_options
@pass_ctx
def discover(
    ctx: Context,
    tls,
    tls_files,
    cidrs,
    ports,
    max_hosts,
    files,
    pkcs12_password_env,
    clouds: bool,
    cloud_destinations: tuple[str, ...],
) -> None:
    """Find certificates on TLS endpoints, in files and in cloud secret stores and record them
    (never writes to a cloud).

    With no source on the command line, the [discovery] table's TLS endpoints and folders are scanned."""
    try:
        ports = parse_ports(ports) if ports is not None else None
    except ValueError as exc:
        raise UsageError(f"--ports: {exc}") from None
    request = discovery.request_from(
        ctx.app.config,
        tls=list(tls),
        tls_files=list(tls_files),
        cidrs=list(cidrs),
        ports=ports,
        files=list(files),
        max_hosts=max_hosts,
        pkcs12_password_env=pkcs12_password_env,
        cli_given=clouds,
    )
    if not request.sources() and not clouds:
        raise UsageError("nothing to scan: give --tls, --tls-file, --cidr, --files or --clouds, or fill [discovery]")
    document = _scan(ctx, request) if request.sources() else {}
    if clouds:
        document["clouds"] = run_clouds(ctx, cloud_destinations)
    _notify(ctx, "discover", None)
    if ctx.json:
        ctx.emit(document)
    if clouds and listing_failed(document["clouds"]):
        sys.exit(1)


def _scan(ctx: Context, request: discovery.Request) -> dict:
    result = ctx.app.discover(request)
    for error in result.errors:
        diagnostic(logging.WARNING, f"{error['location']}: {error['error']}", "discover.error")
    if not ctx.json:
        _say_summary(ctx, result)
    return result.as_dict()


def _say_summary(ctx: Context, result: discovery.Result) -> None:
    ctx.say(
        f"found {result.found} certificate(s) at {result.locations} location(s): {result.new} new, "
        f"{result.managed} managed, {result.found - result.managed} unmanaged; {result.gone} location(s) gone; "
        f"{len(result.errors)} error(s)"
    )
