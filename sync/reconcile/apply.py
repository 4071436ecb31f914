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
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from typing import Callable, Iterable, Protocol

from providers.base import ownership_labels
from sync import logs
from sync.ca.issue import IssueRequest, issue_many
from sync.config import Config
from sync.errors import CertsyncError, VerifyError, one_line
from sync.pki import render
from sync.pki.bundle import check_bundle
from sync.reconcile import pacing
from sync.reconcile.deadline import MAX_DURATION_REACHED, Deadline
from sync.reconcile.destinations import ProviderFactory, render_options
from sync.reconcile.plan import Action, Kind, Plan
from sync.reconcile.report import Job, Report, Result, Status
from sync.reconcile.verify import check_written
from sync.store import Store

log = logs.get("apply")


class Run(Protocol):
    """What carrying out a plan needs of the command run (the application object)."""
    config: Config
    store: Store
    providers: ProviderFactory

    @property
    def now(self) -> datetime: ...

    def check_lock(self) -> None:
        """Raise LockError once the run lock is lost: called before each store write and each push."""


def execute(run: Run, plan: Plan, *, retired: Iterable[str] = (), progress=None,
            deadline: Deadline | None = None) -> Report:
    started = time.monotonic()
    if plan.of_kind(Kind.ISSUE, Kind.RENEW, Kind.PUSH):
        run.store.master_key()      # a missing or wrong key fails the run once, before any work
    report = Report()
    report.results.extend(Result(a, Status.UNCHANGED) for a in plan.of_kind(Kind.UNCHANGED))
    report.results.extend(Result(a, Status.FAILED, a.reason) for a in plan.of_kind(Kind.ERROR))
    to_issue, not_started = plan.of_kind(Kind.ISSUE, Kind.RENEW), set()
    if to_issue and deadline is not None and deadline.expired():   # --max-duration: start nothing new
        not_started = {a.cert for a in to_issue}
        report.results.extend(Result(a, Status.SKIPPED, MAX_DURATION_REACHED) for a in to_issue)
        to_issue = []
    failed_certs = _issue_all(run, to_issue, report) | not_started
    lanes: dict[str, list[Action]] = defaultdict(list)
    for action in plan.of_kind(Kind.PUSH, Kind.DELETE):
        if action.cert in failed_certs:
            why = MAX_DURATION_REACHED if action.cert in not_started else "issuance failed"
            report.results.append(Result(action, Status.SKIPPED, why))
        else:
            lanes[action.destination].append(action)
    adopted = _adopt(run, plan.of_kind(Kind.ADOPT))
    jobs = _prepare(run, lanes, report)
    for result in report.results + adopted:   # what the lanes do is logged as it happens
        logs.log_result(log, result)
    report.results.extend(adopted)
    journal = Journal(run)
    try:
        report.results.extend(_run_lanes(run, jobs, progress, deadline, on_result=journal.add))
    finally:
        journal.flush()     # even when the run dies (signal, SystemExit, lock lost): what landed is recorded
    if deadline is not None and deadline.reached:
        report.stopped = f"max duration {deadline} reached"
    run.check_lock()
    _record(run.store, report, retired)
    report.seconds = time.monotonic() - started
    return report


def _issue_all(run: Run, actions: Iterable[Action], report: Report) -> set[str]:
    """Batched (issue_many: one transaction per batch, CA keys decrypted once per run); a
    certificate that fails (policy, store) fails alone."""
    failed: set[str] = set()
    actions = list(actions)
    requests = [IssueRequest(a.cert, a.reuse_key) for a in actions]
    for action, (_, outcome) in zip(actions, issue_many(run.config, run.store, requests, run.now,
                                                          before_write=run.check_lock)):
        if isinstance(outcome, CertsyncError):
            failed.add(action.cert)
            report.results.append(Result(action, Status.FAILED, one_line(outcome)))
        else:
            detail = f"version {outcome.version}, serial {outcome.serial}, not after {outcome.not_after:%Y-%m-%d}"
            report.results.append(Result(action, Status.DONE, detail=detail))
    return failed


def _prepare(run: Run, lanes: dict[str, list[Action]], report: Report) -> dict[str, list[Job]]:
    """Render every payload up front, in the main thread (store access stays single-threaded)."""
    jobs: dict[str, list[Job]] = defaultdict(list)
    with run.store.transaction() as tx:
        bundles = {}
        current = tx.certificates.current_many(a.cert for actions in lanes.values() for a in actions
                                               if a.kind != Kind.DELETE)   # one query per 500, not one per push
        for destination, actions in lanes.items():
            for action in actions:
                if action.kind == Kind.DELETE:
                    jobs[destination].append(Job(action))
                    continue
                try:
                    row = current.get(action.cert)
                    if row is None:
                        raise CertsyncError(f"certificate {action.cert!r} has no active version")
                    if row.id not in bundles:
                        bundles[row.id] = tx.certificates.bundle(row)
                        check_bundle(bundles[row.id], run.now)  # key pairs with leaf, path validates
                    payload = render.render(bundles[row.id], render_options(run.config, destination, run.store.password_tag))
                    jobs[destination].append(Job(action, payload, row.id))
                except CertsyncError as exc:
                    report.results.append(Result(action, Status.FAILED, one_line(exc)))
    return jobs


def _run_lanes(run: Run, jobs: dict[str, list[Job]], progress=None, deadline: Deadline | None = None,
               on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """Quota domains in parallel; inside one, up to `concurrency` calls in flight, paced by a
    token bucket set from the cloud's quota (or the destination's max_calls_per_second).

    The calls run in worker threads; each result comes back to this (the main) thread as it
    lands and goes to `on_result` (the journal) at once. When the run is cut short (SystemExit,
    KeyboardInterrupt, LockError), nothing new starts, the calls in flight finish, and their
    results too reach `on_result` before the error goes on."""
    config = run.config
    domains: dict[str, list[tuple[str, Job]]] = defaultdict(list)
    quotas: dict[str, pacing.Quota] = {}
    for destination, items in jobs.items():
        quota = pacing.quota_of(config.destination[destination])
        known = quotas.get(quota.domain)   # destinations sharing a quota: the strictest rate wins
        if known is None or quota.calls_per_second < known.calls_per_second:
            quotas[quota.domain] = quota
        domains[quota.domain].extend((destination, job) for job in items)
    if not domains:
        return []

    def one(domain: str, item: tuple[str, Job]) -> Result:
        destination, job = item
        run.check_lock()         # a run that lost the store lock starts no push (LockError ends the run)
        if deadline is not None and deadline.expired():
            result = Result(job.action, Status.SKIPPED, MAX_DURATION_REACHED)
            logs.log_result(log, result)
            return result
        try:
            provider = run.providers(destination)
        except Exception as exc:
            result = Result(job.action, Status.FAILED, f"cannot reach destination: {one_line(exc)}")
        else:   # the provider paces its own calls (pacing.PacedProvider: every call counted)
            result = _run_job(provider, job, config.destination[destination].verify_after_write)
        if progress is not None:
            progress.advance(domain)
        logs.log_result(log, result)
        return result

    pools: list[ThreadPoolExecutor] = []
    order: dict[Future, int] = {}
    results: dict[int, Result] = {}
    failure: BaseException | None = None
    try:
        for domain, items in domains.items():
            configured = max(config.destination[d].concurrency for d, _ in items)
            workers = min(len(items), _workers(run, items[0][0], configured))
            if progress is not None:
                progress.start(domain, len(items))
            pool = ThreadPoolExecutor(max_workers=workers)
            pools.append(pool)
            for item in items:
                order[pool.submit(one, domain, item)] = len(order)
        pending = set(order)
        while pending and failure is None:
            done, pending = wait(pending, timeout=_JOURNAL_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                failure = failure or _collect(future, order, results, on_result)
            if on_result is not None and not done:
                on_result(None)     # a quiet moment: the journal commits what waits
    except BaseException as exc:   # KeyboardInterrupt in this thread, or submit failed
        failure = exc
    finally:
        if failure is not None:
            for future in order:
                future.cancel()     # nothing new starts
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=failure is not None)
    if failure is not None:
        for future in order:        # calls that were in flight: their results are recorded too
            if future not in results and future.done() and not future.cancelled():
                _collect(future, order, results, on_result)
        raise failure
    return [results[i] for i in range(len(order))]


def _workers(run: Run, destination: str, configured: int) -> int:
    """Threads for a domain: enough calls in flight to reach its quota at the latency its calls
    see (pacing.Pacer.workers); a run without pacing (a bare provider factory) keeps `configured`."""
    pacer = getattr(run, "pacing", None)
    return pacer.pacer(destination).workers(configured) if pacer is not None else configured


def _collect(future: Future, order: dict[Future, int], results: dict[int, Result],
             on_result: Callable[[Result | None], None] | None) -> BaseException | None:
    """A finished call's result to `results` and `on_result`; the error that ends the run, if any."""
    if future.cancelled():
        return None
    error = future.exception()
    if error is not None:
        results[order[future]] = None   # type: ignore[assignment]  (seen; the run is ending)
        return error
    result = future.result()
    results[order[future]] = result
    if on_result is not None:
        on_result(result)
    return None


_JOURNAL_EVERY = 50         # results per journal commit, at most
_JOURNAL_SECONDS = 0.5      # and at least this often while results come in


class Journal:
    """What the lanes did, recorded as it lands: the main thread commits every _JOURNAL_EVERY
    results or every _JOURNAL_SECONDS, and once more at the end (also when the run is cut short).
    A copy whose record a hard kill still lost (at most the last half second) carries our tags:
    the next plan adopts it, and retire or removal from config finds it by its tags."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.pushed: list[dict] = []
        self.deleted: list[tuple[str, str]] = []
        self.last = time.monotonic()

    def add(self, result: Result | None) -> None:
        if result is not None and result.status == Status.DONE:
            action = result.action
            if action.kind == Kind.PUSH and result.job is not None and result.job.payload is not None:
                self.pushed.append(dict(cert_name=action.cert, destination=action.destination,
                                        remote_name=action.remote_name, certificate_id=result.job.certificate_id,
                                        fingerprint=result.job.payload.fingerprint,
                                        remote_version=result.detail or None, one_off=action.one_off))
            elif action.kind == Kind.DELETE:
                self.deleted.append((action.destination, action.remote_name))
        waiting = len(self.pushed) + len(self.deleted)
        if waiting >= _JOURNAL_EVERY or (waiting and time.monotonic() - self.last >= _JOURNAL_SECONDS):
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        if not (self.pushed or self.deleted):
            return
        pushed, deleted, self.pushed, self.deleted = self.pushed, self.deleted, [], []
        with self.run.store.transaction() as tx:
            tx.deployments.record_pushes(pushed)       # in bulk: not one query per push
            tx.deployments.record_deletes(deleted)


def _adopt(run: Run, actions: list[Action]) -> list[Result]:
    """Record copies found with our tags and the fingerprint of the version in force but no
    record (a run died between the write and its record): one transaction, no cloud call."""
    if not actions:
        return []
    run.check_lock()
    results = []
    with run.store.transaction() as tx:
        current = tx.certificates.current_many(a.cert for a in actions)
        pushed = []
        for action in actions:
            row = current.get(action.cert)
            if row is None:
                results.append(Result(action, Status.FAILED, f"certificate {action.cert!r} has no active version"))
                continue
            pushed.append(dict(cert_name=action.cert, destination=action.destination,
                               remote_name=action.remote_name, certificate_id=row.id,
                               fingerprint=action.fingerprint, remote_version=action.remote_version,
                               one_off=action.one_off))
            results.append(Result(action, Status.DONE, detail="adopted into the records"))
        tx.deployments.record_pushes(pushed)
    return results


def _run_job(provider, job: Job, verify_mode: str = "response") -> Result:
    action = job.action
    try:
        if action.kind == Kind.DELETE:
            provider.delete(action.remote_name, cert=action.cert)
            return Result(action, Status.DONE)
        assert job.payload is not None
        remote = provider.put(action.remote_name, job.payload.body, content_type=job.payload.content_type,
                              labels=ownership_labels(action.cert, job.payload.fingerprint))
        if verify_mode == "response":
            check_written(remote, job.payload.fingerprint)
        elif verify_mode == "read":
            read = provider.get(action.remote_name)
            if read is None:
                raise VerifyError(f"verify after write: {action.remote_name!r} is not there")
            check_written(read, job.payload.fingerprint, job.payload.body)
        return Result(action, Status.DONE, detail=remote.version or "", job=job)
    except Exception as exc:  # one line per failure; the run goes on
        # the result names its destination already: not twice (`-> aws/x: destination 'aws': ...`)
        return Result(action, Status.FAILED, one_line(exc).removeprefix(f"destination {action.destination!r}: "))


def _record(store: Store, report: Report, retired: Iterable[str]) -> None:
    """Certificates gone from config and from every destination are marked retired (their
    history stays). Pushes and deletes were recorded as they landed (Journal)."""
    all_deleted: dict[str, bool] = {name: True for name in retired}
    if not all_deleted:
        return
    for result in report.results:
        action = result.action
        if action.cert in all_deleted and result.status != Status.UNCHANGED and (
                (action.kind == Kind.DELETE and result.status != Status.DONE) or result.status == Status.FAILED):
            all_deleted[action.cert] = False
    with store.transaction() as tx:
        for name, gone_everywhere in all_deleted.items():
            if gone_everywhere:
                tx.certificates.retire(name)


def push_actions(config: Config, cert: str, destinations: list[str] | None,
                 reason: str = "one-off push") -> list[Action]:
    """A forced push of `cert` to its targets, or to the named destinations (any of them: one
    not listed for the certificate gets a secret named after it)."""
    listed = [(ref.to, ref.name) for ref in config.certificate[cert].targets(cert)]
    targets = listed
    if destinations:
        targets = [t for d in destinations for t in ([t for t in listed if t[0] == d] or [(d, cert)])]
    known = set(listed)
    return [Action(Kind.PUSH, cert, dest, name, reason, one_off=(dest, name) not in known) for dest, name in targets]
