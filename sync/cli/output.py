"""Turning results into output: plan and report lines, JSON documents, diagnostics on stderr,
and the GitHub Actions summary. The CLI is the only layer that prints."""

from __future__ import annotations

import logging
import os
import sys

import click

from sync import logs
from sync.jsonstream import Lazy
from sync.cli.context import Context
from sync.reconcile.deadline import MAX_DURATION_REACHED
from sync.reconcile.plan import Action, Kind, Plan
from sync.reconcile.report import Report, Result, Status


def action_dict(a: Action) -> dict:
    return {
        "action": a.kind,
        "certificate": a.cert,
        "destination": a.destination,
        "remote_name": a.remote_name,
        "reason": a.reason,
    }


def action_line(label: str, a: Action, extra: str = "") -> str:
    where = f" -> {a.destination}/{a.remote_name}" if a.destination else ""
    why = f" ({a.reason})" if a.reason else ""
    return f"{label:<10} {a.cert}{where}{why}{extra}"


def show_plan(ctx: Context, the_plan: Plan, detailed_exitcode: bool = False, warnings: list[str] | None = None) -> None:
    """Print a plan (text or one JSON document); exit 1 on errors, 2 on changes when asked.
    warnings (e.g. a profile that allows any name): on stderr, and in the document."""
    errors = the_plan.of_kind(Kind.ERROR)
    document = {"actions": Lazy(the_plan.actions, action_dict), "changes": len(the_plan.changes), "errors": len(errors)}
    if warnings is not None:
        document["warnings"] = warnings
    for warning in warnings or ():
        diagnostic(logging.WARNING, warning, "config.warning")
    if ctx.json:
        ctx.emit(document)
    else:
        for a in the_plan.actions:
            if a.kind != Kind.UNCHANGED or not ctx.quiet:
                click.echo(action_line(a.kind, a))
        ctx.say(
            f"\n{len(the_plan.changes)} change(s), "
            f"{len(the_plan.of_kind(Kind.UNCHANGED))} unchanged, {len(errors)} error(s)"
        )
        for a in errors:
            diagnostic(logging.ERROR, f"{a.destination}: {a.reason}", "plan.error")
    publish(ctx, document)
    if errors:
        sys.exit(1)
    if detailed_exitcode and the_plan.changes:
        sys.exit(2)


def report_document(report: Report) -> dict:
    destinations = report.by_destination()
    for destination, counts in report.hooks_by_destination().items():  # "hook ok" / "hook failed" beside the rest
        destinations.setdefault(destination, {}).update(counts)
    return {
        "results": Lazy(report.results, Result.as_dict),
        "summary": report.summary(),
        "hooks": [h.as_dict() for h in report.hooks],
        "destinations": dict(sorted(destinations.items())),
        "seconds": round(report.seconds, 3),
        "ok": not report.failed and not report.stopped and not report.hooks_failed,
    }


def finish(ctx: Context, report: Report) -> None:
    """Print a run's report; exit 1 when anything failed or --max-duration stopped it."""
    document = report_document(report)
    if ctx.json:
        ctx.emit(document)
    else:
        for r in report.results:
            if r.status == Status.FAILED:
                continue
            if r.status != Status.UNCHANGED or not ctx.quiet:
                label = r.action.kind if r.status == Status.DONE else r.status
                ctx.say(action_line(label, r.action, f": {r.detail}" if r.detail else ""))
        for h in report.hooks:
            if h.ok:
                retry = f" (attempt {h.attempt})" if h.attempt > 1 else ""
                ctx.say(f"{'hook':<10} {h.cert} -> {h.destination}/{h.remote_name}: {h.hook} ok{retry}")
        summary = ", ".join(f"{v} {k}" for k, v in sorted(report.summary().items())) or "nothing to do"
        ctx.say(f"\n{summary} in {report.seconds:.2f}s")
        for destination, counts in document["destinations"].items():
            ctx.say(f"  {destination}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    for r in report.failed if not logs.json_enabled() else ():  # json logs: apply logged each one
        where = f"{r.action.destination}/{r.action.remote_name}" if r.action.destination else r.action.cert
        click.echo(f"error: {r.action.kind} {r.action.cert} -> {where}: {logs.redact(r.error or '')}", err=True)
    for h in report.hooks_failed if not logs.json_enabled() else ():  # json logs: hooks logged each one
        click.echo(
            f"error: deploy hook {h.hook} {h.cert} -> {h.destination}/{h.remote_name} failed "
            f"(attempt {h.attempt}; the push stands, the hook runs again on the next run): "
            f"{logs.redact(h.error or '')}",
            err=True,
        )
    if report.stopped:
        skipped = sum(1 for r in report.results if r.status == Status.SKIPPED and r.error == MAX_DURATION_REACHED)
        diagnostic(logging.ERROR, f"run stopped: {report.stopped}; {skipped} action(s) not started", "run.stopped")
    logs.get("run").info(
        ", ".join(f"{v} {k}" for k, v in sorted(report.summary().items())) or "nothing to do",
        extra={"event": "run.finished", "command": click.get_current_context().info_name},
    )
    publish(ctx, document)
    if report.failed or report.stopped or report.hooks_failed:
        sys.exit(1)


def diagnostic(level: int, message: str, event: str) -> None:
    """A warning or error line on stderr: `error: ...` text, or a JSON record with --log-format json."""
    if logs.json_enabled():
        logs.get("cli").log(level, message, extra={"event": event})
    else:
        click.echo(f"{logging.getLevelName(level).lower()}: {logs.redact(message)}", err=True)


def append_env_file(variable: str, text: str) -> None:
    """Append to the file a GitHub Actions variable names ($GITHUB_STEP_SUMMARY, $GITHUB_OUTPUT)."""
    path = os.environ.get(variable)
    if path and text:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")


def publish(ctx: Context, document: dict) -> None:
    """--github: append the Markdown summary to $GITHUB_STEP_SUMMARY, the step outputs to
    $GITHUB_OUTPUT, and print one annotation per failure: on stdout, or on stderr with
    --output json (stdout keeps its one document; the runner reads commands from both)."""
    if not ctx.github:
        return
    from sync.cli import github

    document = logs.redact_document(document)
    command = click.get_current_context().info_name or "run"
    certificates = document.get("certificates")
    if certificates is None:
        try:  # expiry dates, from the store only (no cloud call); best effort: the run is done
            certificates = logs.redact_document([r.as_dict() for r in ctx.app.inventory().certificates])
        except Exception:
            certificates = None
    append_env_file("GITHUB_STEP_SUMMARY", github.markdown(command, document, certificates))
    append_env_file("GITHUB_OUTPUT", "".join(f"{k}={v}\n" for k, v in github.outputs(document).items()))
    for line in github.annotation_lines(document):
        click.echo(line, err=ctx.json)


def publish_error(ctx: Context | None, command: str, message: str) -> None:
    """--github, for a run stopped before it had a document: one annotation and a summary line."""
    if ctx is None or not ctx.github:
        return
    from sync.cli import github

    message = logs.redact(message)
    append_env_file("GITHUB_STEP_SUMMARY", github.error_markdown(command, message))
    click.echo(github.workflow_command("error", message, title=f"certsync {command} failed"), err=True)
