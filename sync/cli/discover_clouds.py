"""The cloud part of `certsync discover` (`--clouds`: `cloud_options` and `run_clouds`, used by
sync/cli/discovery_commands.py) and `certsync adopt`."""

from __future__ import annotations

import logging
from pathlib import Path
from collections.abc import Callable

import click

from sync.cli import cli
from sync.cli.context import Context, pass_ctx
from sync.cli.options import command_options
from sync.cli.output import diagnostic
from sync.errors import PolicyError


def cloud_options(command: Callable) -> Callable:
    command = click.option(
        "--destination",
        "cloud_destinations",
        multiple=True,
        metavar="NAME",
        help="With --clouds: only this destination (repeatable; default: [discovery.clouds] destinations, else all).",
    )(command)
    return click.option(
        "--clouds",
        is_flag=True,
        help="Inspect every secret of the cloud destinations for "
        "certificates (reads only; values are never shown or "
        "stored).",
    )(command)


def run_clouds(ctx: Context, destinations: tuple[str, ...]) -> dict:
    """Scan and record; print per secret found (text) and warnings; return the JSON part."""
    result = ctx.app.discover_clouds(list(destinations) or None)
    for line in result.errors:
        diagnostic(logging.WARNING, line, "discover.error")
    if not ctx.json:
        for f in result.found:
            owner = "managed" if f["managed"] else "not managed"
            secret = "certsync secret" if f["managed_secret"] else "foreign secret"
            ctx.say(
                f"{f['location']}  {f['fingerprint'][:16]}  {f['subject']}  until {f['not_after'][:10]}  "
                f"{owner}, {secret}"
            )
        for r in result.destinations:
            ctx.say(
                f"destination {r.destination} ({r.kind}): {r.listed} secret(s), {len(r.observations)} with "
                f"certificates, {r.without_certificate} without, {len(r.errors)} error(s)"
            )
        s = result.summary
        ctx.say(
            f"recorded: {s.certificates_new} new certificate(s), {s.locations_new} new location(s), "
            f"{s.locations_gone} gone"
        )
    return result.as_dict()


def listing_failed(document: dict) -> bool:
    return any(d["listing_failed"] for d in document["destinations"])


@cli.command()
@command_options
@click.argument("key", metavar="FINGERPRINT|LOCATION")
@click.option("--as", "name", required=True, metavar="NAME", help="Name of the new [certificate.NAME].")
@click.option("--profile", required=True, help="Profile that will issue it (its rules are checked).")
@click.option("--append", is_flag=True, help="Append the stanza to the config file (atomically, mode kept).")
@pass_ctx
def adopt(ctx: Context, key: str, name: str, profile: str, append: bool) -> None:
    """Print (or append) the [certificate.NAME] stanza that replaces a discovered certificate."""
    proposal = ctx.app.adopt(key, name, profile)
    if proposal.refused:
        raise PolicyError("\n".join([f"profile {profile!r} would refuse (nothing appended):", *proposal.refused]))
    if append:
        ctx.app.adopt(key, name, profile, append_to=Path(ctx.config_path))
    for note in proposal.notes:
        diagnostic(logging.WARNING, note, "adopt.note")
    if ctx.json:
        ctx.emit({**proposal.as_dict(), "appended": str(ctx.config_path) if append else None})
        return
    if append:
        ctx.say(f"appended [certificate.{name}] to {ctx.config_path}")
    else:
        click.echo(proposal.stanza, nl=False)
    for dest in proposal.needs_adopt:
        ctx.say(
            f"# destination {dest!r} must be allowed to take over secrets certsync did not write: add\n"
            f"#   [destination.{dest}]\n#   adopt = true"
        )
    for dest, secret in proposal.targets:
        ctx.say_err(f"next: `certsync plan` shows the update adopting {dest}/{secret}; `certsync apply` replaces it")
