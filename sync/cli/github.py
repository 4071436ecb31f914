"""GitHub Actions: certsync's JSON documents -> step-summary Markdown, workflow-command annotations
and step outputs.

Pure functions over the documents `--output json` prints (a report from apply/push/renew/retire,
a plan, a list), so a saved report renders the same as a live one. `certsync --github` (sync/cli/output.py)
writes what they return: the Markdown to $GITHUB_STEP_SUMMARY, the outputs to $GITHUB_OUTPUT, the
annotations to stdout (stderr with --output json; the runner reads workflow commands from both).

`certificates`, where a function takes it, is the `certificates` list of `list --output json`
(name, version, serial, not_after, days_left, ...): it gives the expiry dates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

VERBS = {"issue": "issued", "renew": "renewed", "push": "pushed", "delete": "deleted"}
CHANGE_KINDS = tuple(VERBS)
SUMMARY_ORDER = [
    ("issue", "issued"),
    ("renew", "renewed"),
    ("push", "pushed"),
    ("delete", "deleted"),
    ("failed", "failed"),
    ("skipped", "skipped"),
    ("unchanged", "unchanged"),
]
STATUS_MARK = {"done": "✅", "failed": "❌", "skipped": "⏭️", "unchanged": "➖"}


# --- workflow commands ---------------------------------------------------------------------------


def escape_data(text: object) -> str:
    """A workflow command's message: '%' first, then CR and LF (as @actions/core does)."""
    return str(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: object) -> str:
    """A workflow command's property value: as a message, plus ':' and ',' (they end a property)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(name: str, message: object, **properties: object) -> str:
    props = ",".join(f"{key}={escape_property(value)}" for key, value in properties.items() if value is not None)
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def annotation_lines(document: Mapping) -> list[str]:
    """One `::error` line per failure in a report or plan, one `::warning` per list warning."""
    lines = []
    results = document.get("results", [])
    for r in results:
        if r.get("status") == "failed":
            lines.append(
                workflow_command(
                    "error",
                    f"{r['action']} {_target(r)}: {r.get('error') or 'failed'}",
                    title=f"certsync {r['action']} {r['certificate']} failed",
                )
            )
    hooks_failed = [h for h in document.get("hooks", []) if h.get("status") == "failed"]
    for h in hooks_failed:
        lines.append(
            workflow_command(
                "error",
                f"deploy hook {h['hook']} {h['certificate']} -> {h['destination']}/"
                f"{h['remote_name']}: {h.get('error') or 'failed'} (the push stands)",
                title=f"certsync deploy hook for {h['certificate']} failed",
            )
        )
    if document.get("ok") is False and not hooks_failed and not any(r.get("status") == "failed" for r in results):
        skipped = [r for r in results if r.get("status") == "skipped"]  # e.g. --max-duration stopped the run
        why = f": {skipped[0].get('error')}" if skipped and skipped[0].get("error") else ""
        lines.append(
            workflow_command("error", f"{len(skipped)} action(s) not done{why}", title="certsync run incomplete")
        )
    for a in document.get("actions", []):
        if a.get("action") == "error":
            lines.append(
                workflow_command(
                    "error", f"{_target(a)}: {a.get('reason')}", title=f"certsync cannot plan {a['certificate']}"
                )
            )
    for warning in document.get("warnings", []):
        lines.append(workflow_command("warning", warning, title="certsync"))
    return lines


def outputs(document: Mapping) -> dict[str, str]:
    """Step outputs: `changes` (made, or planned), `failed`, `ok`."""
    if "results" in document:
        changes = sum(1 for r in document["results"] if r["status"] == "done" and r["action"] in CHANGE_KINDS)
        failed = sum(1 for r in document["results"] if r["status"] == "failed")
    elif "actions" in document:
        changes, failed = document.get("changes", 0), document.get("errors", 0)
    else:
        changes, failed = 0, 0
    ok = document.get("ok", not failed)  # a report's ok is also false when a run was stopped early
    return {"changes": str(changes), "failed": str(failed), "ok": "true" if ok and not failed else "false"}


# --- Markdown ------------------------------------------------------------------------------------


def markdown(command: str, document: Mapping, certificates: Iterable[Mapping] | None = None) -> str:
    """The step summary for any of certsync's documents, ending in a blank line (summaries of
    several runs in one job are appended to one file)."""
    if "results" in document:
        text = report_markdown(command, document, certificates)
    elif "actions" in document:
        text = plan_markdown(document, certificates)
    elif "certificates" in document:
        text = list_markdown(document)
    else:
        raise ValueError(f"not a certsync report, plan or list document: keys {sorted(document)}")
    return text.rstrip("\n") + "\n\n"


def report_markdown(command: str, document: Mapping, certificates: Iterable[Mapping] | None = None) -> str:
    """What a run issued, renewed, pushed, deleted and failed, with each certificate's expiry."""
    expiry = _expiry(certificates)
    counts = document.get("summary", {})
    done = ", ".join(f"{counts[key]} {word}" for key, word in SUMMARY_ORDER if counts.get(key)) or "nothing to do"
    lines = [f"### {'✅' if document.get('ok', True) else '❌'} certsync {command}: {done}", ""]
    rows = sorted((r for r in document["results"] if r["status"] != "unchanged"), key=lambda r: r["certificate"])
    if rows:
        lines += _table(
            ["", "Certificate", "Action", "Destination", "Secret", "Expires (UTC)", "Details"],
            [
                [
                    STATUS_MARK.get(r["status"], ""),
                    r["certificate"],
                    _outcome(r),
                    r.get("destination"),
                    r.get("remote_name"),
                    expiry.get(r["certificate"]),
                    r.get("error") or r.get("detail"),
                ]
                for r in rows
            ],
        )
        lines.append("")
    unchanged = len(document["results"]) - len(rows)
    if unchanged:
        lines += [f"{unchanged} destination(s) already up to date.", ""]
    if "seconds" in document:
        lines += [f"Took {document['seconds']:.1f} s.", ""]
    return "\n".join(lines)


def plan_markdown(document: Mapping, certificates: Iterable[Mapping] | None = None) -> str:
    """What `apply` would do: one row per change or error; the unchanged counted."""
    expiry = _expiry(certificates)
    actions = document["actions"]
    rows = [a for a in actions if a["action"] != "unchanged"]
    errors = document.get("errors", 0)
    head = f"{document.get('changes', 0)} change(s)" + (f", {errors} error(s)" if errors else "")
    lines = [f"### {'❌' if errors else '📋'} certsync plan: {head}", ""]
    if rows:
        lines += _table(
            ["Action", "Certificate", "Destination", "Secret", "Current expiry (UTC)", "Reason"],
            [
                [
                    a["action"],
                    a["certificate"],
                    a.get("destination"),
                    a.get("remote_name"),
                    expiry.get(a["certificate"]),
                    a.get("reason"),
                ]
                for a in rows
            ],
        )
        lines.append("")
    unchanged = len(actions) - len(rows)
    if unchanged:
        lines += [f"{unchanged} destination(s) already up to date.", ""]
    if not actions:
        lines += ["Nothing to do.", ""]
    return "\n".join(lines)


def list_markdown(document: Mapping) -> str:
    """The inventory: every certificate with its expiry and how many destinations are in sync."""
    lines = [f"### certsync list: {len(document['certificates'])} certificate(s)", ""]
    if document["certificates"]:
        lines += _table(
            ["Certificate", "State", "Version", "Serial", "Expires (UTC)", "In sync"],
            [
                [
                    c["name"],
                    c["state"],
                    c["version"],
                    _short(c["serial"]),
                    _when(c),
                    f"{c.get('destinations_in_sync', '?')}/{c.get('destinations', '?')}",
                ]
                for c in document["certificates"]
            ],
        )
        lines.append("")
    if document.get("cas"):
        lines += _table(
            ["CA", "Subject", "Expires (UTC)"], [[ca["name"], ca["subject"], _when(ca)] for ca in document["cas"]]
        )
        lines.append("")
    lines += [f"> **Warning:** {_cell(w)}" for w in document.get("warnings", [])]
    return "\n".join(lines)


def error_markdown(command: str, message: str) -> str:
    """A run that stopped before it had a report (bad config, store locked, ...)."""
    return f"### ❌ certsync {command} failed\n\n```\n{message.replace('```', '` ` `')}\n```\n\n"


# --- helpers ---------------------------------------------------------------------------------------


def _target(item: Mapping) -> str:
    if item.get("destination"):
        return f"{item['certificate']} -> {item['destination']}/{item.get('remote_name') or item['certificate']}"
    return item["certificate"]


def _outcome(result: Mapping) -> str:
    kind, status = result["action"], result["status"]
    if status == "done":
        return VERBS.get(kind, kind)
    return f"{kind} {status}"


def _expiry(certificates: Iterable[Mapping] | None) -> dict[str, str]:
    return {c["name"]: _when(c) for c in certificates or []}


def _when(item: Mapping) -> str:
    """'2025-03-01 (89.9 days)' from an RFC 3339 not_after and days_left."""
    date = str(item.get("not_after", ""))[:10]
    days = item.get("days_left")
    return f"{date} ({days:g} days)" if isinstance(days, (int, float)) else date


def _short(serial: str) -> str:
    return serial if len(serial) <= 16 else serial[:16] + "…"


def _cell(value: object) -> str:
    """Table-safe text: no line breaks, '|' escaped, HTML characters as entities."""
    if value is None or value == "":
        return "—"
    text = " ".join(str(value).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _table(header: list[str], rows: Iterable[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines
