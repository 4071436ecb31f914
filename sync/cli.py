"""The command layer: parse, call the library, print, exit. The only module that prints.

Exit codes: 0 success, 1 a failure (the message says what and where), 2 bad usage or config.
With --output json, stdout carries exactly one JSON document.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

import click

from sync import commands, config as config_mod, render
from sync.errors import CertsyncError


class Context:
    def __init__(self, config_path: str, output: str, quiet: bool, debug: bool) -> None:
        self.config_path, self.output, self.quiet, self.debug = config_path, output, quiet, debug
        self._config = None

    @property
    def config(self) -> config_mod.Config:
        if self._config is None:
            self._config = config_mod.load(self.config_path)
        return self._config

    @property
    def json(self) -> bool:
        return self.output == "json"

    def emit(self, document) -> None:
        click.echo(json.dumps(document, indent=2, default=str))

    def say(self, text: str = "") -> None:
        if not self.quiet:
            click.echo(text)


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="CERTSYNC_CONFIG", default="sync.toml", show_default=True,
              help="Config file (env CERTSYNC_CONFIG).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format; json prints one document on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors (for cron).")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="certsync")
@click.pass_context
def cli(ctx: click.Context, config_path: str, output: str, quiet: bool, debug: bool) -> None:
    """certsync: a private CA and certificate store that keeps cloud secret stores in sync."""
    ctx.obj = Context(config_path, output, quiet, debug)


@cli.command()
@pass_ctx
def init(ctx: Context) -> None:
    """Create the store and the CAs declared in the config (idempotent)."""
    statuses = commands.init(ctx.config)
    if ctx.json:
        ctx.emit({"cas": [{"name": s.name, "created": s.created, "subject": s.subject,
                           "not_after": s.not_after.isoformat()} for s in statuses]})
        return
    for s in statuses:
        ctx.say(f"{'created' if s.created else 'exists '}  CA {s.name}: {s.subject} (until {s.not_after:%Y-%m-%d})")


@cli.command()
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when nothing to do, 2 when there are changes.")
@pass_ctx
def plan(ctx: Context, detailed_exitcode: bool) -> None:
    """Show what `apply` would do, per certificate and destination."""
    the_plan = commands.plan(ctx.config)
    errors = the_plan.of_kind("error")
    if ctx.json:
        ctx.emit({"actions": [_action_dict(a) for a in the_plan.actions],
                  "changes": len(the_plan.changes), "errors": len(errors)})
    else:
        for a in the_plan.actions:
            if a.kind != "unchanged" or not ctx.quiet:
                click.echo(_action_line(a.kind, a))
        ctx.say(f"\n{len(the_plan.changes)} change(s), "
                f"{len(the_plan.of_kind('unchanged'))} unchanged, {len(errors)} error(s)")
        for a in errors:
            click.echo(f"error: {a.destination}: {a.reason}", err=True)
    if errors:
        sys.exit(1)
    if detailed_exitcode and the_plan.changes:
        sys.exit(2)


@cli.command()
@pass_ctx
def apply(ctx: Context) -> None:
    """Issue missing, renew due, push changed, repair drift, delete retired."""
    _finish(ctx, commands.apply(ctx.config))


@cli.command()
@click.argument("cert")
@click.option("--to", "destinations", multiple=True, metavar="DEST",
              help="Destination to push to (repeatable); default: all of the certificate's.")
@pass_ctx
def push(ctx: Context, cert: str, destinations: tuple[str, ...]) -> None:
    """Push one certificate now, even if unchanged."""
    _finish(ctx, commands.push(ctx.config, cert, list(destinations) or None))


@cli.command()
@click.argument("cert")
@click.option("--rekey/--reuse-key", default=None,
              help="Make a new key, or keep the current one (default: the profile's key_rotation).")
@pass_ctx
def renew(ctx: Context, cert: str, rekey: bool | None) -> None:
    """Renew a certificate now and push the successor everywhere."""
    _finish(ctx, commands.renew(ctx.config, cert, reuse_key=None if rekey is None else not rekey))


@cli.command()
@click.argument("cert")
@pass_ctx
def retire(ctx: Context, cert: str) -> None:
    """Delete a certificate from every destination and mark it retired (history is kept)."""
    _finish(ctx, commands.retire(ctx.config, cert))


@cli.command()
@click.option("--csr", "csr_file", required=True, type=click.File("rb"), help="CSR file, PEM or DER ('-' for stdin).")
@click.option("--profile", required=True, help="Profile whose rules the request must meet.")
@click.option("--name", help="Name in the store (default: from the CSR's first name).")
@click.option("--to", "destinations", multiple=True, metavar="DEST", help="Also push the chain here (repeatable).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the chain PEM here.")
@pass_ctx
def sign(ctx: Context, csr_file, profile: str, name: str | None, destinations: tuple[str, ...],
         out: Path | None) -> None:
    """Enroll a CSR: check it against the profile, issue, print the chain PEM."""
    name, chain, report = commands.sign(ctx.config, csr_file.read(), profile, name=name,
                                        destinations=list(destinations) or None)
    if out is not None:
        out.write_text(chain)
    if ctx.json:
        ctx.emit({"name": name, "chain_pem": chain,
                  "push": [r.as_dict() for r in report.results] if report else []})
    elif out is None:
        click.echo(chain, nl=False)
    else:
        ctx.say(f"issued {name}; chain written to {out}")
    if report is not None and not ctx.json:
        _finish(ctx, report)
    elif report is not None and report.failed:
        sys.exit(1)


@cli.command()
@click.argument("cert")
@click.option("--reason", required=True, metavar="REASON",
              help="RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, "
                   "cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise.")
@click.option("--serial", help="Revoke this version (hex serial) instead of the active one.")
@click.option("--replace", is_flag=True, help="Issue a successor with a new key and push it right away.")
@pass_ctx
def revoke(ctx: Context, cert: str, reason: str, serial: str | None, replace: bool) -> None:
    """Revoke a certificate and regenerate its CA's CRL."""
    summary, report = commands.revoke(ctx.config, cert, reason, serial=serial, replace=replace)
    if ctx.json:
        ctx.emit({"revoked": summary, "replacement": [r.as_dict() for r in report.results] if report else []})
        if report is not None and report.failed:
            sys.exit(1)
        return
    ctx.say(f"revoked    {cert} serial {summary['serial']} ({summary['reason']}); "
            f"CRL {summary['ca']} #{summary['crl_number']}")
    if report is not None:
        _finish(ctx, report)


@cli.command()
@click.argument("ca_name", metavar="CA")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@click.option("--pem", is_flag=True, help="PEM instead of DER.")
@pass_ctx
def crl(ctx: Context, ca_name: str, out: Path | None, pem: bool) -> None:
    """Write the CA's current CRL (DER, or PEM with --pem)."""
    from cryptography.hazmat.primitives.serialization import Encoding
    data = commands.crl(ctx.config, ca_name).public_bytes(Encoding.PEM if pem else Encoding.DER)
    if out is not None:
        out.write_bytes(data)
        ctx.say(f"wrote {out}")
    elif pem:
        click.echo(data.decode(), nl=False)
    elif sys.stdout.isatty():
        raise click.UsageError("the DER CRL is binary: use --out FILE or --pem")
    else:
        sys.stdout.buffer.write(data)


@cli.command("list")
@pass_ctx
def list_(ctx: Context) -> None:
    """Inventory: name, state, serial, not-after, days left, destinations in sync."""
    inv = commands.inventory(ctx.config)
    if ctx.json:
        ctx.emit({"certificates": [r.as_dict() for r in inv.certificates], "cas": inv.authorities,
                  "warnings": inv.warnings})
        return
    from rich.console import Console
    from rich.table import Table
    table = Table("name", "state", "ver", "serial", "not after", "days left", "in sync", box=None)
    for r in inv.certificates:
        table.add_row(r.name, r.state, str(r.version), r.serial[:16] + "…", f"{r.not_after:%Y-%m-%d %H:%M}",
                      f"{r.days_left:.1f}", f"{r.in_sync}/{r.destinations}")
    Console(soft_wrap=True).print(table)
    for warning in inv.warnings:
        click.echo(f"warning: {warning}", err=True)


@cli.command()
@click.argument("cert")
@click.option("--format", "fmt", type=click.Choice(["json", "pem", "pkcs12"]), default="pem", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file (mode 0600) instead of stdout.")
@click.option("--password-env", metavar="VAR", help="For pkcs12: env var holding the PFX password.")
@pass_ctx
def export(ctx: Context, cert: str, fmt: str, out: Path | None, password_env: str | None) -> None:
    """Write a certificate's payload (it contains the private key) locally."""
    payload = commands.export(ctx.config, cert, render.RenderOptions(fmt, password_env))
    if out is None:
        click.echo(payload.body, nl=not payload.body.endswith("\n"))
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(payload.body)
    ctx.say(f"wrote {out} ({fmt})")


# --- output helpers -----------------------------------------------------------------------------

def _action_dict(a) -> dict:
    return {"action": a.kind, "certificate": a.cert, "destination": a.destination,
            "remote_name": a.remote_name, "reason": a.reason}


def _action_line(label: str, a, extra: str = "") -> str:
    where = f" -> {a.destination}/{a.remote_name}" if a.destination else ""
    why = f" ({a.reason})" if a.reason else ""
    return f"{label:<10} {a.cert}{where}{why}{extra}"


def _finish(ctx: Context, report) -> None:
    if ctx.json:
        ctx.emit({"results": [r.as_dict() for r in report.results], "summary": report.summary(),
                  "seconds": round(report.seconds, 3), "ok": not report.failed})
    else:
        for r in report.results:
            if r.status == "failed":
                continue
            if r.status != "unchanged" or not ctx.quiet:
                label = r.action.kind if r.status == "done" else r.status
                ctx.say(_action_line(label, r.action, f": {r.detail}" if r.detail else ""))
        summary = ", ".join(f"{v} {k}" for k, v in sorted(report.summary().items())) or "nothing to do"
        ctx.say(f"\n{summary} in {report.seconds:.2f}s")
    for r in report.failed:
        where = f"{r.action.destination}/{r.action.remote_name}" if r.action.destination else r.action.cert
        click.echo(f"error: {r.action.kind} {r.action.cert} -> {where}: {r.error}", err=True)
    if report.failed:
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="certsync", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except CertsyncError as exc:
        if debug:
            traceback.print_exc()
        for line in str(exc).splitlines():
            click.echo(f"error: {line}", err=True)
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:  # a bug: one line, the traceback only with --debug
        if debug:
            traceback.print_exc()
        click.echo(f"error: internal error: {exc.__class__.__name__}: {exc} (run with --debug for details)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
