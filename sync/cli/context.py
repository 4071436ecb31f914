"""What every command shares: the global options, the config (loaded on first use), and one
application object per run, closed when the command ends."""

from __future__ import annotations

import sys

import click

from sync import config as config_mod, jsonstream, logs
from sync.app import App


class Context:
    def __init__(self, config_path: str, output: str, quiet: bool, debug: bool, github: bool, log_format: str) -> None:
        self.config_path, self.output, self.quiet, self.debug = config_path, output, quiet, debug
        self.github, self.log_format = github, log_format
        self._config: config_mod.Config | None = None
        self._app: App | None = None

    def setup_logging(self) -> None:
        logs.setup(self.log_format, quiet=self.quiet, debug=self.debug)

    @property
    def config(self) -> config_mod.Config:
        if self._config is None:
            self._config = config_mod.load(self.config_path)
            self._warn_insecure_transports(self._config)
        return self._config

    @staticmethod
    def _warn_insecure_transports(config: config_mod.Config) -> None:
        """One warning line per destination whose transport is insecure (allowed only on loopback
        or with allow_insecure_transport), on every run that loads the config."""
        import logging
        from sync.cli.output import diagnostic

        for name, dest in config.destination.items():
            what = dest.insecure_transport()
            if what:
                diagnostic(
                    logging.WARNING, f"destination {name!r}: insecure transport: {what}", "config.insecure_transport"
                )

    @property
    def app(self) -> App:
        if self._app is None:
            self._app = App(self.config)
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None

    @property
    def json(self) -> bool:
        return self.output == "json"

    # What a command was asked to print as is (export's payload, sign's chain, a CRL, metrics).
    PAYLOAD_KEYS = frozenset({"payload", "chain_pem", "crl_pem", "metrics"})

    def emit(self, document) -> None:
        """The one JSON document of --output json, on stdout; every other string redacted
        (error text may repeat a URL with credentials in it)."""
        jsonstream.write(logs.redact_document(document, self.PAYLOAD_KEYS), sys.stdout)

    def say(self, text: str = "") -> None:
        if not self.quiet:
            click.echo(text)

    def say_err(self, text: str) -> None:
        """A note for the person at the terminal, on stderr (stdout carries only what was asked for)."""
        if not self.quiet:
            click.echo(text, err=True)


pass_ctx = click.make_pass_decorator(Context)
