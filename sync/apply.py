"""Carrying out a plan: issue and renew, then push and delete per destination.

One failure does not stop the run: every other action still happens, and the report says what
failed and where (certbot's "carry on, then fail at the end"). Quota domains (a region, a
project, a vault) run in parallel; inside one, up to `concurrency` actions are in flight, paced by
the domain's token bucket; no two actions of a run touch the same secret. Only the main thread
touches the store.
"""
from __future__ import annotations

import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable

from providers.base import ownership_labels
from sync import cron, enroll, logs, pacing, render, verify
from sync.config import Config
from sync.errors import CertsyncError, one_line
from sync.plan import Action, Plan
from sync.state import ProviderFactory, render_options
from sync.store import Store

log = logs.get("apply")


@dataclass
class Result:
    action: Action
    status: str            # done | failed | skipped | unchanged
    error: str | None = None
    detail: str = ""       # e.g. the new serial or the provider version id
    job: "Job | None" = field(default=None, repr=False)

    def as_dict(self) -> dict:
        a = self.action
        return {"action": a.kind, "certificate": a.cert, "destination": a.destination,
                "remote_name": a.remote_name, "reason": a.reason, "status": self.status,
                "error": self.error, "detail": self.detail}


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None   # set when --max-duration left actions unstarted (the run fails)

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status == "failed"]

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for r in self.results:
            key = r.status if r.status in ("failed", "skipped", "unchanged") else r.action.kind
            counts[key] += 1
        return dict(counts)

    def by_destination(self) -> dict[str, dict[str, int]]:
        """created, updated, pushed (forced, state unknown), unchanged, deleted, failed, skipped."""
        table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for r in self.results:
            a = r.action
            if a.destination is None:
                continue
            if r.status in ("failed", "skipped", "unchanged"):
                key = r.status
            elif a.kind == "delete":
                key = "deleted"
            else:
                key = {True: "updated", False: "created", None: "pushed"}[a.exists]
            table[a.destination][key] += 1
        return {dest: dict(counts) for dest, counts in sorted(table.items())}


def execute(config: Config, store: Store, plan: Plan, providers: ProviderFactory, *,
            retired: Iterable[str] = (), now: datetime | None = None, progress=None,
            deadline: cron.Deadline | None = None) -> Report:
    started = time.monotonic()
    report = Report()
    report.results.extend(Result(a, "unchanged") for a in plan.of_kind("unchanged"))
    report.results.extend(Result(a, "failed", a.reason) for a in plan.of_kind("error"))
    to_issue, not_started = plan.of_kind("issue", "renew"), set()
    if to_issue and deadline is not None and deadline.expired():   # --max-duration: start nothing new
        not_started = {a.cert for a in to_issue}
        report.results.extend(Result(a, "skipped", cron.MAX_DURATION_REACHED) for a in to_issue)
        to_issue = []
    failed_certs = _issue_all(config, store, to_issue, report, now) | not_started
    lanes: dict[str, list[Action]] = defaultdict(list)
    for action in plan.of_kind("push", "delete"):
        if action.cert in failed_certs:
            report.results.append(Result(action, "skipped", cron.MAX_DURATION_REACHED if action.cert in not_started
                                         else "issuance failed"))
        else:
            lanes[action.destination].append(action)
    jobs = _prepare(config, store, lanes, report)
    for result in report.results:   # what the lanes do is logged as it happens
        logs.log_result(log, result)
    for result in _run_lanes(config, jobs, providers, progress, deadline):
        report.results.append(result)
    if deadline is not None and deadline.reached:
        report.stopped = f"max duration {deadline} reached"
    _record(store, report, retired)
    report.seconds = time.monotonic() - started
    return report


def _issue_all(config: Config, store: Store, actions: Iterable[Action], report: Report,
               now: datetime | None) -> set[str]:
    """Batched (enroll.issue_many: one transaction per batch, CA keys decrypted once per run);
    a certificate that fails (policy, store) fails alone."""
    failed: set[str] = set()
    actions = list(actions)
    requests = [enroll.IssueRequest(a.cert, a.reuse_key) for a in actions]
    for action, (_, outcome) in zip(actions, enroll.issue_many(config, store, requests, now=now)):
        if isinstance(outcome, CertsyncError):
            failed.add(action.cert)
            report.results.append(Result(action, "failed", one_line(outcome)))
        else:
            detail = f"version {outcome.version}, serial {outcome.serial}, not after {outcome.not_after:%Y-%m-%d}"
            report.results.append(Result(action, "done", detail=detail))
    return failed


@dataclass
class Job:
    action: Action
    payload: render.Payload | None = None
    certificate_id: int | None = None
    purge: bool = False


def _prepare(config: Config, store: Store, lanes: dict[str, list[Action]], report: Report) -> dict[str, list[Job]]:
    """Render every payload up front, in the main thread (store access stays single-threaded)."""
    jobs: dict[str, list[Job]] = defaultdict(list)
    with store.session() as session:
        bundles = {}
        current = store.current_many(session, [a.cert for actions in lanes.values() for a in actions
                                               if a.kind != "delete"])      # one query per 500, not one per push
        for destination, actions in lanes.items():
            for action in actions:
                if action.kind == "delete":
                    jobs[destination].append(Job(action))
                    continue
                try:
                    row = current.get(action.cert)
                    if row is None:
                        raise CertsyncError(f"certificate {action.cert!r} has no active version")
                    if row.id not in bundles:
                        bundles[row.id] = store.bundle(row)
                        verify.check_bundle(bundles[row.id])  # key pairs with leaf, chain in order
                    payload = render.render(bundles[row.id], render_options(config, destination))
                    jobs[destination].append(Job(action, payload, row.id))
                except CertsyncError as exc:
                    report.results.append(Result(action, "failed", one_line(exc)))
    return jobs


def _run_lanes(config: Config, jobs: dict[str, list[Job]], providers: ProviderFactory,
               progress=None, deadline: cron.Deadline | None = None) -> list[Result]:
    """Quota domains in parallel; inside one, up to `concurrency` calls in flight, paced by a
    token bucket set from the cloud's quota (or the destination's max_calls_per_second)."""
    domains: dict[str, list[tuple[str, Job]]] = defaultdict(list)
    quotas: dict[str, pacing.Quota] = {}
    for destination, items in jobs.items():
        quota = pacing.quota_of(config.destination[destination])
        known = quotas.get(quota.domain)   # destinations sharing a quota: the strictest rate wins
        if known is None or quota.calls_per_second < known.calls_per_second:
            quotas[quota.domain] = quota
        domains[quota.domain].extend((destination, job) for job in items)

    def run_domain(domain: str) -> list[Result]:
        quota = quotas[domain]
        bucket = pacing.TokenBucket(quota.calls_per_second)
        items = domains[domain]
        workers = min(len(items), max(config.destination[d].concurrency for d, _ in items))
        if progress is not None:
            progress.start(domain, len(items))

        def one(item: tuple[str, Job]) -> Result:
            destination, job = item
            if deadline is not None and deadline.expired():
                result = Result(job.action, "skipped", cron.MAX_DURATION_REACHED)
                logs.log_result(log, result)
                return result
            try:
                provider = providers(destination)
            except Exception as exc:
                result = Result(job.action, "failed", f"cannot reach destination: {one_line(exc)}")
            else:
                bucket.take(quota.calls_per_push if job.action.kind == "push" else quota.calls_per_delete)
                result = _run_job(provider, job, config.destination[destination].verify_after_write)
            if progress is not None:
                progress.advance(domain)
            logs.log_result(log, result)
            return result

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, items))

    if not domains:
        return []
    with ThreadPoolExecutor(max_workers=len(domains)) as pool:
        return [r for results in pool.map(run_domain, list(domains)) for r in results]


def _run_job(provider, job: Job, verify_mode: str = "response") -> Result:
    action = job.action
    try:
        if action.kind == "delete":
            provider.delete(action.remote_name, purge=job.purge)
            return Result(action, "done")
        remote = provider.put(action.remote_name, job.payload.body, content_type=job.payload.content_type,
                              labels=ownership_labels(action.cert, job.payload.fingerprint))
        if verify_mode == "response":
            verify.check_written(remote, job.payload.fingerprint)
        elif verify_mode == "read":
            read = provider.get(action.remote_name)
            if read is None:
                raise verify.VerifyError(f"verify after write: {action.remote_name!r} is not there")
            verify.check_written(read, job.payload.fingerprint, job.payload.body)
        return Result(action, "done", detail=remote.version or "", job=job)
    except Exception as exc:  # one line per failure; the run goes on
        return Result(action, "failed", one_line(exc))


def _record(store: Store, report: Report, retired: Iterable[str]) -> None:
    """Store what was pushed and deleted; certificates gone from config and from every
    destination are marked retired (their history stays)."""
    retired_done: dict[str, bool] = {name: True for name in retired}
    with store.session() as session:
        pushed = []
        for result in report.results:
            action = result.action
            if action.kind == "push" and result.status == "done":
                job = result.job
                pushed.append(dict(cert_name=action.cert, destination=action.destination,
                                   remote_name=action.remote_name, certificate_id=job.certificate_id,
                                   fingerprint=job.payload.fingerprint, remote_version=result.detail or None,
                                   one_off=action.one_off))
            elif action.kind == "delete":
                if result.status == "done":
                    store.record_delete(session, destination=action.destination, remote_name=action.remote_name)
                if action.cert in retired_done and result.status != "done":
                    retired_done[action.cert] = False
            elif action.cert in retired_done and result.status == "failed":
                retired_done[action.cert] = False
        store.record_pushes(session, pushed)       # in bulk: not one query per push
        for name, all_deleted in retired_done.items():
            if all_deleted:
                row = store.current(session, name)
                if row is not None:
                    row.state = "retired"


def push_actions(config: Config, cert: str, destinations: list[str] | None,
                 reason: str = "one-off push") -> list[Action]:
    """A forced push of `cert` to its targets, or to the named destinations (any of them: one
    not listed for the certificate gets a secret named after it)."""
    targets = [(ref.to, ref.name) for ref in config.certificate[cert].targets(cert)]
    if destinations:
        targets = [t for d in destinations for t in ([t for t in targets if t[0] == d] or [(d, cert)])]
    listed = {(ref.to, ref.name) for ref in config.certificate[cert].targets(cert)}
    return [Action("push", cert, dest, name, reason, one_off=(dest, name) not in listed) for dest, name in targets]
