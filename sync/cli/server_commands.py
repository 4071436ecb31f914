"""The server's commands: `serve`, API tokens (`token create|list|revoke`) and `audit`."""

from __future__ import annotations

import click

from sync.cli import cli
from sync.cli.commands import _duration
from sync.cli.context import Context, pass_ctx
from sync.cli.options import command_options
from sync.config_server import TOKEN_SCOPES


@cli.command()
@command_options
@click.option("--listen", metavar="HOST:PORT", help="Listen here instead of [server] listen (port 0: any free port).")
@pass_ctx
def serve(ctx: Context, listen: str | None) -> None:
    """Serve the CA: CRL, OCSP, EST, ACME and the REST API (docs/server.md). Stops on SIGTERM/Ctrl-C,
    letting requests in flight finish."""
    from sync.server import runtime

    if listen is not None:
        from sync.config_server import split_listen

        try:
            split_listen(listen)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--listen") from None
    runtime.run(ctx.config, listen, state=None)


@cli.group()
def token() -> None:
    """API tokens for `certsync serve` (REST API bearer, EST Basic password)."""


@token.command("create")
@command_options
@click.argument("name")
@click.option("--profile", required=True, help="The one profile the token may act on.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    metavar="SCOPE",  # checked by create_token: one-line error
    help="What it may do (repeatable): "
    + "; ".join(f"{k}: {v}" for k, v in TOKEN_SCOPES.items())
    + ". Default: read and sign.",
)
@click.option(
    "--expires",
    metavar="DURATION",
    callback=lambda c, p, v: _duration(v, p),
    help="Lifetime, e.g. 90d; default: until revoked.",
)
@pass_ctx
def token_create(ctx: Context, name: str, profile: str, scopes: tuple[str, ...], expires) -> None:
    """Create a token; it is printed this once (only its hash is stored)."""
    facts = ctx.app.create_token(name, profile, list(scopes) or ["read", "sign"], expires)
    if ctx.json:
        ctx.emit(facts)
        return
    click.echo(facts["token"])
    ctx.say_err(
        f"token {name!r}: profile {profile}, scopes {', '.join(facts['scopes'])}"
        + (f", expires {facts['expires_at']}" if facts["expires_at"] else "")
        + " (shown once: store it now)"
    )


@token.command("list")
@command_options
@pass_ctx
def token_list(ctx: Context) -> None:
    """Tokens: name, profile, scopes, expiry, last use (never the secret)."""
    rows = ctx.app.tokens()
    if ctx.json:
        ctx.emit({"tokens": rows})
        return
    for r in rows:
        state = "revoked" if r["revoked_at"] else "active"
        ctx.say(
            f"{r['name']:24} {state:8} profile={r['profile']} scopes={','.join(r['scopes'])} "
            f"expires={r['expires_at'] or 'never'} last_used={r['last_used_at'] or 'never'}"
        )


@token.command("revoke")
@command_options
@click.argument("name")
@pass_ctx
def token_revoke(ctx: Context, name: str) -> None:
    """Revoke a token: refused from its next request on."""
    facts = ctx.app.revoke_token(name)
    if ctx.json:
        ctx.emit(facts)
    else:
        ctx.say(f"revoked token {name!r}")


@cli.command()
@command_options
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True)
@click.option(
    "--since",
    metavar="DURATION",
    callback=lambda c, p, v: _duration(v, p),
    help="Only events from the last DURATION, e.g. 24h.",
)
@click.option("--certificate", help="Only events about this certificate.")
@click.option("--action", help="Only this action (issue, sign, renew, revoke, token.use, ...).")
@pass_ctx
def audit(ctx: Context, limit: int, since, certificate: str | None, action: str | None) -> None:
    """The audit trail: who issued, renewed, revoked or used a token, when and from where; newest first."""
    events = ctx.app.audit(
        limit=limit, since=ctx.app.now - since if since else None, certificate=certificate, action=action
    )
    if ctx.json:
        ctx.emit({"events": events})
        return
    for e in events:
        what = " ".join(filter(None, [e["certificate"], e["serial"] and f"serial={e['serial'][:16]}"]))
        ctx.say(
            f"{e['at']}  {e['protocol']:5} {e['action']:14} {e['outcome']:7} {e['actor']:28} "
            f"{e['remote_addr'] or '-':15} {what}"
        )
