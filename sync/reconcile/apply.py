"""Carrying out a plan: a pipeline per quota domain, issue -> render -> push.

Certificates are issued in small batches (one transaction each); as each batch lands, the pushes
of its certificates are rendered (keys opened only for that chunk, then dropped) and handed to
their quota domain's lane, so pushes start while issuance goes on. Each lane holds at most
`backlog` rendered payloads: when one is full the main thread waits (journaling what lands)
before it renders or issues more, so a run's memory is bounded by these queue sizes, not by the
number of certificates. Results are journaled in batches as they land.

One failure does not stop the run: every other action still happens, and the report says what
failed and where (certbot's "carry on, then fail at the end"). Quota domains (a region, a
project, a vault) run in parallel; inside one, up to `concurrency` actions are in flight (more when the
latency seen needs them to reach the quota), each call paced by the provider wrapper
(pacing.PacedProvider); no two actions of a run touch the same secret. Only the main thread
touches the store.
"""

from __future__ import annotations

import queue
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from collections.abc import Callable, Iterable, Iterator

from providers.base import ownership_labels
from sync import logs
from sync.ca.issue import BATCH_SIZE, IssueRequest, issue_many
from sync.config import Config
from sync.errors import CertsyncError, VerifyError, one_line
from sync.pki import workers
from sync.pki.bundle import check_bundle
from sync.reconcile import pacing
from sync.reconcile.deadline import MAX_DURATION_REACHED, Deadline
from sync.reconcile.destinations import ProviderFactory, render_options
from sync.reconcile.hooks import Hooks, facts_of
from sync.reconcile.plan import Action, Kind, Plan
from sync.reconcile.report import Job, Report, Result, Status
from sync.reconcile.verify import check_written
from sync.store import Store

log = logs.get("apply")

STAGE = 100  # certificates per issuance batch and per render chunk: the pipeline's grain
BACKLOG_SECONDS = 2.0  # a lane holds about this long of work at its quota ...
BACKLOG_MIN, BACKLOG_MAX = 32, 512  # ... within these bounds (rendered payloads per quota domain)


class Run(Protocol):
    """What carrying out a plan needs of the command run (the application object)."""

    config: Config
    providers: ProviderFactory

    @property
    def store(self) -> Store: ...

    @property
    def now(self) -> datetime: ...

    def check_lock(self) -> None:
        """Raise LockError once the run lock is lost: called before each store write and each push."""


def execute(
    run: Run, plan: Plan, *, retired: Iterable[str] = (), progress=None, deadline: Deadline | None = None
) -> Report:
    started = time.monotonic()
    if plan.of_kind(Kind.ISSUE, Kind.RENEW, Kind.PUSH):
        run.store.master_key()  # a missing or wrong key fails the run once, before any work
    report = Report()
    report.results.extend(Result(a, Status.UNCHANGED) for a in plan.of_kind(Kind.UNCHANGED))
    report.results.extend(Result(a, Status.FAILED, a.reason) for a in plan.of_kind(Kind.ERROR))
    adopted = _adopt(run, plan.of_kind(Kind.ADOPT))
    for result in report.results + adopted:  # what the pipeline does is logged as it happens
        logs.log_result(log, result)
    report.results.extend(adopted)
    to_issue = plan.of_kind(Kind.ISSUE, Kind.RENEW)
    issuing = {a.cert for a in to_issue}
    per_cert: dict[str, list[Action]] = defaultdict(list)  # certificate -> its pushes and deletes
    for action in plan.of_kind(Kind.PUSH, Kind.DELETE):
        per_cert[action.cert].append(action)
    journal = Journal(run)
    # deploy hooks: run beside the lanes as pushes land, and again for copies whose hooks failed before
    hooks = Hooks(run.config, run.store) if any(d.has_hooks for d in run.config.destination.values()) else None
    if hooks is not None:
        hooks.retry_pending(plan.of_kind(Kind.UNCHANGED))
    lanes = Lanes(
        run,
        plan.of_kind(Kind.PUSH, Kind.DELETE),
        progress,
        deadline,
        on_result=journal.add if hooks is None else _both(journal.add, hooks.landed),
    )
    completed = False
    try:
        ready = [cert for cert in per_cert if cert not in issuing]  # versions already stored
        for start in range(0, len(ready), STAGE):
            _render_and_submit(
                run, [a for c in ready[start : start + STAGE] for a in per_cert[c]], report, lanes, hooks
            )
        not_issued: dict[str, str] = {}  # certificate -> why its pushes are skipped
        # nothing to push after issuance (e.g. no destination): larger batches, fewer commits
        batch = STAGE if any(c in per_cert for c in issuing) else BATCH_SIZE
        for issued in _issue_stream(run, to_issue, report, deadline, not_issued, batch):
            _render_and_submit(run, [a for c in issued for a in per_cert.get(c, ())], report, lanes, hooks)
        for cert, why in not_issued.items():
            for action in per_cert.get(cert, ()):
                report.results.append(Result(action, Status.SKIPPED, why))
                logs.log_result(log, report.results[-1])
        report.results.extend(lanes.finish())
        completed = True
    finally:
        lanes.close()
        journal.flush()  # even when the run dies (signal, SystemExit, lock lost): what landed is recorded
        if hooks is not None:  # a run cut short starts no more hooks; those running finish (timeout-bounded)
            report.hooks = hooks.finish(cancel=not completed)
    if deadline is not None and deadline.reached:
        report.stopped = f"max duration {deadline} reached"
    run.check_lock()
    _record(run.store, report, retired)
    report.seconds = time.monotonic() - started
    return report


def _issue_stream(
    run: Run,
    actions: list[Action],
    report: Report,
    deadline: Deadline | None,
    not_issued: dict[str, str],
    batch: int = STAGE,
) -> Iterator[list[str]]:
    """Issue in batches (issue_many: one transaction per batch, CA keys decrypted once
    per run); after each batch, yield the names it issued. A certificate that fails (policy,
    store) fails alone; once the deadline has passed, no new batch starts."""
    requests = [IssueRequest(a.cert, a.reuse_key) for a in actions]
    until = deadline.expired if deadline is not None else None
    answered, issued = 0, []
    for _, outcome in issue_many(
        run.config, run.store, requests, run.now, batch_size=batch, before_write=run.check_lock, until=until
    ):
        action = actions[answered]
        answered += 1
        if isinstance(outcome, CertsyncError):
            not_issued[action.cert] = "issuance failed"
            result = Result(action, Status.FAILED, one_line(outcome))
        else:
            issued.append(action.cert)
            detail = f"version {outcome.version}, serial {outcome.serial}, not after {outcome.not_after:%Y-%m-%d}"
            result = Result(action, Status.DONE, detail=detail)
        report.results.append(result)
        logs.log_result(log, result)
        if answered % batch == 0 or answered == len(actions):  # a batch is complete
            yield issued
            issued = []
    for action in actions[answered:]:  # --max-duration: not started
        not_issued[action.cert] = MAX_DURATION_REACHED
        report.results.append(Result(action, Status.SKIPPED, MAX_DURATION_REACHED))
        logs.log_result(log, report.results[-1])


def _recorded(tx, action: Action) -> bool:
    """A forced push (push, renew: no listing) updates a copy when one is on record, else creates one."""
    return any(
        d.destination == action.destination and d.remote_name == action.remote_name
        for d in tx.deployments.present_of(action.cert)
    )


def _both(*callbacks: Callable[[Result | None], None]) -> Callable[[Result | None], None]:
    def call(result: Result | None) -> None:
        for callback in callbacks:
            callback(result)

    return call


def _render_and_submit(
    run: Run, actions: list[Action], report: Report, lanes: Lanes, hooks: Hooks | None = None
) -> None:
    """Render one chunk's payloads (one transaction; each key opened once and dropped with the
    chunk; PFX with a password in the crypto pool), then hand them to their lanes in order,
    waiting where a lane is full. A destination with deploy hooks also gets the facts they need."""
    pending: list[tuple[Action, int, workers.Rendering, dict | None]] = []  # (action, certificate id, payload, facts)
    pushing = [a for a in actions if a.kind != Kind.DELETE]
    if pushing:
        with run.store.transaction() as tx:
            bundles, items = {}, []
            current = tx.certificates.current_many({a.cert for a in pushing})  # one query per chunk
            for action in pushing:
                try:
                    row = current.get(action.cert)
                    if row is None:
                        raise CertsyncError(f"certificate {action.cert!r} has no active version")
                    if row.id not in bundles:
                        bundles[row.id] = tx.certificates.bundle(row)
                        check_bundle(bundles[row.id], run.now)  # key pairs with leaf, path validates
                    options = render_options(run.config, action.target()[0], run.store.password_tag)
                    facts = None
                    if hooks is not None and hooks.wanted(action.destination):
                        existed = action.exists if action.exists is not None else _recorded(tx, action)
                        facts = facts_of(run.config, action, row, bundles[row.id].certificate, existed)
                    items.append((action, row.id, bundles[row.id], options, facts))
                except CertsyncError as exc:
                    _fail(report, action, exc)
        rendered = workers.render_all([(bundle, options) for _, _, bundle, options, _ in items])
        pending = [
            (action, row_id, future, facts)
            for (action, row_id, _, _, facts), future in zip(items, rendered, strict=True)
        ]
        del bundles, items  # the opened keys go now, not with the run
    for action, row_id, future, facts in pending:
        try:
            payload = future.result()
        except CertsyncError as exc:
            _fail(report, action, exc)
            continue
        lanes.submit(Job(action, payload, row_id, facts=facts))
    for action in actions:
        if action.kind == Kind.DELETE:
            lanes.submit(Job(action))


def _fail(report: Report, action: Action, exc: Exception) -> None:
    report.results.append(Result(action, Status.FAILED, one_line(exc)))
    logs.log_result(log, report.results[-1])


@dataclass
class _Domain:
    quota: pacing.Quota
    workers: int
    backlog: int  # rendered jobs queued or in flight, at most
    count: int = 0  # actions planned in this domain
    pool: ThreadPoolExecutor | None = None
    waiting: set[Future] = field(default_factory=set)


class Lanes:
    """One lane per quota domain: a thread pool of `concurrency` workers behind the domain's
    token bucket (its rate from the cloud's quota, or the destination's max_calls_per_second;
    destinations sharing a quota: the strictest wins), fed with at most `backlog` jobs at once.

    The calls run in worker threads; each result comes back to the main thread as it lands
    (while it waits for room in a lane, or in `finish`) and goes to `on_result` (the journal) at
    once. When the run is cut short (SystemExit, KeyboardInterrupt, LockError), `close` starts
    nothing new, lets the calls in flight finish, and passes their results to `on_result` too."""

    def __init__(
        self,
        run: Run,
        actions: list[Action],
        progress=None,
        deadline: Deadline | None = None,
        on_result: Callable[[Result | None], None] | None = None,
    ) -> None:
        self.run, self.progress, self.deadline, self.on_result = run, progress, deadline, on_result
        self.domain_of: dict[str, str] = {}
        self.domains: dict[str, _Domain] = {}
        for action in actions:
            self._plan(action.target()[0])
        for name, domain in self.domains.items():
            domain.workers = min(domain.count, domain.workers)
            domain.backlog = max(
                domain.workers,
                min(BACKLOG_MAX, max(BACKLOG_MIN, round(domain.quota.calls_per_second * BACKLOG_SECONDS))),
            )
            if progress is not None:
                progress.start(name, domain.count)
        self.order: dict[Future, tuple[int, _Domain]] = {}
        self.landed: queue.SimpleQueue[Future] = queue.SimpleQueue()  # done futures, as they finish
        self.results: dict[int, Result] = {}
        self.submitted = 0

    def _plan(self, destination: str) -> None:
        if destination in self.domain_of:  # known: one more action in its domain
            self.domains[self.domain_of[destination]].count += 1
            return
        dest = self.run.config.destination[destination]
        quota = pacing.quota_of(dest)
        self.domain_of[destination] = quota.domain
        domain = self.domains.get(quota.domain)
        if domain is None:
            domain = self.domains[quota.domain] = _Domain(quota, dest.concurrency, 0)
        elif quota.calls_per_second < domain.quota.calls_per_second:
            domain.quota = quota
        domain.workers = max(domain.workers, dest.concurrency)
        domain.count += 1

    def submit(self, job: Job) -> None:
        destination = job.action.target()[0]
        domain = self.domains[self.domain_of[destination]]
        while len(domain.waiting) >= domain.backlog:
            self._collect()  # room in this lane: wait for results to land
        if domain.pool is None:
            domain.pool = ThreadPoolExecutor(max_workers=_workers(self.run, destination, domain.workers))
        future = domain.pool.submit(self._one, domain, job)
        self.order[future] = (self.submitted, domain)
        domain.waiting.add(future)
        self.submitted += 1
        future.add_done_callback(self.landed.put)  # O(1) per result, however many wait

    def finish(self) -> list[Result]:
        """Wait for every job; their results in the order they were submitted."""
        while self.order:
            self._collect()
        return [self.results[i] for i in range(self.submitted)]

    def _collect(self) -> None:
        """Wait for a result to land (or a quiet half second: the journal commits what waits),
        then take every result that has landed; a worker's error ends the run here."""
        try:
            landed = [self.landed.get(timeout=_JOURNAL_SECONDS)]
        except queue.Empty:
            if self.on_result is not None:
                self.on_result(None)
            return
        while True:
            try:
                landed.append(self.landed.get_nowait())
            except queue.Empty:
                break
        error = None
        for future in landed:
            error = self._take(future) or error
        if error is not None:
            raise error

    def _take(self, future: Future) -> BaseException | None:
        if future not in self.order:  # taken already
            return None
        index, domain = self.order.pop(future)
        domain.waiting.discard(future)
        if future.cancelled():
            return None
        error = future.exception()
        if error is not None:
            return error
        self.results[index] = result = future.result()
        if self.on_result is not None:
            self.on_result(result)
        return None

    def close(self) -> None:
        """Nothing new starts; the calls in flight finish and their results are passed on."""
        for future in self.order:
            future.cancel()
        for domain in self.domains.values():
            if domain.pool is not None:
                domain.pool.shutdown(wait=True, cancel_futures=True)
        for future in list(self.order):
            if future.done():
                self._take(future)

    def _one(self, domain: _Domain, job: Job) -> Result:
        destination = job.action.target()[0]
        self.run.check_lock()  # a run that lost the store lock starts no push (LockError ends the run)
        if self.deadline is not None and self.deadline.expired():
            result = Result(job.action, Status.SKIPPED, MAX_DURATION_REACHED)
            logs.log_result(log, result)
            return result
        try:
            provider = self.run.providers(destination)
        except Exception as exc:
            result = Result(job.action, Status.FAILED, f"cannot reach destination: {one_line(exc)}")
        else:  # the provider paces its own calls (pacing.PacedProvider: every call counted)
            result = _run_job(provider, job, self.run.config.destination[destination].verify_after_write)
        if self.progress is not None:
            self.progress.advance(self.domain_of[destination])
        logs.log_result(log, result)
        return result


def _workers(run: Run, destination: str, configured: int) -> int:
    """Threads for a domain: enough calls in flight to reach its quota at the latency its calls
    see (pacing.Pacer.workers); a run without pacing (a bare provider factory) keeps `configured`."""
    pacer = getattr(run, "pacing", None)
    return pacer.pacer(destination).workers(configured) if pacer is not None else configured


_JOURNAL_EVERY = 50  # results per journal commit, at most
_JOURNAL_SECONDS = 0.5  # and at least this often while results come in


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
            if action.kind == Kind.PUSH and result.job is not None and result.job.fingerprint is not None:
                self.pushed.append(
                    dict(
                        cert_name=action.cert,
                        destination=action.destination,
                        remote_name=action.remote_name,
                        certificate_id=result.job.certificate_id,
                        fingerprint=result.job.fingerprint,
                        remote_version=result.detail or None,
                        one_off=action.one_off,
                    )
                )
            elif action.kind == Kind.DELETE:
                self.deleted.append(action.target())
        waiting = len(self.pushed) + len(self.deleted)
        if waiting >= _JOURNAL_EVERY or (waiting and time.monotonic() - self.last >= _JOURNAL_SECONDS):
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        if not (self.pushed or self.deleted):
            return
        pushed, deleted, self.pushed, self.deleted = self.pushed, self.deleted, [], []
        with self.run.store.transaction() as tx:
            tx.deployments.record_pushes(pushed)  # in bulk: not one query per push
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
            pushed.append(
                dict(
                    cert_name=action.cert,
                    destination=action.destination,
                    remote_name=action.remote_name,
                    certificate_id=row.id,
                    fingerprint=action.fingerprint,
                    remote_version=action.remote_version,
                    one_off=action.one_off,
                )
            )
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
        remote = provider.put(
            action.remote_name,
            job.payload.body,
            content_type=job.payload.content_type,
            labels=ownership_labels(action.cert, job.payload.fingerprint),
        )
        if verify_mode == "response":
            check_written(remote, job.payload.fingerprint)
        elif verify_mode == "read":
            read = provider.get(action.remote_name)
            if read is None:
                raise VerifyError(f"verify after write: {action.remote_name!r} is not there")
            check_written(read, job.payload.fingerprint, job.payload.body)
        # the result keeps what the journal needs, not the payload (a run holds N results)
        landed = Job(action, None, job.certificate_id, job.payload.fingerprint, job.facts)
        return Result(action, Status.DONE, detail=remote.version or "", job=landed)
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
        if (
            action.cert in all_deleted
            and result.status != Status.UNCHANGED
            and ((action.kind == Kind.DELETE and result.status != Status.DONE) or result.status == Status.FAILED)
        ):
            all_deleted[action.cert] = False
    with store.transaction() as tx:
        tx.certificates.retire_many(name for name, gone_everywhere in all_deleted.items() if gone_everywhere)


def push_actions(
    config: Config, cert: str, destinations: list[str] | None, reason: str = "one-off push"
) -> list[Action]:
    """A forced push of `cert` to its targets, or to the named destinations (any of them: one
    not listed for the certificate gets a secret named after it)."""
    listed = [(ref.to, ref.name) for ref in config.certificate[cert].targets(cert)]
    targets = listed
    if destinations:
        targets = [t for d in destinations for t in ([t for t in listed if t[0] == d] or [(d, cert)])]
    known = set(listed)
    return [Action(Kind.PUSH, cert, dest, name, reason, one_off=(dest, name) not in known) for dest, name in targets]
