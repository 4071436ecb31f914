"""The global options, accepted before or after the subcommand: `certsync --output json list`
and `certsync list --output json` are the same (users of aws, gh and kubectl type the latter).

The group declares them with their defaults; each subcommand declares them again without
defaults, and a value given there overrides the group's (callbacks on the shared Context).
"""

from __future__ import annotations

from collections.abc import Callable

import click

from sync.cli.context import Context

OUTPUT = click.Choice(["text", "json"])
LOG_FORMAT = click.Choice(["text", "json"])
# (param decls, attribute on Context, extra click.option arguments, help)
GLOBAL_OPTIONS: list[tuple[tuple[str, ...], str, dict, str]] = [
    (
        ("--config",),
        "config_path",
        {"envvar": "CERTSYNC_CONFIG", "metavar": "PATH"},
        "Config file (env CERTSYNC_CONFIG; default sync.toml).",
    ),
    (("--output",), "output", {"type": OUTPUT}, "Output format; json prints one document on stdout (default text)."),
    (("-q", "--quiet"), "quiet", {"is_flag": True}, "Print only errors (for cron)."),
    (("--debug",), "debug", {"is_flag": True}, "Show tracebacks for errors."),
    (
        ("--log-format",),
        "log_format",
        {"type": LOG_FORMAT, "envvar": "CERTSYNC_LOG_FORMAT"},
        "stderr: text lines, or one JSON object per line (time, level, event, certificate, destination, "
        "message) for log collectors (env CERTSYNC_LOG_FORMAT; default text).",
    ),
    (
        ("--github",),
        "github",
        {"is_flag": True, "envvar": "CERTSYNC_GITHUB"},
        "In GitHub Actions: write a Markdown step summary, step outputs and ::error annotations "
        "(env CERTSYNC_GITHUB=true).",
    ),
]
DEFAULTS = {
    "config_path": "sync.toml",
    "output": "text",
    "quiet": False,
    "debug": False,
    "log_format": "text",
    "github": False,
}


def group_options(command: Callable) -> Callable:
    """On the group: each option with its default and env var."""
    for decls, attr, extra, help_text in reversed(GLOBAL_OPTIONS):
        command = click.option(*decls, attr, default=DEFAULTS[attr], show_default=True, help=help_text, **extra)(
            command
        )
    return command


def _override(attr: str):
    def callback(ctx: click.Context, _param: click.Parameter, value):
        if value is None or (value is False):  # not given after the subcommand: the group's value stands
            return
        obj = ctx.find_object(Context)
        if obj is not None:
            setattr(obj, attr, value)
            if attr in ("quiet", "debug", "log_format"):
                obj.setup_logging()

    return callback


def command_options(command: Callable) -> Callable:
    """On every subcommand: the same options, no defaults and no env vars (the group read them)."""
    for decls, attr, extra, help_text in reversed(GLOBAL_OPTIONS):
        extra = {k: v for k, v in extra.items() if k != "envvar"}
        flag = extra.get("is_flag", False)
        command = click.option(
            *decls,
            f"_{attr}",
            default=False if flag else None,
            expose_value=False,
            callback=_override(attr),
            help=help_text,
            **extra,
        )(command)
    return command
