"""The certsync commands: each parses its arguments, calls one method of the application object
(ctx.app) and prints the result through sync.cli.output."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from sync import config as config_mod, durations, files, inventory, logs
from sync.cli import cli
from sync.cli.context import Context, pass_ctx
from sync.cli.options import command_options
from sync.cli.output import diagnostic, finish, publish, show_plan
from sync.clock import rfc3339
from sync.pki import render
from sync.reconcile.deadline import Deadline


@cli.command()
@command_options
@pass_ctx
def init(ctx: Context) -> None:
    """Create the store and the CAs declared in the config (idempotent)."""
    result = ctx.app.init()
    statuses = result.cas
    warnings = config_mod.warnings(ctx.app.config)
    for warning in warnings:
        diagnostic(logging.WARNING, warning, "config.warning")
    for line in result.untagged:  # refused wherever used; stderr, also with --output json
        diagnostic(logging.WARNING, line, "store.untagged")
    if ctx.json:
        ctx.emit(
            {
                "cas": [
                    {"name": s.name, "created": s.created, "subject": s.subject, "not_after": rfc3339(s.not_after)}
                    for s in statuses
                ],
                "schema": {"before": result.schema_before, "after": result.schema_after},
                "warnings": warnings,
            }
        )
        return
    if result.schema_before is None:
        ctx.say(f"created  store (schema {result.schema_after})")
    elif result.schema_before != result.schema_after:
        ctx.say(f"upgraded store schema from {result.schema_before} to {result.schema_after}")
    for s in statuses:
        ctx.say(f"{'created' if s.created else 'exists '}  CA {s.name}: {s.subject} (until {s.not_after:%Y-%m-%d})")


@cli.command()
@command_options
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when nothing to do, 2 when there are changes.")
@pass_ctx
def plan(ctx: Context, detailed_exitcode: bool) -> None:
    """Show what `apply` would do, per certificate and destination."""
    show_plan(ctx, ctx.app.plan(), detailed_exitcode, warnings=config_mod.warnings(ctx.app.config))


@cli.command()
@command_options
@click.option(
    "--max-duration",
    metavar="DURATION",
    callback=lambda c, p, v: _duration(v, p),
    help="Start no new action after DURATION (e.g. 30m); the rest is reported skipped and the run exits 1.",
)
@click.option(
    "--shared",
    is_flag=True,
    help="One of several runners on one store (a CI matrix, a Kubernetes Indexed Job): take "
    "quota domains one by one under a lock each, share each domain's budget through the store.",
)
@click.option(
    "--runner",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="INDEX",
    help="With --shared: this runner's index; runner k starts at the k-th quota domain.",
)
@pass_ctx
def apply(ctx: Context, max_duration=None, shared: bool = False, runner: int = 0) -> None:
    """Issue missing, renew due, push changed, repair drift, delete retired."""
    from sync.cli import progress

    deadline = Deadline(max_duration) if max_duration else None
    run = (lambda **kw: ctx.app.apply_shared(runner=runner, **kw)) if shared else ctx.app.apply
    if progress.wanted(ctx.quiet, ctx.json) and not logs.json_enabled():  # bars would break JSON lines
        with progress.DomainProgress() as bars:
            report = run(progress=bars, deadline=deadline)
    else:
        report = run(deadline=deadline)
    _notify(ctx, "apply", report)
    finish(ctx, report)


@cli.command()
@command_options
@click.argument("cert")
@click.option(
    "--to",
    "destinations",
    multiple=True,
    metavar="DEST",
    help="Destination to push to (repeatable); default: all of the certificate's.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Write nothing: show, for each target, whether the push would create, update or be refused.",
)
@pass_ctx
def push(ctx: Context, cert: str, destinations: tuple[str, ...], dry_run: bool) -> None:
    """Push one certificate now, even if unchanged."""
    if dry_run:
        show_plan(ctx, ctx.app.push_dry_run(cert, list(destinations) or None))
        return
    report = ctx.app.push(cert, list(destinations) or None)
    _notify(ctx, "push", report)
    finish(ctx, report)


@cli.command()
@command_options
@click.argument("cert")
@click.option(
    "--rekey/--reuse-key",
    default=None,
    help="Make a new key, or keep the current one (default: the profile's key_rotation).",
)
@pass_ctx
def renew(ctx: Context, cert: str, rekey: bool | None) -> None:
    """Renew a certificate now and push the successor everywhere."""
    report = ctx.app.renew(cert, reuse_key=None if rekey is None else not rekey)
    _notify(ctx, "renew", report)
    finish(ctx, report)


@cli.command()
@command_options
@click.argument("cert")
@pass_ctx
def retire(ctx: Context, cert: str) -> None:
    """Delete a certificate from every destination and mark it retired (history is kept)."""
    finish(ctx, ctx.app.retire(cert))


@cli.command()
@command_options
@click.option("--csr", "csr_file", required=True, type=click.File("rb"), help="CSR file, PEM or DER ('-' for stdin).")
@click.option("--profile", required=True, help="Profile whose rules the request must meet.")
@click.option("--name", help="Name in the store (default: from the CSR's first name).")
@click.option("--to", "destinations", multiple=True, metavar="DEST", help="Also push the chain here (repeatable).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the chain PEM here.")
@pass_ctx
def sign(
    ctx: Context, csr_file, profile: str, name: str | None, destinations: tuple[str, ...], out: Path | None
) -> None:
    """Enroll a CSR: check it against the profile, issue, print the chain PEM."""
    if out is not None:
        files.check_target(out)  # before anything is issued
    name, chain, report = ctx.app.sign(csr_file.read(), profile, name=name, destinations=list(destinations) or None)
    if out is not None:
        files.write_atomic(out, chain, mode=0o644)  # certificates only: public
    if ctx.json:
        ctx.emit({"name": name, "chain_pem": chain, "push": [r.as_dict() for r in report.results] if report else []})
    elif out is None:
        click.echo(chain, nl=False)
    else:
        ctx.say(f"issued {name}; chain written to {out}")
    if report is not None and not ctx.json:
        finish(ctx, report)
    elif report is not None and (report.failed or report.hooks_failed):
        sys.exit(1)


@cli.command()
@command_options
@click.argument("cert")
@click.option(
    "--reason",
    required=True,
    metavar="REASON",
    help="RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, "
    "cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise.",
)
@click.option("--serial", help="Revoke this version (hex serial) instead of the active one.")
@click.option("--replace", is_flag=True, help="Issue a successor with a new key and push it right away.")
@pass_ctx
def revoke(ctx: Context, cert: str, reason: str, serial: str | None, replace: bool) -> None:
    """Revoke a certificate and regenerate its CA's CRL."""
    summary, report = ctx.app.revoke(cert, reason, serial=serial, replace=replace)
    _notify(ctx, "revoke", report, revocations=[summary])
    if ctx.json:
        ctx.emit({"revoked": summary, "replacement": [r.as_dict() for r in report.results] if report else []})
        if report is not None and (report.failed or report.hooks_failed):
            sys.exit(1)
        return
    ctx.say(
        f"revoked    {cert} serial {summary['serial']} ({summary['reason']}); "
        f"CRL {summary['ca']} #{summary['crl_number']}"
    )
    for other in summary["also_revoked"]:
        ctx.say(f"revoked    {other['certificate']} version {other['version']} serial {other['serial']} (same key)")
    if report is not None:
        finish(ctx, report)


@cli.command("rotate-master-key")
@command_options
@click.option(
    "--new-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Make a new key and write it here (mode 0600; an existing file is never overwritten).",
)
@click.option(
    "--new-key-env",
    metavar="VAR",
    help="Take the new key from this environment variable (base64 of 32 bytes, e.g. `openssl rand -base64 32`).",
)
@pass_ctx
def rotate_master_key(ctx: Context, new_key_file: Path | None, new_key_env: str | None) -> None:
    """Seal every private key again under a new master key (one transaction, under the run lock)."""
    result = ctx.app.rotate_master_key(new_key_file=new_key_file, new_key_env=new_key_env)
    if ctx.json:
        ctx.emit(result)
        return
    ctx.say(
        f"rotated  {result['authorities']} CA key(s) and {result['certificate_versions']} certificate "
        f"version(s) to the key from {result['new_key']}"
    )
    ctx.say(
        "next: point store.key_file (or CERTSYNC_MASTER_KEY) at the new key, run `certsync plan`, then "
        "destroy the old key and its backups"
    )


@cli.command()
@command_options
@click.argument("ca_name", metavar="CA")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@click.option("--pem", is_flag=True, help="PEM instead of DER.")
@pass_ctx
def crl(ctx: Context, ca_name: str, out: Path | None, pem: bool) -> None:
    """Write the CA's current CRL (DER, or PEM with --pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    the_crl = ctx.app.crl(ca_name)
    data = the_crl.public_bytes(Encoding.PEM if pem else Encoding.DER)
    if out is not None:
        files.write_atomic(out, data, mode=0o644)
    if ctx.json:
        number = the_crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        ctx.emit(
            {
                "ca": ca_name,
                "crl_number": number,
                "this_update": rfc3339(the_crl.last_update_utc),
                "next_update": rfc3339(the_crl.next_update_utc) if the_crl.next_update_utc else None,
                "revoked": len(the_crl),
                **(
                    {"written": str(out)}
                    if out is not None
                    else {"crl_pem": the_crl.public_bytes(Encoding.PEM).decode()}
                ),
            }
        )
        return
    if out is not None:
        ctx.say(f"wrote {out}")
    elif pem:
        click.echo(data.decode(), nl=False)
    elif sys.stdout.isatty():
        raise click.UsageError("the DER CRL is binary: use --out FILE or --pem")
    else:
        sys.stdout.buffer.write(data)


@cli.command("list")
@command_options
@click.option(
    "--expiring",
    metavar="DURATION",
    callback=lambda c, p, v: _duration(v, p),
    help="Only active certificates (and CAs) whose not-after is within DURATION, e.g. 30d (expired ones included).",
)
@click.option("--discovered", is_flag=True, help="The certificates `discover` found instead (docs/discovery.md).")
@click.option("--unmanaged", is_flag=True, help="With --discovered: only those certsync did not issue.")
@pass_ctx
def list_(ctx: Context, expiring=None, discovered: bool = False, unmanaged: bool = False) -> None:
    """Inventory: name, state, serial, not-after, days left, destinations in sync."""
    if unmanaged and not discovered:
        raise click.UsageError("--unmanaged goes with --discovered")
    if discovered:
        _list_discovered(ctx, expiring, unmanaged)
        return
    inv = ctx.app.inventory()
    if expiring is not None:
        inv = inventory.expiring(inv, expiring, ctx.app.now)
    document = {
        "certificates": [r.as_dict() for r in inv.certificates],
        "cas": inv.authorities,
        "warnings": inv.warnings,
    }
    publish(ctx, document)
    if ctx.json:
        ctx.emit(document)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "state", "ver", "serial", "not after", "days left", "in sync", box=None)
    for r in inv.certificates:
        table.add_row(
            r.name,
            r.state,
            str(r.version),
            r.serial[:16] + "…",
            f"{r.not_after:%Y-%m-%d %H:%M}",
            f"{r.days_left:.1f}",
            f"{r.in_sync}/{r.destinations}",
        )
    Console(soft_wrap=True).print(table)
    for warning in inv.warnings:
        diagnostic(logging.WARNING, warning, "inventory.warning")


def _list_discovered(ctx: Context, expiring, unmanaged: bool) -> None:
    rows = ctx.app.discovered(expiring=expiring, unmanaged=unmanaged)
    if ctx.json:
        ctx.emit({"discovered": rows})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "fingerprint",
        "subject / names",
        "issuer",
        "not after",
        "days left",
        "key",
        "managed",
        "problems",
        "locations",
        box=None,
    )
    for r in rows:
        names = ", ".join([r["subject"]] + [s for s in r["sans"] if s.split(":", 1)[1] not in r["subject"]][:3])
        where = [loc["location"] for loc in r["locations"]]
        table.add_row(
            r["fingerprint"][:16],
            names,
            r["issuer"],
            r["not_after"][:16].replace("T", " "),
            f"{r['days_left']:.1f}",
            r["key"],
            "yes" if r["managed"] else "no",
            ", ".join(r["problems"]) or "-",
            "\n".join(where[:3] + ([f"+{len(where) - 3} more"] if len(where) > 3 else [])),
        )
    Console(soft_wrap=True).print(table)


@cli.command()
@command_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file atomically (for node_exporter's textfile collector) instead of stdout.",
)
@pass_ctx
def metrics(ctx: Context, out: Path | None) -> None:
    """Prometheus metrics from the store: expiry of certificates and CAs, last pushes, copies in sync."""
    from sync import metrics as metrics_mod

    text = metrics_mod.collect(ctx.app)
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
@command_options
@click.argument("cert")
@click.option("--format", "fmt", type=click.Choice(["json", "pem", "pkcs12"]), default="pem", show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout: atomically, mode 0600, never through a symlink.",
)
@click.option("--password-env", metavar="VAR", help="For pkcs12: env var holding the PFX password.")
@pass_ctx
def export(ctx: Context, cert: str, fmt: str, out: Path | None, password_env: str | None) -> None:
    """Write a certificate's payload (it contains the private key) locally."""
    if out is not None:
        files.check_target(out)
    payload = ctx.app.export(cert, render.RenderOptions(fmt, password_env))
    if out is not None:
        files.write_atomic(out, payload.body, mode=0o600)  # a private key: never readable by others
    if ctx.json:  # one document on stdout: the payload itself only when it was not written to a file
        ctx.emit(
            {
                "certificate": cert,
                "format": fmt,
                "content_type": payload.content_type,
                "fingerprint": payload.fingerprint,
                **({"written": str(out)} if out is not None else {"payload": payload.body}),
            }
        )
    elif out is None:
        click.echo(payload.body, nl=not payload.body.endswith("\n"))
    else:
        ctx.say(f"wrote {out} ({fmt})")


def _duration(value: str | None, param):
    """A --max-duration / --expiring value (90d, 12h, 30m, 45s) as a timedelta."""
    if value is None:
        return None
    try:
        return durations.parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def _notify(ctx: Context, command: str, report, revocations=()) -> None:
    """[notify]: one webhook POST when the run has something to say; a failed one is a warning only."""
    from sync import notify

    outcome = notify.after_run(ctx.app, command, report, revocations=revocations)
    if outcome is not None and outcome.warning:
        diagnostic(logging.WARNING, outcome.warning, "notify.failed")
    elif outcome is not None and outcome.sent:
        logs.get("notify").info(f"alert sent: {len(outcome.events)} event(s)", extra={"event": "notify.sent"})
