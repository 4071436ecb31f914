"""`certsync agent`: keep certificate files on this host current (docs/agent.md). It reads only its
own config (--agent-config), never the store's."""

from __future__ import annotations

import json
import signal
import threading

import click

from sync.cli import cli
from sync.cli.context import Context, pass_ctx
from sync.cli.options import command_options


@cli.command()
@command_options
@click.option(
    "--agent-config",
    "agent_config",
    envvar="CERTSYNC_AGENT_CONFIG",
    default="agent.toml",
    show_default=True,
    metavar="PATH",
    help="The agent's config: a TOML file, or any file with an [agent] table (env CERTSYNC_AGENT_CONFIG).",
)
@click.option("--once", is_flag=True, help="Check every certificate once and exit (cron); exit 1 if any failed.")
@click.option("--force", is_flag=True, help="Renew now, even where the certificate is not due (on the first round).")
@pass_ctx
def agent(ctx: Context, agent_config: str, once: bool, force: bool) -> None:
    """Enroll, renew and deploy certificate files on this host through `certsync serve`'s REST API;
    the key is made here and never leaves the host. A daemon unless --once; SIGTERM stops it."""
    from sync.agent import config as agent_config_mod, files, loop
    from sync.agent.client import Client
    from sync.agent.deploy import Deployer, Outcome

    config = agent_config_mod.load(agent_config)
    for key, spec in config.certificate.items():  # bad owners, groups, folders: exit 2 before any request
        files.targets(spec, f"certificate.{key}")
    client = Client(
        config.server, config.token(), ca_bundle=config.ca_bundle, timeout=config.request_timeout.total_seconds()
    )
    deployer = Deployer(config, client)

    def show(outcome: Outcome) -> None:
        if ctx.json and not once:  # the daemon: one JSON object per line
            click.echo(json.dumps(outcome.as_dict(), default=str))
        elif not ctx.json and not (ctx.quiet and outcome.ok):  # -q: only failures (cron mails them)
            line = f"{outcome.certificate}: {outcome.status}: {outcome.message}"
            if outcome.reported is False:
                line += " (reporting to the server failed)"
            click.echo(line, err=not outcome.ok)

    if once:
        outcomes = loop.run_once(deployer, force=force)
        for outcome in outcomes:
            show(outcome)
        if ctx.json:
            ctx.emit({"certificates": [o.as_dict() for o in outcomes]})
        if not all(o.ok for o in outcomes):
            raise SystemExit(1)
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ctx.say_err(f"certsync agent: {len(config.certificate)} certificate(s), server {config.server}")
    loop.run_daemon(deployer, stop, show, force=force)
    ctx.say_err("certsync agent: stopped")
