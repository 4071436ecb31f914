"""Pushing what the server enrolls: a profile's `deploy_to` destinations get each certificate
enrolled under it (ACME, EST, REST sign), chain only, as `certsync sign --to` would.

Requests never wait for a cloud: the enrollment is committed and answered, and one worker thread
pushes in the background with its own application object (its own store connection and run lock).
A push that cannot run now (another run holds the lock, a cloud fails) is retried with backoff; at
start, the server queues every enrolled certificate whose current version has no record at one
of its profile's destinations, so a crash or a restart loses no push. Each outcome is audited.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from sync.app import App
from sync.config import Config
from sync.errors import CertsyncError, LockError
from sync.server.state import ServerState

log = logging.getLogger("certsync.server.deploy")
BACKOFF = (1, 2, 5, 10, 30, 60, 120, 300)  # seconds between attempts; then every 300 s


class Deployer:
    def __init__(
        self,
        state: ServerState,
        *,
        app_factory: Callable[[Config], App] = App,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.state = state
        self.app_factory = app_factory
        self.sleep = sleep
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def wanted(self, profile: str) -> list[str]:
        spec = self.state.config.profile.get(profile)
        return list(spec.deploy_to) if spec is not None else []

    def enrolled(self, name: str, profile: str) -> None:
        """After an enrollment committed: push it if its profile says so."""
        if self.wanted(profile):
            self._start()
            self._queue.put((name, profile))

    def start(self) -> None:
        """At server start: queue what a previous process enrolled but did not push."""
        if not any(p.deploy_to for p in self.state.config.profile.values()):
            return
        with self.state.transaction() as tx:
            missing = [
                (row.name, row.profile)
                for row in tx.certificates.current_enrollments()
                if not _pushed(tx, row, self.wanted(row.profile))
            ]
        for name, profile in missing:
            self.enrolled(name, profile)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="certsync-deploy", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        app = self.app_factory(self.state.config)
        try:
            while not self._stop.is_set():
                job = self._queue.get()
                if job is None:
                    return
                try:
                    self._push(app, *job)
                except Exception as exc:  # a bug must not end the worker: the next job still runs
                    log.error("push of %s stopped: %s: %s", job[0], exc.__class__.__name__, exc)
                    self._audit(job[0], self.wanted(job[1]), "failed", f"internal error: {exc.__class__.__name__}", 0)
        finally:
            app.close()

    def _push(self, app: App, name: str, profile: str) -> None:
        destinations = self.wanted(profile)
        for attempt in range(10_000):
            if self._stop.is_set():
                return
            try:
                report = app.push(name, destinations)
            except LockError as exc:
                outcome, detail = "retry", exc.message
            except CertsyncError as exc:
                outcome, detail = "retry", exc.message
            else:
                failed = [r.error or "" for r in report.failed]
                outcome, detail = ("ok", "") if not failed else ("retry", "; ".join(failed))
            self._audit(name, destinations, outcome if outcome == "ok" else "failed", detail, attempt)
            if outcome == "ok":
                return
            log.warning("push of %s to %s failed (attempt %d): %s", name, ", ".join(destinations), attempt + 1, detail)
            self.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])

    def _audit(self, name: str, destinations: list[str], outcome: str, detail: str, attempt: int) -> None:
        try:
            with self.state.transaction() as tx:
                tx.audit.record(
                    at=self.state.now,
                    actor="server",
                    action="certificate.push",
                    protocol="server",
                    outcome=outcome,
                    certificate=name,
                    detail={
                        "destinations": destinations,
                        "attempt": attempt + 1,
                        **({"error": detail} if detail else {}),
                    },
                )
        except CertsyncError:
            pass


def _pushed(tx, row, destinations: list[str]) -> bool:
    done = {(d.destination, d.certificate_id) for d in tx.deployments.present_of(row.name)}
    return all((dest, row.id) in done for dest in destinations)
