"""Alerts: one webhook POST after a run that has something to say.

Configured by `[notify]`: `webhook_url`, `format` (`json` | `slack`), `expiring_within`. After
`apply`, `push`, `renew` and `revoke` the CLI calls `after_run`, which gathers what the store knows
(sync.inventory), builds the events (`build_events`, pure) and, when there is at least one, renders one
body (`render`, pure) and POSTs it with a timeout and one retry.

Event types (each with a severity):

- `failure` (error): an action that failed, or a run stopped by --max-duration;
- `renewal` (info): a certificate renewed (a new version issued for one in force);
- `revocation` (info): a certificate revoked;
- `expiring` (warning; error once expired): an active certificate whose not_after is within
  `expiring_within`;
- `ca_expiring` (warning; error once expired): a CA likewise;
- `stale_copy` (warning): a copy in a cloud that does not carry the certificate's current active
  version (a failed sync left it behind, or the version it carries was revoked);
- `discovered` (warning; error once expired): a certificate `certsync discover` found, still seen
  somewhere, with problems (sync.found: expired, expiring within [discovery] expiring_within,
  weak-key, weak-signature, untrusted chain, hostname-mismatch, incomplete-chain). Alerted after
  `discover` and after every other run, once per repeat_every while the same problems stand.

A webhook that fails is never a failed run: `after_run` returns a warning that names the setting
(`notify.webhook_url`) and never the URL, which for Slack embeds a token.
"""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from collections.abc import Iterable

from sync.inventory import DeploymentView, ca_not_after
from sync import logs
from sync.clock import rfc3339, utcnow
from sync.reconcile.deadline import MAX_DURATION_REACHED
from sync.webhook import (
    RETRY_PAUSE_SECONDS,
    TIMEOUT_SECONDS,
    DeliveryError,
    send,  # noqa: F401 (re-exported)
    why as _why,
)

if TYPE_CHECKING:
    from sync.app import App
    from sync.store import Store

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
TYPE_TITLES = {
    "failure": "Failures",
    "stale_copy": "Stale copies in the clouds",
    "expiring": "Certificates expiring",
    "ca_expiring": "CAs expiring",
    "renewal": "Renewals",
    "revocation": "Revocations",
    "discovered": "Found certificates with problems",
}


@dataclass(frozen=True)
class Event:
    type: str  # failure | renewal | revocation | expiring | ca_expiring | stale_copy
    severity: str  # error | warning | info
    message: str
    certificate: str | None = None
    ca: str | None = None
    destination: str | None = None
    remote_name: str | None = None
    not_after: datetime | None = None
    fingerprint: str | None = None  # discovered: the found certificate (SHA-256, hex)
    problems: tuple[str, ...] = ()  # discovered: what is wrong with it

    def as_dict(self) -> dict:
        found = {"fingerprint": self.fingerprint, "problems": list(self.problems)} if self.fingerprint else {}
        return {
            "type": self.type,
            "severity": self.severity,
            "message": self.message,
            "certificate": self.certificate,
            "ca": self.ca,
            "destination": self.destination,
            "remote_name": self.remote_name,
            "not_after": rfc3339(self.not_after) if self.not_after else None,
            **found,
        }


def _days(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.1f} days"


def build_events(
    report,
    inventory,
    deployments: Iterable[DeploymentView],
    *,
    now: datetime,
    expiring_within: timedelta,
    revocations: Iterable[dict] = (),
    discovered: Iterable = (),
) -> list[Event]:
    """The events of a run, pure: from its report (apply.Report or None), the inventory after it
    (inventory.Inventory), the copies in the clouds (inventory.DeploymentView) and what was revoked
    (App.revoke's summaries). Errors first, then warnings, then information."""
    events: list[Event] = []
    if report is not None:
        for r in report.results:
            a = r.action
            where = f" -> {a.destination}/{a.remote_name}" if a.destination else ""
            if r.status == "failed":
                events.append(
                    Event(
                        "failure",
                        "error",
                        f"{a.kind} {a.cert}{where}: {r.error}",
                        a.cert,
                        destination=a.destination,
                        remote_name=a.remote_name,
                    )
                )
            elif r.status == "done" and a.kind == "renew":
                events.append(Event("renewal", "info", f"{a.cert} renewed ({a.reason}): {r.detail}", a.cert))
        for h in getattr(report, "hooks", ()):
            if not h.ok:  # the push stands; the hook runs again on the next run
                events.append(
                    Event(
                        "failure",
                        "error",
                        f"deploy hook {h.hook} {h.cert} -> {h.destination}/{h.remote_name}: {h.error}",
                        h.cert,
                        destination=h.destination,
                        remote_name=h.remote_name,
                    )
                )
        not_started = [r for r in report.results if r.status == "skipped" and r.error == MAX_DURATION_REACHED]
        stopped = getattr(report, "stopped", None)
        if stopped or not_started:
            events.append(
                Event(
                    "failure",
                    "error",
                    f"run stopped: {stopped or MAX_DURATION_REACHED}; {len(not_started)} action(s) not started",
                )
            )
    for item in revocations:
        events.append(
            Event(
                "revocation",
                "info",
                f"{item['certificate']} serial {item['serial']} revoked "
                f"({item['reason']}); CRL {item['ca']} #{item['crl_number']}",
                item["certificate"],
                ca=item.get("ca"),
            )
        )
    for d in deployments:
        if not d.stale:
            continue
        carried = f"version {d.version}" if d.version is not None else "an unknown version"
        current = (
            f"the store's current version is {d.current_version}"
            if d.current_version is not None
            else "the certificate has no active version (revoked or retired)"
        )
        pushed = f", last pushed {d.pushed_at:%Y-%m-%d %H:%M}Z" if d.pushed_at else ""
        events.append(
            Event(
                "stale_copy",
                "warning",
                f"{d.certificate} in {d.destination}/{d.remote_name} carries {carried}; {current}{pushed}",
                d.certificate,
                destination=d.destination,
                remote_name=d.remote_name,
            )
        )
    horizon = now + expiring_within
    for row in inventory.certificates:
        if row.state != "active" or row.not_after > horizon:
            continue
        left = row.not_after - now
        text = f"expired {_days(-left)} ago" if left.total_seconds() <= 0 else f"expires in {_days(left)}"
        events.append(
            Event(
                "expiring",
                "error" if left.total_seconds() <= 0 else "warning",
                f"{row.name} version {row.version} {text} ({row.not_after:%Y-%m-%d %H:%M}Z)",
                row.name,
                not_after=row.not_after,
            )
        )
    for ca in inventory.authorities:
        not_after = ca_not_after(ca)
        if not_after > horizon:
            continue
        left = not_after - now
        text = f"expired {_days(-left)} ago" if left.total_seconds() <= 0 else f"expires in {_days(left)}"
        events.append(
            Event(
                "ca_expiring",
                "error" if left.total_seconds() <= 0 else "warning",
                f"CA {ca['name']} ({ca['subject']}) {text} ({not_after:%Y-%m-%d %H:%M}Z)",
                ca=ca["name"],
                not_after=not_after,
            )
        )
    events += _discovered(discovered, now)
    events.sort(key=lambda e: SEVERITY_ORDER[e.severity])  # stable: keeps the order within a severity
    return events


def _discovered(rows: Iterable, now: datetime) -> list[Event]:
    """One event per found certificate with problems (sync.found.FoundRow)."""
    events = []
    for row in rows:
        if not row.problems:
            continue
        left = row.not_after - now
        when = f"expired {_days(-left)} ago" if left.total_seconds() <= 0 else f"expires in {_days(left)}"
        where = row.locations[0]["location"] if row.locations else "?"
        more = f" (+{len(row.locations) - 1} more)" if len(row.locations) > 1 else ""
        events.append(
            Event(
                "discovered",
                "error" if "expired" in row.problems else "warning",
                f"found {row.subject} at {where}{more}: {', '.join(row.problems)}; {when} "
                f"({row.not_after:%Y-%m-%d %H:%M}Z), fingerprint {row.fingerprint[:16]}",
                not_after=row.not_after,
                fingerprint=row.fingerprint,
                problems=tuple(row.problems),
            )
        )
    return events


# --- bodies ---------------------------------------------------------------------------------------


def _headline(command: str, events: list[Event]) -> str:
    counts: dict[str, int] = {}
    for e in events:
        counts[e.type] = counts.get(e.type, 0) + 1
    return f"certsync {command}: " + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items())


def render(
    events: list[Event],
    fmt: str,
    *,
    command: str,
    host: str | None = None,
    now: datetime | None = None,
    summary: dict | None = None,
) -> dict:
    """The webhook body: generic JSON, or Slack's {"text", "blocks"} (Block Kit)."""
    host = host or socket.gethostname()
    stamp = rfc3339(now or utcnow())
    if fmt == "slack":
        return _slack(events, command=command, host=host, stamp=stamp)
    counts: dict[str, int] = {}
    for e in events:
        counts[e.type] = counts.get(e.type, 0) + 1
    return {
        "source": "certsync",
        "command": command,
        "host": host,
        "time": stamp,
        "ok": not any(e.severity == "error" for e in events),
        "summary": summary or {},
        "counts": counts,
        "events": [e.as_dict() for e in events],
    }


SLACK_SECTION_LIMIT = 3000  # characters in one section's text
SLACK_HEADER_LIMIT = 150
_ICONS = {"error": ":red_circle:", "warning": ":warning:", "info": ":information_source:"}


def _mrkdwn(text: str) -> str:
    """Slack's three control characters, escaped as its docs say."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(events: list[Event], *, command: str, host: str, stamp: str) -> dict:
    headline = _headline(command, events)
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True, "text": headline[:SLACK_HEADER_LIMIT]}}
    ]
    by_type: dict[str, list[Event]] = {}
    for e in events:
        by_type.setdefault(e.type, []).append(e)
    for kind, items in by_type.items():
        lines = [f"*{TYPE_TITLES.get(kind, kind)}* ({len(items)})"]
        used = len(lines[0])
        for n, e in enumerate(items):
            line = f"{_ICONS[e.severity]} {_mrkdwn(e.message)}"
            if used + len(line) + 40 > SLACK_SECTION_LIMIT:
                lines.append(f"… and {len(items) - n} more")
                break
            lines.append(line)
            used += len(line) + 1
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _mrkdwn(f"{host} · {stamp}")}]})
    return {"text": headline, "blocks": blocks[:50]}


# --- delivery -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    events: list[Event] = field(default_factory=list)
    sent: bool = False
    warning: str | None = None  # one line for stderr, never with the URL


def after_run(
    app: App,
    command: str,
    report=None,
    *,
    revocations: Iterable[dict] = (),
    timeout: float = TIMEOUT_SECONDS,
    pause: float = RETRY_PAUSE_SECONDS,
) -> Outcome | None:
    """Gather, build, render and send; None when [notify] has no webhook_url. Never raises."""
    settings = app.config.notify
    if settings is None or not settings.webhook_url:
        return None
    logs.add_secret(settings.webhook_url)
    outcome = Outcome()
    try:
        now = app.now
        gathered = app.alert_facts(settings.expiring_within)  # only what alerts need, set-based
        outcome.events = build_events(
            report,
            gathered.inventory,
            gathered.deployments,
            now=now,
            expiring_within=settings.expiring_within,
            revocations=revocations,
            discovered=gathered.discovered,
        )
        outcome.events, marks = _not_alerted_lately(app.store, outcome.events, now, settings.repeat_every)
        if not outcome.events:
            return outcome
        body = render(
            outcome.events,
            settings.format,
            command=command,
            now=now,
            summary=report.summary() if report is not None else None,
        )
        send(settings.webhook_url, body, timeout=timeout, pause=pause)
        outcome.sent = True
        _remember(app.store, marks, now)
    except DeliveryError as exc:
        outcome.warning = f"notify.webhook_url: alert not delivered: {exc}"
    except Exception as exc:  # gathering failed (store): still only a warning
        outcome.warning = f"notify: alert not built: {logs.redact(_why(exc) if not str(exc) else str(exc))}"
    return outcome


# --- standing conditions are alerted once per repeat_every -------------------------------------------

STANDING = frozenset({"expiring", "ca_expiring", "stale_copy", "discovered"})


def _mark(event: Event) -> str:
    """The store key of a standing condition (a settings row): same condition, same key."""
    text = "|".join(
        str(x)
        for x in (event.type, event.certificate, event.ca, event.destination, event.remote_name, event.not_after)
        + ((event.fingerprint, ",".join(event.problems)) if event.fingerprint else ())
    )
    return "notify:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _not_alerted_lately(
    store: Store, events: list[Event], now: datetime, repeat_every: timedelta
) -> tuple[list[Event], list[str]]:
    """Drop standing conditions alerted less than repeat_every ago; return the marks to set."""
    if not any(e.type in STANDING for e in events):
        return events, []
    keep, marks = [], []
    with store.transaction() as tx:
        sent_at = tx.settings.get_many(_mark(e) for e in events if e.type in STANDING)  # one query per 500
    for event in events:
        if event.type in STANDING:
            key = _mark(event)
            sent = sent_at.get(key)
            if sent is not None and now - datetime.fromisoformat(sent.decode()) < repeat_every:
                continue
            marks.append(key)
        keep.append(event)
    return keep, marks


def _remember(store: Store, marks: list[str], now: datetime) -> None:
    if not marks:
        return
    with store.transaction() as tx:
        tx.settings.put_many(dict.fromkeys(marks, now.isoformat().encode()))
