"""`certsync discover`: scan what the user lists for certificates and record them (docs/discovery.md)."""
from __future__ import annotations

import logging

import click

from sync.cli import cli
from sync.cli.commands import _notify
from sync.cli.context import Context, pass_ctx
from sync.cli.options import command_options
from sync.cli.output import diagnostic
from sync.config_discovery import parse_ports
from sync.discovery import scan as discovery
from sync.errors import UsageError

# Another source (clouds) adds its flag here and passes request_from(extra={"clouds": ...});
# App.discover runs sources by name (sync.discovery.scan.SOURCES).


@cli.command()
@command_options
@click.option("--tls", "tls", multiple=True, metavar="HOST:PORT[/SNI]",
              help="A TLS endpoint to scan (repeatable); smtp://HOST:PORT and imap://HOST:PORT use STARTTLS.")
@click.option("--tls-file", "tls_files", multiple=True, metavar="FILE",
              help="A file of TLS targets, one a line (repeatable).")
@click.option("--cidr", "cidrs", multiple=True, metavar="NETWORK",
              help="Scan every address of this network (repeatable) on --ports; at most --max-hosts addresses.")
@click.option("--ports", metavar="LIST", help="Ports for --cidr, e.g. 443,8443 (default: the config's, 443).")
@click.option("--max-hosts", type=click.IntRange(1, 16777216), metavar="N",
              help="Largest network --cidr may name, in addresses (default 65536, a /16).")
@click.option("--files", "files", multiple=True, metavar="DIR", type=click.Path(),
              help="A folder (or file) to search for certificate files (repeatable).")
@click.option("--pkcs12-password-env", metavar="VAR", help="Environment variable holding the PKCS#12 password.")
@pass_ctx
def discover(ctx: Context, tls, tls_files, cidrs, ports, max_hosts, files, pkcs12_password_env) -> None:
    """Find certificates on TLS endpoints and in files and record them (never writes to a cloud).

    With no source on the command line, the [discovery] table's are scanned."""
    try:
        ports = parse_ports(ports) if ports is not None else None
    except ValueError as exc:
        raise UsageError(f"--ports: {exc}") from None
    request = discovery.request_from(ctx.app.config, tls=list(tls), tls_files=list(tls_files), cidrs=list(cidrs),
                                     ports=ports, files=list(files), max_hosts=max_hosts,
                                     pkcs12_password_env=pkcs12_password_env)
    if not request.sources():
        raise UsageError("nothing to scan: give --tls, --tls-file, --cidr or --files, or fill [discovery]")
    result = ctx.app.discover(request)
    for error in result.errors:
        diagnostic(logging.WARNING, f"{error['location']}: {error['error']}", "discover.error")
    _notify(ctx, "discover", None)
    if ctx.json:
        ctx.emit(result.as_dict())
        return
    ctx.say(f"found {result.found} certificate(s) at {result.locations} location(s): {result.new} new, "
            f"{result.managed} managed, {result.found - result.managed} unmanaged; {result.gone} location(s) gone; "
            f"{len(result.errors)} error(s)")
