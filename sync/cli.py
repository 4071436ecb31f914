"""The command layer: parse, call the library, print, exit. The only module that prints.

Exit codes: 0 success, 1 a failure (the message says what and where), 2 bad usage or config.
With --output json, stdout carries exactly one JSON document.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import sys
import traceback
from pathlib import Path

import click

from sync import commands, config as config_mod, logs, render
from sync.errors import CertsyncError


class Context:
    def __init__(self, config_path: str, output: str, quiet: bool, debug: bool, github: bool = False) -> None:
        self.config_path, self.output, self.quiet, self.debug = config_path, output, quiet, debug
        self.github = github
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

    def publish(self, document: dict) -> None:
        """--github: append the Markdown summary to $GITHUB_STEP_SUMMARY, the step outputs to
        $GITHUB_OUTPUT, and print one annotation per failure: on stdout, or on stderr with
        --output json (stdout keeps its one document; the runner reads commands from both)."""
        if not self.github:
            return
        from sync import github
        command = click.get_current_context().info_name
        certificates = document.get("certificates")
        if certificates is None:
            try:  # expiry dates, from the store only (no cloud call); best effort: the run is done
                certificates = [r.as_dict() for r in commands.inventory(self.config).certificates]
            except Exception:
                certificates = None
        _append_env_file("GITHUB_STEP_SUMMARY", github.markdown(command, document, certificates))
        _append_env_file("GITHUB_OUTPUT", "".join(f"{k}={v}\n" for k, v in github.outputs(document).items()))
        for line in github.annotations(document):
            click.echo(line, err=self.json)


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="CERTSYNC_CONFIG", default="sync.toml", show_default=True,
              help="Config file (env CERTSYNC_CONFIG).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format; json prints one document on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors (for cron).")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="CERTSYNC_LOG_FORMAT",
              help="stderr: text lines, or one JSON object per line (time, level, event, certificate, "
                   "destination, message) for log collectors (env CERTSYNC_LOG_FORMAT).")
@click.option("--github", is_flag=True, envvar="CERTSYNC_GITHUB",
              help="In GitHub Actions: write a Markdown step summary, step outputs and ::error annotations "
                   "(env CERTSYNC_GITHUB=true).")
@click.version_option(package_name="certsync")
@click.pass_context
def cli(ctx: click.Context, config_path: str, output: str, quiet: bool, debug: bool, github: bool,
        log_format: str = "text") -> None:
    """certsync: a private CA and certificate store that keeps cloud secret stores in sync."""
    logs.setup(log_format, quiet=quiet, debug=debug)
    ctx.obj = Context(config_path, output, quiet, debug, github)


@cli.command()
@pass_ctx
def init(ctx: Context) -> None:
    """Create the store and the CAs declared in the config (idempotent)."""
    result = commands.init(ctx.config)
    statuses = result.cas
    if ctx.json:
        ctx.emit({"cas": [{"name": s.name, "created": s.created, "subject": s.subject,
                           "not_after": s.not_after.isoformat()} for s in statuses],
                  "schema": {"before": result.schema_before, "after": result.schema_after}})
        return
    if result.schema_before is None:
        ctx.say(f"created  store (schema {result.schema_after})")
    elif result.schema_before != result.schema_after:
        ctx.say(f"upgraded store schema from {result.schema_before} to {result.schema_after}")
    for s in statuses:
        ctx.say(f"{'created' if s.created else 'exists '}  CA {s.name}: {s.subject} (until {s.not_after:%Y-%m-%d})")


@cli.command()
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when nothing to do, 2 when there are changes.")
@pass_ctx
def plan(ctx: Context, detailed_exitcode: bool) -> None:
    """Show what `apply` would do, per certificate and destination."""
    _show_plan(ctx, commands.plan(ctx.config), detailed_exitcode)


def _show_plan(ctx: Context, the_plan, detailed_exitcode: bool = False) -> None:
    """Print a plan (text or one JSON document); exit 1 on errors, 2 on changes when asked."""
    errors = the_plan.of_kind("error")
    document = {"actions": [_action_dict(a) for a in the_plan.actions],
                "changes": len(the_plan.changes), "errors": len(errors)}
    if ctx.json:
        ctx.emit(document)
    else:
        for a in the_plan.actions:
            if a.kind != "unchanged" or not ctx.quiet:
                click.echo(_action_line(a.kind, a))
        ctx.say(f"\n{len(the_plan.changes)} change(s), "
                f"{len(the_plan.of_kind('unchanged'))} unchanged, {len(errors)} error(s)")
        for a in errors:
            _diagnostic(logging.ERROR, f"{a.destination}: {a.reason}", "plan.error")
    ctx.publish(document)
    if errors:
        sys.exit(1)
    if detailed_exitcode and the_plan.changes:
        sys.exit(2)


@cli.command()
@click.option("--max-duration", metavar="DURATION", callback=lambda c, p, v: _duration(v, p),
              help="Start no new action after DURATION (e.g. 30m); the rest is reported skipped and the "
                   "run exits 1.")
@pass_ctx
def apply(ctx: Context, max_duration=None) -> None:
    """Issue missing, renew due, push changed, repair drift, delete retired."""
    from sync import cron, progress
    deadline = cron.Deadline(max_duration) if max_duration else None
    if progress.wanted(ctx.quiet, ctx.json) and not logs.json_enabled():   # bars would break JSON lines
        with progress.DomainProgress() as bars:
            report = commands.apply(ctx.config, progress=bars, deadline=deadline)
    else:
        report = commands.apply(ctx.config, deadline=deadline)
    _notify(ctx, "apply", report)
    _finish(ctx, report)


@cli.command()
@click.argument("cert")
@click.option("--to", "destinations", multiple=True, metavar="DEST",
              help="Destination to push to (repeatable); default: all of the certificate's.")
@click.option("--dry-run", is_flag=True,
              help="Write nothing: show, for each target, whether the push would create, update or be refused.")
@pass_ctx
def push(ctx: Context, cert: str, destinations: tuple[str, ...], dry_run: bool) -> None:
    """Push one certificate now, even if unchanged."""
    if dry_run:
        _show_plan(ctx, commands.push_dry_run(ctx.config, cert, list(destinations) or None))
        return
    report = commands.push(ctx.config, cert, list(destinations) or None)
    _notify(ctx, "push", report)
    _finish(ctx, report)


@cli.command()
@click.argument("cert")
@click.option("--rekey/--reuse-key", default=None,
              help="Make a new key, or keep the current one (default: the profile's key_rotation).")
@pass_ctx
def renew(ctx: Context, cert: str, rekey: bool | None) -> None:
    """Renew a certificate now and push the successor everywhere."""
    report = commands.renew(ctx.config, cert, reuse_key=None if rekey is None else not rekey)
    _notify(ctx, "renew", report)
    _finish(ctx, report)


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
    _notify(ctx, "revoke", report, revocations=[summary])
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
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    the_crl = commands.crl(ctx.config, ca_name)
    data = the_crl.public_bytes(Encoding.PEM if pem else Encoding.DER)
    if ctx.json:
        if out is not None:
            out.write_bytes(data)
        number = the_crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        ctx.emit({"ca": ca_name, "crl_number": number, "this_update": the_crl.last_update_utc.isoformat(),
                  "next_update": the_crl.next_update_utc.isoformat(), "revoked": len(the_crl),
                  **({"written": str(out)} if out is not None
                     else {"crl_pem": the_crl.public_bytes(Encoding.PEM).decode()})})
        return
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
@click.option("--expiring", metavar="DURATION", callback=lambda c, p, v: _duration(v, p),
              help="Only active certificates (and CAs) whose not-after is within DURATION, e.g. 30d "
                   "(expired ones included).")
@pass_ctx
def list_(ctx: Context, expiring=None) -> None:
    """Inventory: name, state, serial, not-after, days left, destinations in sync."""
    inv = commands.inventory(ctx.config)
    if expiring is not None:
        from sync import facts
        from sync.ca import utcnow
        inv = facts.expiring(inv, expiring, utcnow())
    document = {"certificates": [r.as_dict() for r in inv.certificates], "cas": inv.authorities,
                "warnings": inv.warnings}
    ctx.publish(document)
    if ctx.json:
        ctx.emit(document)
        return
    from rich.console import Console
    from rich.table import Table
    table = Table("name", "state", "ver", "serial", "not after", "days left", "in sync", box=None)
    for r in inv.certificates:
        table.add_row(r.name, r.state, str(r.version), r.serial[:16] + "…", f"{r.not_after:%Y-%m-%d %H:%M}",
                      f"{r.days_left:.1f}", f"{r.in_sync}/{r.destinations}")
    Console(soft_wrap=True).print(table)
    for warning in inv.warnings:
        _diagnostic(logging.WARNING, warning, "inventory.warning")


@cli.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file atomically (for node_exporter's textfile collector) instead of stdout.")
@pass_ctx
def metrics(ctx: Context, out: Path | None) -> None:
    """Prometheus metrics from the store: expiry of certificates and CAs, last pushes, copies in sync."""
    from sync import metrics as metrics_mod
    text = metrics_mod.collect(ctx.config)
    if out is not None:
        metrics_mod.write_atomic(out, text)
        if ctx.json:
            ctx.emit({"out": str(out)})
        else:
            ctx.say(f"wrote {out}")
    elif ctx.json:
        ctx.emit({"metrics": text})
    else:
        click.echo(text, nl=False)


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
    if out is not None:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(payload.body)
    if ctx.json:   # one document on stdout: the payload itself only when it was not written to a file
        ctx.emit({"certificate": cert, "format": fmt, "content_type": payload.content_type,
                  "fingerprint": payload.fingerprint,
                  **({"written": str(out)} if out is not None else {"payload": payload.body})})
    elif out is None:
        click.echo(payload.body, nl=not payload.body.endswith("\n"))
    else:
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
    document = {"results": [r.as_dict() for r in report.results], "summary": report.summary(),
                "destinations": report.by_destination(), "seconds": round(report.seconds, 3),
                "ok": not report.failed and not report.stopped}
    if ctx.json:
        ctx.emit(document)
    else:
        for r in report.results:
            if r.status == "failed":
                continue
            if r.status != "unchanged" or not ctx.quiet:
                label = r.action.kind if r.status == "done" else r.status
                ctx.say(_action_line(label, r.action, f": {r.detail}" if r.detail else ""))
        summary = ", ".join(f"{v} {k}" for k, v in sorted(report.summary().items())) or "nothing to do"
        ctx.say(f"\n{summary} in {report.seconds:.2f}s")
        for destination, counts in document["destinations"].items():
            ctx.say(f"  {destination}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    for r in report.failed if not logs.json_enabled() else ():   # json logs: apply logged each one
        where = f"{r.action.destination}/{r.action.remote_name}" if r.action.destination else r.action.cert
        click.echo(f"error: {r.action.kind} {r.action.cert} -> {where}: {logs.redact(r.error or '')}", err=True)
    if report.stopped:
        from sync.cron import MAX_DURATION_REACHED
        skipped = sum(1 for r in report.results if r.status == "skipped" and r.error == MAX_DURATION_REACHED)
        _diagnostic(logging.ERROR, f"run stopped: {report.stopped}; {skipped} action(s) not started", "run.stopped")
    logs.get("run").info(", ".join(f"{v} {k}" for k, v in sorted(report.summary().items())) or "nothing to do",
                         extra={"event": "run.finished", "command": click.get_current_context().info_name})
    ctx.publish(document)
    if report.failed or report.stopped:
        sys.exit(1)


def _diagnostic(level: int, message: str, event: str) -> None:
    """A warning or error line on stderr: `error: ...` text, or a JSON record with --log-format json."""
    if logs.json_enabled():
        logs.get("cli").log(level, message, extra={"event": event})
    else:
        click.echo(f"{logging.getLevelName(level).lower()}: {logs.redact(message)}", err=True)


def _duration(value: str | None, param):
    """A --max-duration / --expiring value (90d, 12h, 30m, 45s) as a timedelta."""
    if value is None:
        return None
    try:
        return config_mod.parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def _notify(ctx: Context, command: str, report, revocations=()) -> None:
    """[notify]: one webhook POST when the run has something to say; a failed one is a warning only."""
    from sync import notify
    outcome = notify.after_run(ctx.config, command, report, revocations=revocations)
    if outcome is not None and outcome.warning:
        _diagnostic(logging.WARNING, outcome.warning, "notify.failed")
    elif outcome is not None and outcome.sent:
        logs.get("notify").info(f"alert sent: {len(outcome.events)} event(s)", extra={"event": "notify.sent"})


def _append_env_file(variable: str, text: str) -> None:
    """Append to the file a GitHub Actions variable names ($GITHUB_STEP_SUMMARY, $GITHUB_OUTPUT)."""
    path = os.environ.get(variable)
    if path and text:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")


TRUTHY = ("1", "true", "t", "yes", "y", "on")   # what click accepts for a flag's env var


def _publish_error(args: list[str], message: str) -> None:
    """--github, for a run stopped before it had a document: one annotation and a summary line."""
    if "--github" not in args and os.environ.get("CERTSYNC_GITHUB", "").lower() not in TRUTHY:
        return
    from sync import github
    command = next((a for a in args if a in cli.commands), "run")
    _append_env_file("GITHUB_STEP_SUMMARY", github.error_markdown(command, message))
    click.echo(github.workflow_command("error", message, title=f"certsync {command} failed"), err=True)


def main(argv: list[str] | None = None) -> None:
    if argv is None:  # the process is this run (console script, python -m sync), not a caller's
        # It makes many small objects that live until it ends (config, listings, plan): keep the
        # collector from re-scanning them, and the modules imported so far, every 700 allocations.
        gc.freeze()
        gc.set_threshold(20000, 20, 20)
    args = argv if argv is not None else sys.argv[1:]
    debug = "--debug" in args
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
            _diagnostic(logging.ERROR, line, "error")
        _publish_error(args, str(exc))
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:  # a bug: one line, the traceback only with --debug
        if debug:
            traceback.print_exc()
        _diagnostic(logging.ERROR, f"internal error: {exc.__class__.__name__}: {exc} (run with --debug for details)",
                    "internal_error")
        sys.exit(1)


if __name__ == "__main__":
    main()
