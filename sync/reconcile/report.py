"""What a run did: one Result per action, and the Report the CLI, alerts and GitHub read."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum

from sync.pki import render
from sync.reconcile.hooks import HookResult
from sync.reconcile.plan import Action, Kind


class Status(StrEnum):
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNCHANGED = "unchanged"


@dataclass(slots=True)
class Job:
    action: Action
    payload: render.Payload | None = None
    certificate_id: int | None = None
    fingerprint: str | None = None  # of the payload that landed (kept once the payload is dropped)
    facts: dict | None = None  # for the destination's deploy hooks (hooks.facts_of); None: no hooks


@dataclass(slots=True)
class Result:
    action: Action
    status: Status
    error: str | None = None
    detail: str = ""  # e.g. the new serial or the provider version id
    job: Job | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        a = self.action
        return {
            "action": a.kind,
            "certificate": a.cert,
            "destination": a.destination,
            "remote_name": a.remote_name,
            "reason": a.reason,
            "status": self.status,
            "error": self.error,
            "detail": self.detail,
        }


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None  # set when --max-duration left actions unstarted (the run fails)
    hooks: list[HookResult] = field(default_factory=list)  # deploy hooks run (after pushes, or retried)

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status == Status.FAILED]

    @property
    def hooks_failed(self) -> list[HookResult]:
        """Deploy hooks that failed: the run fails, the pushes stand (sync.reconcile.hooks)."""
        return [h for h in self.hooks if not h.ok]

    def hooks_by_destination(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for h in self.hooks:
            table[h.destination][f"hook {'ok' if h.ok else 'failed'}"] += 1
        return {dest: dict(counts) for dest, counts in sorted(table.items())}

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for r in self.results:
            key = r.status if r.status in (Status.FAILED, Status.SKIPPED, Status.UNCHANGED) else r.action.kind
            counts[key] += 1
        return dict(counts)

    def by_destination(self) -> dict[str, dict[str, int]]:
        """created, updated, pushed (forced, state unknown), unchanged, deleted, failed, skipped."""
        table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for r in self.results:
            a = r.action
            if a.destination is None:
                continue
            key: str
            if r.status in (Status.FAILED, Status.SKIPPED, Status.UNCHANGED):
                key = r.status
            elif a.kind == Kind.DELETE:
                key = "deleted"
            elif a.kind == Kind.ADOPT:
                key = "adopted"
            else:
                key = {True: "updated", False: "created", None: "pushed"}[a.exists]
            table[a.destination][key] += 1
        return {dest: dict(counts) for dest, counts in sorted(table.items())}
