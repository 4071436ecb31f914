"""`certsync acme eab create|list`: External Account Binding keys for the ACME server."""

from __future__ import annotations

import base64

import click

from sync import config as config_mod
from sync.cli import cli
from sync.cli.context import Context, pass_ctx
from sync.cli.options import command_options
from sync.clock import rfc3339
from sync.errors import UsageError


@cli.group()
def acme() -> None:
    """The ACME server ([server.acme], docs/server-acme.md)."""


@acme.group()
def eab() -> None:
    """External Account Binding keys: an ACME client needs one to open an account when require_eab is set."""


@eab.command("create")
@command_options
@click.argument("kid")
@click.option("--profile", required=True, help="The ACME directory (profile) the key opens an account in.")
@pass_ctx
def eab_create(ctx: Context, kid: str, profile: str) -> None:
    """Make a key id and MAC key; the key (base64url) is printed this once and stored sealed with the master key."""
    if profile not in ctx.config.profile:
        raise UsageError(f"--profile: unknown profile {profile!r} (defined: {', '.join(sorted(ctx.config.profile))})")
    if not config_mod.OBJECT_NAME.fullmatch(kid):
        raise UsageError(f"key id {kid!r}: 1-63 lowercase letters, digits or '-'")
    app = ctx.app
    with app.store.transaction() as tx:
        key = tx.acme.create_eab(kid, profile, app.now)
        tx.audit.record(
            at=app.now, actor="cli", action="acme.eab.create", protocol="cli", detail={"kid": kid, "profile": profile}
        )
    secret = base64.urlsafe_b64encode(key).rstrip(b"=").decode()
    if ctx.json:
        ctx.emit({"kid": kid, "profile": profile, "hmac_key": secret})
        return
    click.echo(secret)
    ctx.say_err(
        f"EAB key {kid!r} for profile {profile} (shown once: give it to the ACME client with its key id; "
        "e.g. certbot --eab-kid KID --eab-hmac-key KEY)"
    )


@eab.command("list")
@command_options
@pass_ctx
def eab_list(ctx: Context) -> None:
    """EAB key ids: profile, creation, the account bound to it (never the key)."""
    with ctx.app.store.transaction() as tx:
        rows = [
            {"kid": r.kid, "profile": r.profile, "created_at": rfc3339(r.created_at), "account": r.account_id}
            for r in tx.acme.eab_keys()
        ]
    if ctx.json:
        ctx.emit({"keys": rows})
        return
    for r in rows:
        ctx.say(f"{r['kid']:24} profile={r['profile']} created={r['created_at']} account={r['account'] or 'unused'}")
