"""Runners that share the work: several `certsync apply --shared` on one store split it by quota domain.

Each runner walks the quota domains (AWS region, Google project, Azure vault), starting at its own
index so that N runners start on N different domains, and takes each domain's lock without
waiting: a domain another runner holds is skipped (that runner does it), a free one is planned
(only its destinations are listed) and applied. Issuance is shared by every domain, so it is
done under the store's run lock ("apply") and checked again under it: a certificate another
runner issued or renewed since this runner planned is not issued twice, only pushed. Each
domain's budget lives in the store (pacing.SharedBucket), so runners that meet in one domain
(a domain handed over, a `certsync push` alongside) stay under its quota together.

A domain done by one runner and then taken by another is planned again from the store and the
listings: everything is in sync, so nothing is written twice. Retirement (a certificate gone from
the config and from every destination) is recorded by a plain `certsync apply`, which sees all
domains at once.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import timedelta
from collections.abc import Callable, Iterable

from sync import logs
from sync.config import Config
from sync.reconcile import pacing
from sync.reconcile.plan import Action, Kind, Plan
from sync.reconcile.report import Report, Result, Status

log = logs.get("runners")
ISSUANCE_WAIT = timedelta(minutes=30)  # a runner waits this long for another's issuance (the run lock)


def domains(config: Config) -> dict[str, list[str]]:
    """Quota domain -> its destinations, domains in a stable order (every runner agrees)."""
    found: dict[str, list[str]] = defaultdict(list)
    for name in sorted(config.destination):
        found[pacing.quota_of(config.destination[name]).domain].append(name)
    return dict(sorted(found.items()))


def order(names: list[str], runner: int) -> list[str]:
    """The domains rotated so that runner k starts at domain k (mod their number)."""
    if not names:
        return []
    k = runner % len(names)
    return names[k:] + names[:k]


def lock_name(domain: str) -> str:
    """The store lock of one domain (lock names are short; domains carry endpoints)."""
    return "domain:" + hashlib.sha256(domain.encode()).hexdigest()[:24]


def split(plan: Plan) -> tuple[list[Action], list[Action]]:
    """(issuance, the rest): issuance runs under the run lock, the rest under the domain's."""
    issue = plan.of_kind(Kind.ISSUE, Kind.RENEW)
    rest = [a for a in plan.actions if a.kind not in (Kind.ISSUE, Kind.RENEW)]
    return issue, rest


def still_needed(
    actions: Iterable[Action], planned: dict[str, int | None], current: Callable[[list[str]], dict[str, int]]
) -> tuple[list[Action], list[Action]]:
    """(to issue, done by another runner): a certificate whose version in force is no longer
    the one this runner planned from (None: none) was issued or renewed meanwhile."""
    actions = list(actions)
    now = current([a.cert for a in actions])
    todo: list[Action] = []
    done: list[Action] = []
    for action in actions:
        (todo if now.get(action.cert) == planned.get(action.cert) else done).append(action)
    return todo, done


def after_issuance(rest: list[Action], failed: set[str]) -> tuple[list[Action], list[Result]]:
    """Pushes of certificates whose issuance failed are skipped, as in a plain apply."""
    keep, skipped = [], []
    for action in rest:
        if action.cert in failed and action.kind == Kind.PUSH:
            skipped.append(Result(action, Status.SKIPPED, "issuance failed"))
        else:
            keep.append(action)
    return keep, skipped


def merge(into: Report, part: Report) -> None:
    into.results.extend(part.results)
    into.stopped = into.stopped or part.stopped
    into.hooks.extend(part.hooks)
